//! Loaded eBPF programs, as `bpftool -j prog show` lists them: used to prove podtap leaves nothing behind.

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::util::{require_tool, sh};

/// Prefix of every podtap program name (the kernel keeps 15 characters: `podtap_egress`,
/// `podtap_ingress`, `podtap_sock_sen`, `podtap_sock_rec`).
pub const PROG_PREFIX: &str = "podtap";

/// A loaded program.
#[derive(Debug, Clone)]
pub struct Prog {
    pub id: u64,
    pub name: String,
    /// Processes holding a descriptor of it (empty: pinned or attached without a link, i.e. leaked).
    pub pids: Vec<u32>,
    /// Time spent in the program and the times it ran, while run-time statistics are enabled
    /// (`BPF_ENABLE_STATS` or `kernel.bpf_stats_enabled`); 0 otherwise.
    pub run_time_ns: u64,
    pub run_count: u64,
}

/// Loaded programs whose name starts with `podtap`.
pub fn podtap_programs() -> Result<Vec<Prog>> {
    require_tool("bpftool")?;
    let out = sh("bpftool", &["-j", "prog", "show"])?;
    let v: Value = serde_json::from_slice(&out.stdout).context("parsing `bpftool -j prog show`")?;
    let progs = v.as_array().cloned().unwrap_or_default();
    Ok(progs
        .iter()
        .filter_map(|p| {
            let name = p["name"].as_str()?;
            name.starts_with(PROG_PREFIX).then(|| Prog {
                id: p["id"].as_u64().unwrap_or(0),
                name: name.to_owned(),
                pids: p["pids"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x["pid"].as_u64())
                            .map(|x| x as u32)
                            .collect()
                    })
                    .unwrap_or_default(),
                run_time_ns: p["run_time_ns"].as_u64().unwrap_or(0),
                run_count: p["run_cnt"].as_u64().unwrap_or(0),
            })
        })
        .collect())
}

/// Ids of the eBPF programs process `pid` holds, through a program or a link descriptor (the
/// `prog_id:` line of `/proc/<pid>/fdinfo/<fd>`; bpftool's own `pids` column needs a bpftool built
/// with BPF skeletons, which Debian's is not).
pub fn programs_held_by(pid: u32) -> Result<std::collections::BTreeSet<u64>> {
    let fd_dir = format!("/proc/{pid}/fd");
    let mut ids = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&fd_dir).with_context(|| format!("listing {fd_dir}"))? {
        let entry = entry?;
        // Descriptors close while we look: a vanished one is simply not held any more.
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if target != "anon_inode:bpf-prog" && target != "anon_inode:bpf_link" {
            continue;
        }
        let info = format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy());
        let Ok(text) = std::fs::read_to_string(&info) else {
            continue;
        };
        ids.extend(text.lines().find_map(|l| {
            l.strip_prefix("prog_id:")
                .and_then(|id| id.trim().parse::<u64>().ok())
        }));
    }
    Ok(ids)
}

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
            })
        })
        .collect())
}

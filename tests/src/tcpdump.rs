//! Recording a pod's traffic with tcpdump, and replaying the file through `podtap replay`: the live
//! records of a test and the records rebuilt from its capture must agree (`assert_live_equals_replay`).
//! Every end-to-end test records through this one module.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::netns::{Pod, PodProcess};
use crate::util::{require_tool, wait_until, TempDir};

const START_TIMEOUT: Duration = Duration::from_secs(10);

/// tcpdump writing what a pod sees on one interface to a pcap file.
#[derive(Debug)]
pub struct Tcpdump {
    process: Option<PodProcess>,
    stderr: mpsc::Receiver<String>,
    /// What tcpdump printed on stderr (its packet counts once stopped).
    pub log: Vec<String>,
    pub file: PathBuf,
    _dir: TempDir,
}

impl Tcpdump {
    /// Starts `tcpdump -i veth0 -w FILE tcp port PORT` in `pod`; returns once it is capturing.
    pub fn start(pod: &Pod, port: u16) -> Result<Self> {
        Self::record(pod, 0, "veth0", &format!("tcp port {port}"))
    }

    /// Starts `tcpdump -i INTERFACE -w FILE FILTER` in container `container` of `pod` (an empty
    /// `filter`: every packet); returns once it is capturing.
    pub fn record(pod: &Pod, container: usize, interface: &str, filter: &str) -> Result<Self> {
        let tcpdump = require_tool("tcpdump")
            .or_else(|e| {
                let debian = PathBuf::from("/usr/bin/tcpdump");
                debian.is_file().then_some(debian).ok_or(e)
            })?
            .to_string_lossy()
            .into_owned();
        let dir = TempDir::new("podtap-tcpdump")?;
        let file = dir.path().join("capture.pcap");
        let file_arg = file.to_string_lossy().into_owned();
        let mut args = vec![
            "-i",
            interface,
            "-n",
            "-s",
            "0",
            "-U",
            // Hand each packet over at once: without it packets wait for a full buffer (or a
            // second), and the ones still waiting when SIGINT comes are never written.
            "--immediate-mode",
            // 64 MiB of kernel buffer: no packet dropped while the machine is busy, nor in a burst
            // of 64 KB GSO packets.
            "-B",
            "65536",
            // Stay root, so that the file in our temporary directory stays writable.
            "-Z",
            "root",
            "-w",
            &file_arg,
        ];
        if !filter.is_empty() {
            args.push(filter);
        }
        let mut process = pod.spawn(container, &tcpdump, &args)?;
        // It says `listening on veth0` on stderr once the socket is open.
        let stderr = process.child.stderr.take().context("tcpdump stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut log = Vec::new();
        let listening = wait_until(START_TIMEOUT, || {
            while let Ok(line) = rx.try_recv() {
                let found = line.contains("listening on");
                log.push(line);
                if found {
                    return Some(());
                }
            }
            None
        });
        if listening.is_none() {
            bail!("tcpdump did not start listening: {}", log.join("\n"));
        }
        Ok(Self {
            process: Some(process),
            stderr: rx,
            log,
            file,
            _dir: dir,
        })
    }

    /// Stops the capture (SIGINT, so tcpdump writes out what it holds) and returns the file, which
    /// lives as long as `self`.
    pub fn stop(&mut self) -> Result<&Path> {
        if let Some(mut process) = self.process.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(process.pid() as i32, libc::SIGINT) };
            let exited = wait_until(START_TIMEOUT, || process.child.try_wait().ok().flatten());
            if exited.is_none() {
                bail!("tcpdump did not exit after SIGINT");
            }
            // Its last words: `N packets captured`, `N packets dropped by kernel`.
            wait_until(Duration::from_secs(2), || {
                while let Ok(line) = self.stderr.try_recv() {
                    self.log.push(line);
                }
                self.log
                    .iter()
                    .any(|l| l.contains("dropped by kernel"))
                    .then_some(())
            });
        }
        Ok(&self.file)
    }

    /// Stops the capture and returns `podtap replay` of it.
    pub fn stop_and_replay(&mut self) -> Result<Vec<Value>> {
        let file = self.stop()?.to_owned();
        replay(&file)
    }

    /// Packets the kernel dropped before tcpdump read them (known once stopped): with any, the file
    /// misses traffic that happened.
    pub fn dropped(&self) -> Option<u64> {
        self.log.iter().find_map(|l| {
            l.strip_suffix(" packets dropped by kernel")
                .and_then(|n| n.trim().parse().ok())
        })
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        self.stop().ok();
    }
}

/// `podtap replay FILE --output jsonl`: the records rebuilt from a capture file, in time order; an
/// error if podtap failed or wrote a line that is not JSON.
pub fn replay(file: &Path) -> Result<Vec<Value>> {
    let out = crate::podtap::replay(file)?;
    if !out.status.success() {
        bail!("podtap replay exited with {}: {}", out.status, out.stderr);
    }
    if let Some(line) = out.bad_lines.first() {
        bail!("podtap replay wrote a line that is not JSON: {line:?}");
    }
    Ok(out.records)
}

/// The parts of a record that a live run and a replay of its packets both know (a replay has no pods
/// or processes), as one comparable string.
pub fn wire_view(r: &Value) -> String {
    serde_json::json!({
        "protocol": r["protocol"],
        "version": r["version"],
        "transport": r["transport"],
        "client": {"ip": r["client"]["ip"], "port": r["client"]["port"]},
        "server": {"ip": r["server"]["ip"], "port": r["server"]["port"]},
        "request": r["request"],
        "response": r["response"],
        "status": r["status"],
    })
    .to_string()
}

/// Asserts that the live records and the replay of the recording say the same (as multisets).
pub fn assert_live_equals_replay(live: &[Value], replayed: &[Value]) {
    let mut a: Vec<String> = live.iter().map(wire_view).collect();
    let mut b: Vec<String> = replayed.iter().map(wire_view).collect();
    a.sort();
    b.sort();
    assert_eq!(
        a.len(),
        b.len(),
        "live reported {} calls, the replay {}:\nlive:\n{}\nreplay:\n{}",
        a.len(),
        b.len(),
        a.join("\n"),
        b.join("\n")
    );
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "live and replay differ");
    }
}

//! Recording a pod's traffic with tcpdump, and replaying the file through `podtap replay`: the live
//! records of a test and the records rebuilt from its capture must agree.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::netns::{Pod, PodProcess};
use crate::podtap::binary;
use crate::records::sorted_by_time;
use crate::util::{require_tool, run, wait_until, TempDir};

const START_TIMEOUT: Duration = Duration::from_secs(10);

/// tcpdump writing every TCP segment of one port seen on a pod's veth to a file.
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
        let tcpdump = require_tool("tcpdump")?.to_string_lossy().into_owned();
        let dir = TempDir::new("podtap-tcpdump")?;
        let file = dir.path().join("capture.pcap");
        let filter = format!("tcp port {port}");
        let mut process = pod.spawn(
            0,
            &tcpdump,
            &[
                "-i",
                "veth0",
                "-n",
                "-s",
                "0",
                "-U",
                // Hand each packet over at once: without it packets wait for a full buffer (or a
                // second), and the ones still waiting when SIGINT comes are never written.
                "--immediate-mode",
                // 32 MiB of kernel buffer: no packet dropped while the machine is busy.
                "-B",
                "32768",
                "-Z",
                "root",
                "-w",
                &file.to_string_lossy(),
                &filter,
            ],
        )?;
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

    /// Stops the capture (SIGINT, so tcpdump writes out what it holds) and returns the file.
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
}

impl Tcpdump {
    /// Packets the kernel dropped before tcpdump read them (known once stopped): with any, the file
    /// misses traffic that happened.
    pub fn dropped(&self) -> Option<u64> {
        self.log.iter().find_map(|l| {
            l.strip_suffix(" packets dropped by kernel")
                .and_then(|n| n.trim().parse().ok())
        })
    }
}

/// `podtap replay FILE --output jsonl`: the records rebuilt from a capture file, in time order.
pub fn replay(file: &Path) -> Result<Vec<Value>> {
    let bin = binary()?;
    let out = run(Command::new(&bin)
        .arg("replay")
        .arg(file)
        .args(["--output", "jsonl"]))?;
    let text = String::from_utf8(out.stdout).context("replay output is not UTF-8")?;
    let records = text
        .lines()
        .map(|line| serde_json::from_str(line).with_context(|| format!("replay line {line:?}")))
        .collect::<Result<Vec<Value>>>()?;
    Ok(sorted_by_time(records))
}

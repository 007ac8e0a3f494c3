//! Runs the real `podtap` binary: `podtap run --output jsonl --duration N`, waits for `podtap: capturing`
//! on stderr, collects stdout lines as JSON values and stderr as text, stops it with SIGINT.
//!
//! The binary is `$PODTAP_BIN`, else `target/release/podtap`, else `target/debug/podtap` under the
//! workspace root (`cargo xtask test` builds the release binary and sets `PODTAP_BIN`).

use std::io::{BufRead as _, BufReader, Read};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::records::{involves, sorted_by_time};
use crate::util::{require_root, wait_until, workspace_root};

/// How long podtap may take to load and attach its programs.
pub const CAPTURING_TIMEOUT: Duration = Duration::from_secs(30);
/// How long podtap may take to exit after SIGINT.
/// Long because of TLS: the kernel detaches uprobes one at a time, a grace period each (about 80 ms
/// here, serialized across every podtap of the parallel tests), and a TLS run has dozens.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The podtap binary to test.
pub fn binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PODTAP_BIN") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("PODTAP_BIN={} does not exist", p.display());
        }
        return Ok(p);
    }
    let root = workspace_root();
    for profile in ["release", "debug"] {
        let p = root.join("target").join(profile).join("podtap");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "podtap binary not found: set PODTAP_BIN or build it (`cargo build --release -p podtap`; \
         `cargo xtask test` does both)"
    )
}

/// Runs `podtap replay FILE --output jsonl` to the end.
pub fn replay(file: &std::path::Path) -> Result<PodtapOutput> {
    let out = Command::new(binary()?)
        .args(["replay", "--output", "jsonl"])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .context("running podtap replay")?;
    let mut records = Vec::new();
    let mut bad_lines = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => records.push(v),
            Err(_) => bad_lines.push(line.to_owned()),
        }
    }
    Ok(PodtapOutput {
        status: out.status,
        records: sorted_by_time(records),
        bad_lines,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// A plain HTTP/1.0 GET of `http://HOST:PORT/PATH`; the body when the status is 200.
pub fn http_get(url: &str) -> Result<String> {
    use std::io::Write as _;
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("not an http:// URL: {url}"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream =
        std::net::TcpStream::connect(host).with_context(|| format!("connecting to {host}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("no HTTP header end in {response:?}"))?;
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200 ") {
        bail!("GET {url}: {status}");
    }
    Ok(body.to_owned())
}

/// A running `podtap run`.
#[derive(Debug)]
pub struct Podtap {
    child: Option<Child>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

/// Everything a finished podtap run produced.
#[derive(Debug)]
pub struct PodtapOutput {
    pub status: ExitStatus,
    /// Every stdout line that parsed as JSON.
    pub records: Vec<Value>,
    /// stdout lines that did not parse (should be none).
    pub bad_lines: Vec<String>,
    pub stderr: String,
}

fn pump(
    stream: impl Read + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
    tx: Option<mpsc::Sender<()>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = &tx {
                if line.starts_with("podtap: capturing") {
                    tx.send(()).ok();
                }
            }
            if let Ok(mut v) = sink.lock() {
                v.push(line);
            }
        }
    })
}

impl Podtap {
    /// `podtap run --output jsonl --duration <duration_s> --no-tls` plus `extra` args; returns once it
    /// prints `podtap: capturing`, fails (with its stderr) if it exits or stays silent for 30 s.
    ///
    /// Without TLS hooks: the tests run in parallel, each with its own podtap, and every podtap would
    /// hook every other test's TLS processes (a node runs one podtap). The TLS tests use `start_tls`.
    pub fn start(duration_s: u32, extra: &[&str]) -> Result<Self> {
        let mut args = vec!["--no-tls"];
        args.extend_from_slice(extra);
        Self::start_tls(duration_s, &args)
    }

    /// `podtap run --output jsonl --duration <duration_s>` plus `extra` args, TLS hooks on (the
    /// default of `podtap run`).
    pub fn start_tls(duration_s: u32, extra: &[&str]) -> Result<Self> {
        require_root()?;
        let bin = binary()?;
        let mut cmd = Command::new(&bin);
        cmd.args([
            "run",
            "--output",
            "jsonl",
            "--duration",
            &duration_s.to_string(),
        ])
        .args(extra);
        // Tests run in parallel: each podtap's /metrics on a port of its own.
        if !extra.iter().any(|a| a.starts_with("--metrics-listen")) {
            cmd.args(["--metrics-listen", "127.0.0.1:0"]);
        }
        Self::spawn(cmd)
    }

    /// Starts an arbitrary podtap command line that should reach `podtap: capturing`.
    pub fn spawn(mut cmd: Command) -> Result<Self> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().context("stdout")?;
        let err = child.stderr.take().context("stderr")?;
        let readers = vec![
            pump(out, stdout.clone(), None),
            pump(err, stderr.clone(), Some(tx)),
        ];
        let mut this = Self {
            child: Some(child),
            stdout,
            stderr,
            readers,
        };
        let start = std::time::Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(()) => return Ok(this),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let out = this.stop()?;
                    bail!(
                        "podtap exited ({}) before `podtap: capturing`; stderr:\n{}",
                        out.status,
                        out.stderr
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let exited = this
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten())
                        .is_some();
                    if exited || start.elapsed() > CAPTURING_TIMEOUT {
                        let out = this.stop()?;
                        bail!(
                            "podtap did not print `podtap: capturing` within {CAPTURING_TIMEOUT:?} (exit: {}); stderr:\n{}",
                            out.status,
                            out.stderr
                        );
                    }
                }
            }
        }
    }

    /// `http://ADDR/metrics` from podtap's `podtap: metrics on ...` line (none with `off`).
    pub fn metrics_url(&self) -> Option<String> {
        let lines = self.stderr.lock().ok()?;
        lines.iter().find_map(|line| {
            line.strip_prefix("podtap: metrics on ")
                .map(|url| url.trim().to_owned())
        })
    }

    /// GETs `/metrics` now (no `Accept`: the classic Prometheus text format); returns the exposition
    /// text (fails on any status but 200).
    pub fn scrape(&self) -> Result<String> {
        let url = self
            .metrics_url()
            .context("podtap printed no `podtap: metrics on` line")?;
        crate::podtap::http_get(&url)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Records printed so far that involve one of `ips` (as client or server address).
    pub fn records_for(&self, ips: &[Ipv4Addr]) -> Vec<Value> {
        self.all_records()
            .into_iter()
            .filter(|r| involves(r, ips))
            .collect()
    }

    /// Every record printed so far.
    pub fn all_records(&self) -> Vec<Value> {
        let lines = self.stdout.lock().map(|v| v.clone()).unwrap_or_default();
        lines
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until at least `n` records involving `ips` were printed (or `timeout`); returns how many.
    pub fn wait_records(&self, ips: &[Ipv4Addr], n: usize, timeout: Duration) -> usize {
        wait_until(timeout, || {
            let have = self.records_for(ips).len();
            (have >= n).then_some(have)
        })
        .unwrap_or_else(|| self.records_for(ips).len())
    }

    /// Sends SIGINT, waits for exit (SIGKILL after `EXIT_TIMEOUT`) and returns all output.
    pub fn stop(&mut self) -> Result<PodtapOutput> {
        let mut child = self.child.take().context("podtap already stopped")?;
        if child.try_wait()?.is_none() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        }
        self.finish(child)
    }

    /// Waits for podtap to exit on its own (e.g. `--duration` over).
    pub fn wait(&mut self) -> Result<PodtapOutput> {
        let child = self.child.take().context("podtap already stopped")?;
        self.finish(child)
    }

    fn finish(&mut self, mut child: Child) -> Result<PodtapOutput> {
        let exited = wait_until(EXIT_TIMEOUT, || child.try_wait().ok().flatten());
        let status = match exited {
            Some(s) => s,
            None => {
                child.kill().ok();
                let s = child.wait()?;
                self.join_readers();
                let stderr = self.stderr.lock().map(|v| v.join("\n")).unwrap_or_default();
                bail!("podtap did not exit within {EXIT_TIMEOUT:?} of SIGINT (killed: {s}); stderr:\n{stderr}");
            }
        };
        self.join_readers();
        let lines = self.stdout.lock().map(|v| v.clone()).unwrap_or_default();
        let mut records = Vec::new();
        let mut bad_lines = Vec::new();
        for l in lines {
            match serde_json::from_str::<Value>(&l) {
                Ok(v) => records.push(v),
                Err(_) => bad_lines.push(l),
            }
        }
        let stderr = self.stderr.lock().map(|v| v.join("\n")).unwrap_or_default();
        Ok(PodtapOutput {
            status,
            records: sorted_by_time(records),
            bad_lines,
            stderr,
        })
    }
}

impl Podtap {
    /// Joins the output readers; a child process of podtap that kept the pipes open must not hang the test.
    fn join_readers(&mut self) {
        let readers: Vec<_> = self.readers.drain(..).collect();
        wait_until(Duration::from_secs(5), || {
            readers.iter().all(JoinHandle::is_finished).then_some(())
        });
        for r in readers {
            if r.is_finished() {
                r.join().ok();
            }
        }
    }
}

impl Drop for Podtap {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            if wait_until(EXIT_TIMEOUT, || child.try_wait().ok().flatten()).is_none() {
                child.kill().ok();
                child.wait().ok();
            }
        }
    }
}

impl PodtapOutput {
    /// Records involving one of `ips`, in time order.
    pub fn records_for(&self, ips: &[Ipv4Addr]) -> Vec<Value> {
        self.records
            .iter()
            .filter(|r| involves(r, ips))
            .cloned()
            .collect()
    }

    /// The `podtap: summary ...` line.
    pub fn summary(&self) -> Option<&str> {
        self.stderr
            .lines()
            .find(|l| l.starts_with("podtap: summary"))
    }

    /// A counter from the summary line, written `name=N` or `name: N` (e.g. `drops`).
    pub fn summary_counter(&self, name: &str) -> Option<u64> {
        let s = self.summary()?;
        let toks: Vec<&str> = s
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
            .collect();
        for (i, t) in toks.iter().enumerate() {
            if let Some(v) = t.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                return v.parse().ok();
            }
            if *t == format!("{name}:") {
                return toks.get(i + 1).and_then(|v| v.parse().ok());
            }
        }
        None
    }

    /// Panics with the stderr unless podtap exited successfully, printed a summary and only JSON on stdout.
    pub fn assert_clean_exit(&self) {
        assert!(
            self.status.success(),
            "podtap exited with {}; stderr:\n{}",
            self.status,
            self.stderr
        );
        assert!(
            self.summary().is_some(),
            "no `podtap: summary` line on stderr:\n{}",
            self.stderr
        );
        assert!(
            self.bad_lines.is_empty(),
            "stdout lines that are not JSON: {:?}",
            self.bad_lines
        );
    }
}

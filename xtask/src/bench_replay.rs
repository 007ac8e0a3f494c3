//! `cargo xtask bench replay`: how fast `podtap replay` rebuilds calls from a large capture, against
//! tshark on the same file.
//!
//! The captures are recorded once from real traffic and cached in `target/bench/` (`--refresh` records
//! them again): tcpdump on the veth of a pod while wrk (one pod) loads nginx (the other pod) with
//! HTTP/1.1 keep-alive requests, and while redis-benchmark loads redis-server the same way. Then, for
//! each file: `podtap replay FILE --output jsonl > /dev/null` pinned to one core (taskset; three runs,
//! the median counts), and `tshark -r FILE -Y http` (`-Y resp` for Redis) pinned to the same core, with
//! field output (`-T fields`, cheaper for tshark than its default summary lines) from which the calls are
//! counted. Reports calls, wall and CPU time (user + system, from wait4), calls per second of each, the
//! podtap/tshark ratios and podtap's peak RSS; writes `target/bench/replay.json`. On a shared machine the
//! wall time includes waiting for the core: the CPU-time figures are the steadier ones.
//!
//! The Redis row reports whatever podtap finds: 0 calls (and so no ratio) until podtap parses RESP.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use podtap_tests::clients::wrk;
use podtap_tests::netns::{Pod, PodProcess};
use podtap_tests::{CgroupDriver, Nginx, PodPair};
use serde_json::{json, Value};

use crate::root;

/// The targets this benchmark checks.
const TARGET_RATIO: f64 = 10.0;
const TARGET_HTTP_CALLS_PER_SEC: f64 = 300_000.0;

pub struct ReplayOptions {
    /// HTTP/1.1 calls to record, at least.
    pub http_calls: u64,
    /// Redis commands to record, at least.
    pub redis_commands: u64,
    /// Record the captures again even when cached.
    pub refresh: bool,
    /// The core both tools are pinned to.
    pub cpu: u32,
    /// podtap runs per file (the median counts).
    pub runs: usize,
}

pub fn replay(bin: &Path, opts: &ReplayOptions) -> Result<()> {
    let out_dir = root().join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let http = out_dir.join("replay-http.pcap");
    let redis = out_dir.join("replay-redis.pcap");
    if opts.refresh || !http.exists() {
        record(&http, |pair| record_http(pair, opts.http_calls))?;
    }
    if opts.refresh || !redis.exists() {
        record(&redis, |pair| record_redis(pair, opts.redis_commands))?;
    }
    let rows = vec![
        measure(bin, &http, Proto::Http, opts)?,
        measure(bin, &redis, Proto::Redis, opts)?,
    ];

    println!(
        "\npodtap replay vs tshark on one core (cpu {}); podtap: median of {} runs",
        opts.cpu, opts.runs
    );
    println!(
        "{:<6} {:>6} {:>8} {:>8} {:>8} {:>7} {:>7} {:>9} {:>9} {:>7} {:>7} {:>9} {:>9} {:>7} {:>7} {:>6}",
        "file", "MiB", "packets", "podtap", "tshark", "wall s", "CPU s", "calls/s", "/CPU-s",
        "wall s", "CPU s", "calls/s", "/CPU-s", "ratio", "ratio", "RSS"
    );
    println!(
        "{:<6} {:>6} {:>8} {:>8} {:>8} {:>7} {:>7} {:>9} {:>9} {:>7} {:>7} {:>9} {:>9} {:>7} {:>7} {:>6}",
        "", "", "", "calls", "calls", "podtap", "podtap", "podtap", "podtap", "tshark", "tshark",
        "tshark", "tshark", "wall", "CPU", "MiB"
    );
    let ratio = |r: Option<f64>| r.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.1}x"));
    for r in &rows {
        println!(
            "{:<6} {:>6.1} {:>8} {:>8} {:>8} {:>7.3} {:>7.3} {:>9.0} {:>9.0} {:>7.2} {:>7.2} {:>9.0} {:>9.0} {:>7} {:>7} {:>6.1}",
            r.proto.name(),
            r.file_bytes as f64 / (1024.0 * 1024.0),
            r.packets,
            r.podtap_calls,
            r.tshark_calls,
            r.podtap_wall,
            r.podtap_cpu,
            r.podtap_rate(),
            r.podtap_cpu_rate(),
            r.tshark_wall,
            r.tshark_cpu,
            r.tshark_rate(),
            r.tshark_cpu_rate(),
            ratio(r.ratio()),
            ratio(r.cpu_ratio()),
            r.peak_rss_kib as f64 / 1024.0,
        );
    }
    let http_row = &rows[0];
    let ratio_ok = http_row.ratio().is_some_and(|r| r >= TARGET_RATIO);
    let rate_ok = http_row.podtap_rate() >= TARGET_HTTP_CALLS_PER_SEC;
    let cpu_rate_ok = http_row.podtap_cpu_rate() >= TARGET_HTTP_CALLS_PER_SEC;
    let met = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "targets (HTTP/1.1): >= {TARGET_RATIO}x tshark: {}; >= {TARGET_HTTP_CALLS_PER_SEC:.0} calls/s: {} \
         (wall), {} (CPU time)",
        met(ratio_ok),
        met(rate_ok),
        met(cpu_rate_ok)
    );
    if rows[1].podtap_calls == 0 {
        println!("redis: podtap found no Redis calls (no RESP parser in this build): no ratio");
    }
    for r in &rows {
        println!("{}: {}", r.proto.name(), r.summary);
    }

    let report = json!({
        "cpu": opts.cpu,
        "podtap_runs": opts.runs,
        "targets": { "ratio": TARGET_RATIO, "http_calls_per_sec": TARGET_HTTP_CALLS_PER_SEC },
        "targets_met": { "ratio": ratio_ok, "http_calls_per_sec": rate_ok, "http_calls_per_cpu_sec": cpu_rate_ok },
        "captures": rows.iter().map(Row::json).collect::<Vec<_>>(),
    });
    let path = out_dir.join("replay.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("written {}", path.display());
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    Http,
    Redis,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Http => "http1",
            Proto::Redis => "redis",
        }
    }
}

struct Row {
    proto: Proto,
    file: PathBuf,
    file_bytes: u64,
    packets: u64,
    podtap_calls: u64,
    podtap_wall: f64,
    podtap_walls: Vec<f64>,
    podtap_cpu: f64,
    peak_rss_kib: i64,
    summary: String,
    tshark_calls: u64,
    tshark_responses: u64,
    tshark_wall: f64,
    tshark_cpu: f64,
}

impl Row {
    fn podtap_rate(&self) -> f64 {
        self.podtap_calls as f64 / self.podtap_wall
    }

    fn tshark_rate(&self) -> f64 {
        self.tshark_calls as f64 / self.tshark_wall
    }

    /// podtap's calls/s over tshark's (none when either found no call).
    fn ratio(&self) -> Option<f64> {
        (self.podtap_calls > 0 && self.tshark_calls > 0)
            .then(|| self.podtap_rate() / self.tshark_rate())
    }

    /// Calls per second of CPU time (user + system): steadier than wall time on a shared machine.
    fn podtap_cpu_rate(&self) -> f64 {
        self.podtap_calls as f64 / self.podtap_cpu
    }

    fn tshark_cpu_rate(&self) -> f64 {
        self.tshark_calls as f64 / self.tshark_cpu
    }

    fn cpu_ratio(&self) -> Option<f64> {
        (self.podtap_calls > 0 && self.tshark_calls > 0)
            .then(|| self.podtap_cpu_rate() / self.tshark_cpu_rate())
    }

    fn json(&self) -> Value {
        json!({
            "protocol": self.proto.name(),
            "file": self.file.display().to_string(),
            "file_bytes": self.file_bytes,
            "packets": self.packets,
            "podtap": {
                "calls": self.podtap_calls,
                "wall_seconds": self.podtap_wall,
                "wall_seconds_runs": self.podtap_walls,
                "cpu_seconds": self.podtap_cpu,
                "calls_per_sec": self.podtap_rate(),
                "calls_per_cpu_sec": self.podtap_cpu_rate(),
                "peak_rss_kib": self.peak_rss_kib,
                "summary": self.summary,
            },
            "tshark": {
                "calls": self.tshark_calls,
                "responses": self.tshark_responses,
                "wall_seconds": self.tshark_wall,
                "cpu_seconds": self.tshark_cpu,
                "calls_per_sec": self.tshark_rate(),
                "calls_per_cpu_sec": self.tshark_cpu_rate(),
            },
            "ratio_calls_per_sec": self.ratio(),
            "ratio_calls_per_cpu_sec": self.cpu_ratio(),
        })
    }
}

/// Records into `path` through a temporary file, so a failed recording is never taken for a cached one.
fn record(path: &Path, traffic: impl FnOnce(&PodPair) -> Result<(Tcpdump, Value)>) -> Result<()> {
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Systemd)?;
    let (tcpdump, info) = traffic(&pair)?;
    let dropped = tcpdump.stop()?;
    std::fs::rename(&tcpdump.path, path)?;
    let meta = json!({ "traffic": info, "tcpdump_dropped": dropped });
    std::fs::write(
        path.with_extension("json"),
        serde_json::to_string_pretty(&meta)? + "\n",
    )?;
    eprintln!(
        "xtask: recorded {} ({} bytes, {dropped:?} packets dropped by the kernel)",
        path.display(),
        std::fs::metadata(path)?.len()
    );
    drop(pair);
    Ok(())
}

fn record_http(pair: &PodPair, calls: u64) -> Result<(Tcpdump, Value)> {
    let nginx = Nginx::start(&pair.b, 0, 8080)?;
    let url = nginx.url("/items/1");
    let tcpdump = Tcpdump::start(
        &pair.a,
        &root().join("target/bench/replay-http.pcap.tmp"),
        "tcp port 8080",
    )?;
    let mut requests = 0;
    let mut runs = 0;
    while requests < calls {
        runs += 1;
        if runs > 60 {
            bail!("wrk completed only {requests} requests in {runs} runs");
        }
        let r = wrk(&pair.a, 0, &url, 4, 3)?;
        eprintln!("xtask: wrk: {} requests", r.requests);
        requests += r.requests;
    }
    drop(nginx);
    Ok((
        tcpdump,
        json!({ "client": "wrk -t1 -c4 -d3s", "server": "nginx", "requests": requests, "wrk_runs": runs }),
    ))
}

fn record_redis(pair: &PodPair, commands: u64) -> Result<(Tcpdump, Value)> {
    let ip = pair.b.ip.to_string();
    let _server = pair.b.spawn(
        0,
        "redis-server",
        &[
            "--bind",
            &ip,
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ],
    )?;
    pair.b
        .wait_listening(pair.b.ip, 6379, Duration::from_secs(10))
        .context("redis-server did not start (run `cargo xtask setup`)")?;
    let tcpdump = Tcpdump::start(
        &pair.a,
        &root().join("target/bench/replay-redis.pcap.tmp"),
        "tcp port 6379",
    )?;
    // SET and GET, half each.
    let n = commands.div_ceil(2).to_string();
    let out = pair
        .a
        .command(
            0,
            "redis-benchmark",
            &[
                "-h", &ip, "-p", "6379", "-c", "4", "-n", &n, "-t", "set,get", "-q",
            ],
        )?
        .stdin(Stdio::null())
        .output()
        .context("running redis-benchmark")?;
    if !out.status.success() {
        bail!(
            "redis-benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("requests per second"))
        .collect();
    eprintln!("xtask: redis-benchmark: {}", lines.join("; "));
    Ok((
        tcpdump,
        json!({ "client": format!("redis-benchmark -c 4 -n {n} -t set,get"), "server": "redis-server", "commands": 2 * commands.div_ceil(2), "redis_benchmark": lines }),
    ))
}

/// tcpdump writing a pod's veth traffic to a file, stopped with SIGINT.
struct Tcpdump {
    process: PodProcess,
    path: PathBuf,
    stderr: mpsc::Receiver<String>,
}

impl Tcpdump {
    fn start(pod: &Pod, path: &Path, filter: &str) -> Result<Self> {
        let file = path.to_string_lossy().into_owned();
        let mut process = pod.spawn(
            0,
            "tcpdump",
            &[
                "-i", "veth0", "-n", "-s", "0", "-B", "262144", "-Z", "root", "-w", &file, filter,
            ],
        )?;
        let stderr = process.child.stderr.take().context("tcpdump stderr")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains("listening on") => break,
                Ok(line) => eprintln!("tcpdump: {line}"),
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("tcpdump exited"),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() > deadline => {
                    bail!("tcpdump did not start listening in 10 s")
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        Ok(Self {
            process,
            path: path.to_owned(),
            stderr: rx,
        })
    }

    /// Stops it and returns how many packets the kernel dropped (as tcpdump reports it).
    fn stop(&self) -> Result<Option<u64>> {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.process.pid() as i32, libc::SIGINT) };
        let mut dropped = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    if let Some(n) = line.strip_suffix(" packets dropped by kernel") {
                        dropped = n.trim().parse().ok();
                    }
                }
                Err(_) => break,
            }
        }
        Ok(dropped)
    }
}

/// Runs podtap and tshark on one file.
fn measure(bin: &Path, file: &Path, proto: Proto, opts: &ReplayOptions) -> Result<Row> {
    let file_bytes = std::fs::metadata(file)?.len();
    // Into the page cache first: both tools then read from memory.
    std::io::copy(&mut File::open(file)?, &mut std::io::sink())?;
    let cpu = opts.cpu.to_string();
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut last = None;
    for _ in 0..opts.runs.max(1) {
        let run = run_podtap(bin, file, &cpu)?;
        walls.push(run.wall);
        cpus.push(run.cpu);
        last = Some(run);
    }
    cpus.sort_by(f64::total_cmp);
    let run = last.context("no podtap run")?;
    let mut sorted = walls.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let tshark = run_tshark(file, proto, &cpu)?;
    Ok(Row {
        proto,
        file: file.to_owned(),
        file_bytes,
        packets: counter(&run.summary, "frames").unwrap_or(0),
        podtap_calls: counter(&run.summary, "calls").unwrap_or(0),
        podtap_wall: median,
        podtap_walls: walls,
        podtap_cpu: cpus[cpus.len() / 2],
        peak_rss_kib: run.peak_rss_kib,
        summary: run.summary,
        tshark_calls: tshark.requests,
        tshark_responses: tshark.responses,
        tshark_wall: tshark.wall,
        tshark_cpu: tshark.cpu,
    })
}

struct PodtapRun {
    wall: f64,
    cpu: f64,
    peak_rss_kib: i64,
    summary: String,
}

fn run_podtap(bin: &Path, file: &Path, cpu: &str) -> Result<PodtapRun> {
    let err_path = root().join("target/bench/replay-podtap.stderr");
    let started = Instant::now();
    let child = Command::new("taskset")
        .args(["-c", cpu])
        .arg(bin)
        .arg("replay")
        .arg(file)
        .args(["--output", "jsonl"])
        .stdin(Stdio::null())
        .stdout(File::create("/dev/null")?)
        .stderr(File::create(&err_path)?)
        .spawn()
        .context("starting taskset podtap replay")?;
    let pid = child.id() as i32;
    // SAFETY: wait4(2) on our own child; rusage is plain data.
    let (status, usage) = unsafe {
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::wait4(pid, &mut status, 0, &mut usage) != pid {
            bail!("wait4 on podtap: {}", std::io::Error::last_os_error());
        }
        (status, usage)
    };
    let wall = started.elapsed().as_secs_f64();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("podtap replay {} failed:\n{stderr}", file.display());
    }
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("podtap: summary"))
        .unwrap_or_default()
        .to_owned();
    Ok(PodtapRun {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        peak_rss_kib: usage.ru_maxrss,
        summary,
    })
}

/// `key=N` of the summary line.
fn counter(summary: &str, key: &str) -> Option<u64> {
    summary
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
}

/// tshark over the file: requests, responses, wall and CPU seconds.
fn run_tshark(file: &Path, proto: Proto, cpu: &str) -> Result<TsharkRun> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", cpu, "tshark", "-r"]).arg(file);
    match proto {
        Proto::Http => cmd.args([
            "-Y",
            "http",
            "-T",
            "fields",
            "-e",
            "http.request.method",
            "-e",
            "http.response.code",
        ]),
        Proto::Redis => cmd.args([
            "-Y",
            "resp",
            "-T",
            "fields",
            "-e",
            "tcp.dstport",
            "-e",
            "resp.array.length",
        ]),
    };
    eprintln!("xtask: {cmd:?}");
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting tshark (run `cargo xtask setup`)")?;
    let stdout = child.stdout.take().context("tshark stdout")?;
    let (mut requests, mut responses) = (0, 0);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let mut fields = line.split('\t');
        let (a, b) = (
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
        );
        match proto {
            Proto::Http => {
                requests += u64::from(!a.is_empty());
                responses += u64::from(!b.is_empty());
            }
            Proto::Redis => {
                // Commands are the arrays sent to the server (one value per array in the frame).
                let arrays = if b.is_empty() {
                    0
                } else {
                    b.split(',').count() as u64
                };
                if a == "6379" {
                    requests += arrays;
                } else {
                    responses += 1;
                }
            }
        }
    }
    let pid = child.id() as i32;
    // SAFETY: wait4(2) on our own child; rusage is plain data.
    let (status, usage) = unsafe {
        let mut status = 0;
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::wait4(pid, &mut status, 0, &mut usage) != pid {
            bail!("wait4 on tshark: {}", std::io::Error::last_os_error());
        }
        (status, usage)
    };
    let wall = started.elapsed().as_secs_f64();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("tshark on {} failed (wait status {status})", file.display());
    }
    Ok(TsharkRun {
        requests,
        responses,
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
    })
}

struct TsharkRun {
    requests: u64,
    responses: u64,
    wall: f64,
    cpu: f64,
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

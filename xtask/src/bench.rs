//! `cargo xtask bench overhead [--tls [--h2]]`: nginx in one pod, a load client in the other, N seconds
//! without podtap, N seconds with `podtap run --output jsonl` writing to a file, and N seconds without
//! again (the machines are shared and drift: the baseline is the mean of the runs before and after).
//! Reports the throughput ratio, the added latency, podtap's CPU time per 1,000 calls and peak RSS (from
//! wait4's rusage), the time its eBPF programs ran (kernel run-time statistics: that time is charged to
//! the processes whose packets and calls they see, not to podtap), and calls reported vs requests
//! completed.
//!
//! Plain: wrk over HTTP/1.1, `target/bench/overhead.json`. `--tls`: wrk over HTTPS (HTTP/1.1) against
//! nginx with the test suite's certificates (`Certs`, made with openssl), `overhead-tls.json`; only calls marked
//! `"tls": true` count as reported. `--tls --h2`: h2load over TLS (ALPN h2), `overhead-tls-h2.json`.
//! Connections are kept alive for the whole phase, so the TLS load is requests, not handshakes.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use podtap_tests::bpf::{podtap_programs, programs_held_by};
use podtap_tests::clients::wrk;
use podtap_tests::h2::h2load_for;
use podtap_tests::records::involves;
use podtap_tests::tls::{https_url, Certs};
use podtap_tests::{CgroupDriver, Nginx, Pod, PodPair};
use serde_json::{json, Value};

use crate::root;

/// What the overhead bench loads nginx with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// wrk, HTTP/1.1 in the clear.
    Plain,
    /// wrk, HTTP/1.1 over TLS.
    Tls,
    /// h2load, HTTP/2 over TLS (ALPN h2), one stream at a time per connection.
    TlsH2,
}

impl Traffic {
    /// Stem of the files the bench writes in `target/bench/`.
    fn stem(self) -> &'static str {
        match self {
            Traffic::Plain => "overhead",
            Traffic::Tls => "overhead-tls",
            Traffic::TlsH2 => "overhead-tls-h2",
        }
    }

    fn client(self) -> &'static str {
        match self {
            Traffic::Plain | Traffic::Tls => "wrk",
            Traffic::TlsH2 => "h2load",
        }
    }

    fn tls(self) -> bool {
        self != Traffic::Plain
    }

    /// Enough connections to keep both cores busy: TLS requests cost more per request on both ends.
    pub fn default_connections(self) -> u32 {
        match self {
            Traffic::Plain => 4,
            Traffic::Tls | Traffic::TlsH2 => 16,
        }
    }
}

/// One load phase, whichever client ran it.
#[derive(Clone, Copy, Debug)]
struct Load {
    requests: u64,
    errors: u64,
    requests_per_sec: f64,
    latency_mean_us: Option<f64>,
    /// wrk only (h2load prints no percentiles).
    latency_p99_us: Option<f64>,
}

impl Load {
    fn json(&self) -> Value {
        json!({
            "requests": self.requests,
            "requests_per_sec": self.requests_per_sec,
            "errors": self.errors,
            "latency_mean_us": self.latency_mean_us,
            "latency_p99_us": self.latency_p99_us,
        })
    }
}

fn load(traffic: Traffic, pod: &Pod, url: &str, connections: u32, seconds: u32) -> Result<Load> {
    Ok(match traffic {
        Traffic::Plain | Traffic::Tls => {
            let r = wrk(pod, 0, url, connections, seconds)?;
            Load {
                requests: r.requests,
                errors: r.errors,
                requests_per_sec: r.requests_per_sec,
                latency_mean_us: r.latency_mean_us,
                latency_p99_us: r.latency_p99_us,
            }
        }
        Traffic::TlsH2 => {
            let r = h2load_for(pod, 0, url, seconds, connections, 1)?;
            Load {
                requests: r.done,
                errors: r.done - r.status_2xx.min(r.done),
                requests_per_sec: r.requests_per_sec,
                latency_mean_us: r.request_mean_us,
                latency_p99_us: None,
            }
        }
    })
}

/// How the overhead bench runs.
pub struct OverheadOptions {
    /// Seconds of load per phase.
    pub seconds: u32,
    pub connections: u32,
    pub traffic: Traffic,
    /// Phases with podtap, each followed by one without (the first comes after one without).
    pub rounds: u32,
}

pub fn overhead(bin: &Path, opts: &OverheadOptions) -> Result<()> {
    let OverheadOptions {
        seconds,
        connections,
        traffic,
        rounds,
    } = *opts;
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let out_dir = root().join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Systemd)?;
    // The certificates live in a temp dir as long as `certs` (the clients do not verify them).
    let certs = traffic
        .tls()
        .then(|| Certs::for_ip(pair.b.ip))
        .transpose()?;
    let (nginx, url) = match &certs {
        Some(c) => {
            let nginx = Nginx::start_tls(&pair.b, 0, 8443, &c.cert, &c.key)?;
            let url = https_url(nginx.ip, nginx.port, "/items/1");
            (nginx, url)
        }
        None => {
            let nginx = Nginx::start(&pair.b, 0, 8080)?;
            let url = nginx.url("/items/1");
            (nginx, url)
        }
    };
    let run = |s| load(traffic, &pair.a, &url, connections, s);
    // A short warm-up so both phases start from the same state.
    let warm = run(1)?;
    if warm.requests == 0 {
        bail!("the warm-up completed no request against {url}: {warm:?}");
    }
    let client = traffic.client();

    eprintln!("xtask: {seconds} s of {client} without podtap");
    let mut before = run(seconds)?;
    let calls_path = out_dir.join(format!("{}-calls.jsonl", traffic.stem()));
    File::create(&calls_path)?;
    let mut phases = Vec::new();
    let mut podtap = PodtapUsage::default();
    for round in 1..=rounds {
        // Kernel run-time statistics of eBPF programs, on while this descriptor is open.
        let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .context("enabling eBPF run-time statistics (BPF_ENABLE_STATS)")?;
        let running = PodtapRun::start(bin, &calls_path, seconds)?;
        eprintln!("xtask: {seconds} s of {client} with podtap (round {round} of {rounds})");
        let with = run(seconds)?;
        podtap.add(running.finish(&calls_path)?);
        drop(stats);
        eprintln!("xtask: {seconds} s of {client} without podtap, again");
        let after = run(seconds)?;
        phases.push(Round::new(before, with, after));
        before = after;
    }

    let calls = count_calls(&calls_path, &pair.ips())?;
    // Over TLS only the plaintext calls count; anything else came from the ciphertext.
    let reported = if traffic.tls() { calls.tls } else { calls.all };
    let requests: u64 = phases.iter().map(|r| r.with.requests).sum();
    let ratio = median(phases.iter().map(|r| Some(r.ratio))).unwrap_or(0.0);
    let added_mean_us = median(phases.iter().map(|r| r.added_mean_us));
    let added_p99_us = median(phases.iter().map(|r| r.added_p99_us));
    let cpu_s = tv(podtap.usage.ru_utime) + tv(podtap.usage.ru_stime);
    let per_1k = |n: u64| (n > 0).then(|| cpu_s * 1000.0 / (n as f64 / 1000.0));
    let cpu_ms_per_1k_calls = per_1k(reported);
    let cpu_ms_per_1k_requests = per_1k(requests);
    let rss_mib = podtap.usage.ru_maxrss as f64 / 1024.0;
    let bpf_ns: u64 = podtap.bpf.iter().map(|p| p.run_time_ns).sum();
    let bpf_ms_per_1k_requests =
        (requests > 0).then(|| bpf_ns as f64 / 1e6 / (requests as f64 / 1000.0));

    let protocol = match traffic {
        Traffic::Plain => "HTTP/1.1",
        Traffic::Tls => "HTTP/1.1 over TLS (keep-alive)",
        Traffic::TlsH2 => "HTTP/2 over TLS (ALPN h2, keep-alive)",
    };
    println!(
        "podtap overhead: nginx <- {client} -t1 -c{connections} -d{seconds}s, {protocol}, one pod to another"
    );
    let us = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.1}"));
    let ms = |v: Option<f64>| v.map_or("n/a (no calls)".to_owned(), |v| format!("{v:.2}"));
    let mut rows = Vec::new();
    for (i, r) in phases.iter().enumerate() {
        rows.push((
            format!("round {}: req/s without, with, without", i + 1),
            format!(
                "{:.0} / {:.0} / {:.0}",
                r.before.requests_per_sec, r.with.requests_per_sec, r.after.requests_per_sec
            ),
        ));
        rows.push((
            format!("round {}: mean latency us, same order", i + 1),
            [r.before, r.with, r.after]
                .map(|l| us(l.latency_mean_us))
                .join(" / "),
        ));
    }
    let of_rounds = if rounds > 1 { " (median)" } else { "" };
    rows.extend([
        (
            format!("throughput ratio (with/mean without){of_rounds}"),
            format!("{ratio:.3}"),
        ),
        (
            format!("added mean latency per call (us){of_rounds}"),
            us(added_mean_us),
        ),
    ]);
    if traffic != Traffic::TlsH2 {
        rows.push((
            format!("added p99 latency (us){of_rounds}"),
            us(added_p99_us),
        ));
    }
    let errors = |f: fn(&Round) -> &Load| phases.iter().map(|r| f(r).errors).sum::<u64>();
    rows.extend([
        (
            "podtap CPU ms per 1,000 calls".to_owned(),
            ms(cpu_ms_per_1k_calls),
        ),
        (
            "podtap CPU ms per 1,000 requests".to_owned(),
            ms(cpu_ms_per_1k_requests),
        ),
        (
            "podtap CPU seconds (user+sys)".to_owned(),
            format!("{cpu_s:.2}"),
        ),
        ("podtap peak RSS (MiB)".to_owned(), format!("{rss_mib:.1}")),
        (
            "eBPF run time ms per 1,000 requests".to_owned(),
            ms(bpf_ms_per_1k_requests),
        ),
        (
            "client errors (without/with podtap)".to_owned(),
            format!("{}/{}", errors(|r| &r.after), errors(|r| &r.with)),
        ),
        (
            format!("requests completed by {client} with podtap"),
            requests.to_string(),
        ),
    ]);
    if traffic.tls() {
        rows.extend([
            (
                "TLS calls reported by podtap".to_owned(),
                calls.tls.to_string(),
            ),
            (
                "non-TLS calls (from ciphertext)".to_owned(),
                (calls.all - calls.tls).to_string(),
            ),
        ]);
    } else {
        rows.push(("calls reported by podtap".to_owned(), calls.all.to_string()));
    }
    for (label, value) in &rows {
        println!("{label:<44} {value:>22}");
    }
    for p in &podtap.bpf {
        println!(
            "  eBPF {:<28} {:>10} runs {:>8.0} ns/run",
            p.name,
            p.run_count,
            p.run_time_ns as f64 / p.run_count.max(1) as f64
        );
    }
    for line in &podtap.summaries {
        println!("{line}");
    }

    let first = &phases[0];
    let report = json!({
        "traffic": traffic.stem(),
        "client": client,
        "seconds": seconds,
        "connections": connections,
        "rounds": phases.iter().map(Round::json).collect::<Vec<_>>(),
        "without_podtap": first.before.json(),
        "without_podtap_after": first.after.json(),
        "with_podtap": first.with.json(),
        "throughput_ratio": ratio,
        "added_latency_mean_us": added_mean_us,
        "added_latency_p99_us": added_p99_us,
        "podtap_cpu_seconds": cpu_s,
        "podtap_cpu_ms_per_1000_calls": cpu_ms_per_1k_calls,
        "podtap_cpu_ms_per_1000_requests": cpu_ms_per_1k_requests,
        "podtap_peak_rss_kib": podtap.usage.ru_maxrss,
        "ebpf_ms_per_1000_requests": bpf_ms_per_1k_requests,
        "ebpf_programs": podtap.bpf.iter().map(|p| json!({
            "name": p.name, "runs": p.run_count, "run_time_ns": p.run_time_ns,
        })).collect::<Vec<_>>(),
        "calls_reported": reported,
        "calls_reported_tls": calls.tls,
        "calls_reported_all": calls.all,
        "requests_completed": requests,
        "podtap_summary": podtap.summaries,
    });
    let path = out_dir.join(format!("{}.json", traffic.stem()));
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("written {}", path.display());
    drop(nginx);
    drop(certs);
    drop(pair);
    Ok(())
}

/// One phase with podtap and the phases without it either side.
struct Round {
    before: Load,
    with: Load,
    after: Load,
    /// Requests/s with podtap over the mean of the two without.
    ratio: f64,
    /// Latency with podtap minus the mean of the two without.
    added_mean_us: Option<f64>,
    added_p99_us: Option<f64>,
}

impl Round {
    fn new(before: Load, with: Load, after: Load) -> Self {
        let baseline = (before.requests_per_sec + after.requests_per_sec) / 2.0;
        let added =
            |f: fn(&Load) -> Option<f64>| Some(f(&with)? - (f(&before)? + f(&after)?) / 2.0);
        Self {
            before,
            with,
            after,
            ratio: if baseline > 0.0 {
                with.requests_per_sec / baseline
            } else {
                0.0
            },
            added_mean_us: added(|l| l.latency_mean_us),
            added_p99_us: added(|l| l.latency_p99_us),
        }
    }

    fn json(&self) -> Value {
        json!({
            "without_podtap": self.before.json(),
            "with_podtap": self.with.json(),
            "without_podtap_after": self.after.json(),
            "throughput_ratio": self.ratio,
            "added_latency_mean_us": self.added_mean_us,
            "added_latency_p99_us": self.added_p99_us,
        })
    }
}

/// The median of the values present (the mean of the middle two for an even count).
fn median(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = values.flatten().collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// `podtap run --output jsonl` writing to a file, its stderr read by a thread.
struct PodtapRun {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: JoinHandle<()>,
    log: Vec<String>,
}

/// What podtap used, over one run or several.
struct PodtapUsage {
    /// CPU times summed, peak RSS the largest.
    usage: libc::rusage,
    /// podtap's eBPF programs (summed by name) while statistics were on.
    bpf: Vec<BpfUse>,
    /// The `podtap: summary ...` line of each run.
    summaries: Vec<String>,
}

impl Default for PodtapUsage {
    fn default() -> Self {
        Self {
            // SAFETY: rusage is plain data; all zeroes is a valid value.
            usage: unsafe { std::mem::zeroed() },
            bpf: Vec::new(),
            summaries: Vec::new(),
        }
    }
}

impl PodtapUsage {
    fn add(&mut self, run: PodtapUsage) {
        let add_tv = |a: &mut libc::timeval, b: libc::timeval| {
            let us = (a.tv_sec + b.tv_sec) * 1_000_000 + a.tv_usec + b.tv_usec;
            a.tv_sec = us / 1_000_000;
            a.tv_usec = us % 1_000_000;
        };
        add_tv(&mut self.usage.ru_utime, run.usage.ru_utime);
        add_tv(&mut self.usage.ru_stime, run.usage.ru_stime);
        self.usage.ru_maxrss = self.usage.ru_maxrss.max(run.usage.ru_maxrss);
        add_bpf(&mut self.bpf, run.bpf);
        self.summaries.extend(run.summaries);
    }
}

impl PodtapRun {
    /// Starts podtap and returns once it prints `podtap: capturing` (at most 30 s).
    fn start(bin: &Path, calls_path: &Path, seconds: u32) -> Result<Self> {
        let mut child = Command::new(bin)
            .args([
                "run",
                "--output",
                "jsonl",
                "--duration",
                &(seconds + 120).to_string(),
            ])
            .stdin(Stdio::null())
            // Appended to: several rounds write one file.
            .stdout(File::options().append(true).create(true).open(calls_path)?)
            .stderr(Stdio::piped())
            .spawn()
            .context("starting podtap (build it with `cargo build --release -p podtap`)")?;
        let stderr = child.stderr.take().context("stderr")?;
        let (tx, lines) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut this = Self {
            child,
            lines,
            reader,
            log: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match this.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    let capturing = l.starts_with("podtap: capturing");
                    this.log.push(l);
                    if capturing {
                        return Ok(this);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Reap it (the error below is what matters); the status itself adds nothing.
                    this.child.wait().ok();
                    bail!("podtap exited before capturing:\n{}", this.log.join("\n"));
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() > deadline => {
                    this.child.kill().ok();
                    this.child.wait().ok();
                    bail!(
                        "podtap did not print `podtap: capturing` in 30 s:\n{}",
                        this.log.join("\n")
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Lets podtap write its last calls, stops it with SIGINT and reaps it with wait4.
    fn finish(mut self, calls_path: &Path) -> Result<PodtapUsage> {
        // Wait until the file stops growing (at most 10 s).
        let mut last = 0;
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(200));
            let n = std::fs::metadata(calls_path).map(|m| m.len()).unwrap_or(0);
            if n == last && n > 0 {
                break;
            }
            last = n;
        }
        let pid = self.child.id() as i32;
        let bpf = bpf_use(self.child.id())?;
        // SAFETY: kill(2) and wait4(2) on our own child; rusage is plain data.
        let (status, usage) = unsafe {
            libc::kill(pid, libc::SIGINT);
            let mut status = 0;
            let mut usage: libc::rusage = std::mem::zeroed();
            if libc::wait4(pid, &mut status, 0, &mut usage) != pid {
                bail!("wait4 on podtap: {}", std::io::Error::last_os_error());
            }
            (status, usage)
        };
        // Drain stderr until it closes (at most 5 s: a leftover child holding the pipe must not hang us).
        let until = Instant::now() + Duration::from_secs(5);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => self.log.push(l),
                Err(_) => break,
            }
        }
        if self.reader.is_finished() {
            self.reader.join().ok();
        }
        let summaries = self
            .log
            .iter()
            .filter(|l| l.starts_with("podtap: summary"))
            .cloned()
            .collect();
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            eprintln!(
                "xtask: podtap exited abnormally (wait status {status}):\n{}",
                self.log.join("\n")
            );
        }
        Ok(PodtapUsage {
            usage,
            bpf,
            summaries,
        })
    }
}

/// Run time of the eBPF programs of one name (the kernel keeps 15 characters of a name, so programs
/// whose names differ later are summed together).
struct BpfUse {
    name: String,
    run_time_ns: u64,
    run_count: u64,
}

/// The eBPF programs process `pid` holds, summed by name.
fn bpf_use(pid: u32) -> Result<Vec<BpfUse>> {
    let held = programs_held_by(pid)?;
    let mut by_name = Vec::new();
    add_bpf(
        &mut by_name,
        podtap_programs()?
            .into_iter()
            .filter(|p| held.contains(&p.id))
            .map(|p| BpfUse {
                name: p.name,
                run_time_ns: p.run_time_ns,
                run_count: p.run_count,
            }),
    );
    Ok(by_name)
}

fn add_bpf(by_name: &mut Vec<BpfUse>, more: impl IntoIterator<Item = BpfUse>) {
    for p in more {
        match by_name.iter_mut().find(|u| u.name == p.name) {
            Some(u) => {
                u.run_time_ns += p.run_time_ns;
                u.run_count += p.run_count;
            }
            None => by_name.push(p),
        }
    }
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// Records between the two pods: all of them, and those marked `"tls": true`.
struct Calls {
    all: u64,
    tls: u64,
}

fn count_calls(path: &Path, ips: &[Ipv4Addr]) -> Result<Calls> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut calls = Calls { all: 0, tls: 0 };
    for line in BufReader::new(f).lines() {
        let line = line?;
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            if involves(&v, ips) {
                calls.all += 1;
                calls.tls += u64::from(v["tls"] == true);
            }
        }
    }
    Ok(calls)
}

//! `cargo xtask bench overhead [--tls [--h2]]`: nginx in one pod, a load client in the other, N seconds
//! without podtap, N seconds with `podtap run --output jsonl` writing to a file, and N seconds without
//! again (the machines are shared and drift: the baseline is the mean of the runs before and after).
//! Reports the throughput ratio, the added latency, podtap's CPU time per 1,000 calls and peak RSS (from
//! wait4's rusage), the time its eBPF programs ran (kernel run-time statistics: that time is charged to
//! the processes whose packets and calls they see, not to podtap), and calls reported vs requests
//! completed.
//!
//! Plain: wrk over HTTP/1.1, `target/bench/overhead.json`. `--tls`: wrk over HTTPS (HTTP/1.1) against a
//! self-signed certificate generated into `target/bench/`, `overhead-tls.json`; only calls marked
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
use podtap_tests::{CgroupDriver, Nginx, Pod, PodPair, TlsCert};
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

pub fn overhead(bin: &Path, seconds: u32, connections: u32, traffic: Traffic) -> Result<()> {
    let out_dir = root().join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Systemd)?;
    let nginx = if traffic.tls() {
        let cert = TlsCert::self_signed(&out_dir, "podtap-bench")?;
        Nginx::start_tls(&pair.b, 0, 8443, &cert)?
    } else {
        Nginx::start(&pair.b, 0, 8080)?
    };
    let url = nginx.url("/items/1");
    let run = |s| load(traffic, &pair.a, &url, connections, s);
    // A short warm-up so both phases start from the same state.
    let warm = run(1)?;
    if warm.requests == 0 {
        bail!("the warm-up completed no request against {url}: {warm:?}");
    }
    let client = traffic.client();

    eprintln!("xtask: {seconds} s of {client} without podtap");
    let before = run(seconds)?;

    let calls_path = out_dir.join(format!("{}-calls.jsonl", traffic.stem()));
    // Kernel run-time statistics of eBPF programs, on while this descriptor is open.
    let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("enabling eBPF run-time statistics (BPF_ENABLE_STATS)")?;
    let podtap = PodtapRun::start(bin, &calls_path, seconds)?;
    eprintln!("xtask: {seconds} s of {client} with podtap");
    let with = run(seconds)?;
    let podtap = podtap.finish(&calls_path)?;
    drop(stats);

    eprintln!("xtask: {seconds} s of {client} without podtap, again");
    let after = run(seconds)?;

    let calls = count_calls(&calls_path, &pair.ips())?;
    // Over TLS only the plaintext calls count; anything else came from the ciphertext.
    let reported = if traffic.tls() { calls.tls } else { calls.all };
    let baseline = (before.requests_per_sec + after.requests_per_sec) / 2.0;
    let ratio = if baseline > 0.0 {
        with.requests_per_sec / baseline
    } else {
        0.0
    };
    let added_mean_us = added(
        with.latency_mean_us,
        before.latency_mean_us,
        after.latency_mean_us,
    );
    let added_p99_us = added(
        with.latency_p99_us,
        before.latency_p99_us,
        after.latency_p99_us,
    );
    let cpu_s = tv(podtap.usage.ru_utime) + tv(podtap.usage.ru_stime);
    let per_1k = |n: u64| (n > 0).then(|| cpu_s * 1000.0 / (n as f64 / 1000.0));
    let cpu_ms_per_1k_calls = per_1k(reported);
    let cpu_ms_per_1k_requests = per_1k(with.requests);
    let rss_mib = podtap.usage.ru_maxrss as f64 / 1024.0;
    let bpf_ns: u64 = podtap.bpf.iter().map(|p| p.run_time_ns).sum();
    let bpf_ms_per_1k_requests =
        (with.requests > 0).then(|| bpf_ns as f64 / 1e6 / (with.requests as f64 / 1000.0));

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
    let mut rows = vec![
        (
            "requests/s without podtap (before)",
            format!("{:.0}", before.requests_per_sec),
        ),
        (
            "requests/s without podtap (after)",
            format!("{:.0}", after.requests_per_sec),
        ),
        (
            "requests/s with podtap",
            format!("{:.0}", with.requests_per_sec),
        ),
        (
            "throughput ratio (with/mean without)",
            format!("{ratio:.3}"),
        ),
        (
            "mean latency us without (before)",
            us(before.latency_mean_us),
        ),
        ("mean latency us without (after)", us(after.latency_mean_us)),
        ("mean latency us with podtap", us(with.latency_mean_us)),
        ("added mean latency per call (us)", us(added_mean_us)),
    ];
    if traffic != Traffic::TlsH2 {
        rows.extend([
            ("p99 latency us with podtap", us(with.latency_p99_us)),
            ("added p99 latency (us)", us(added_p99_us)),
        ]);
    }
    rows.extend([
        ("podtap CPU ms per 1,000 calls", ms(cpu_ms_per_1k_calls)),
        (
            "podtap CPU ms per 1,000 requests",
            ms(cpu_ms_per_1k_requests),
        ),
        ("podtap CPU seconds (user+sys)", format!("{cpu_s:.2}")),
        ("podtap peak RSS (MiB)", format!("{rss_mib:.1}")),
        (
            "eBPF run time ms per 1,000 requests",
            ms(bpf_ms_per_1k_requests),
        ),
        (
            "client errors (before/with/after)",
            format!("{}/{}/{}", before.errors, with.errors, after.errors),
        ),
    ]);
    let completed = format!("requests completed by {client}");
    rows.push((&completed, with.requests.to_string()));
    if traffic.tls() {
        rows.extend([
            ("TLS calls reported by podtap", calls.tls.to_string()),
            (
                "non-TLS calls (from ciphertext)",
                (calls.all - calls.tls).to_string(),
            ),
        ]);
    } else {
        rows.push(("calls reported by podtap", calls.all.to_string()));
    }
    for (label, value) in &rows {
        println!("{label:<36} {value:>14}");
    }
    for p in &podtap.bpf {
        println!(
            "  eBPF {:<28} {:>10} runs {:>8.0} ns/run",
            p.name,
            p.run_count,
            p.run_time_ns as f64 / p.run_count.max(1) as f64
        );
    }
    if !podtap.summary.is_empty() {
        println!("{}", podtap.summary);
    }

    let report = json!({
        "traffic": traffic.stem(),
        "client": client,
        "seconds": seconds,
        "connections": connections,
        "without_podtap": before.json(),
        "without_podtap_after": after.json(),
        "with_podtap": with.json(),
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
        "requests_completed": with.requests,
        "podtap_summary": podtap.summary,
    });
    let path = out_dir.join(format!("{}.json", traffic.stem()));
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("written {}", path.display());
    drop(nginx);
    drop(pair);
    Ok(())
}

/// `with` minus the mean of the two baselines.
fn added(with: Option<f64>, before: Option<f64>, after: Option<f64>) -> Option<f64> {
    Some(with? - (before? + after?) / 2.0)
}

/// `podtap run --output jsonl` writing to a file, its stderr read by a thread.
struct PodtapRun {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: JoinHandle<()>,
    log: Vec<String>,
}

/// What a finished podtap run used.
struct PodtapUsage {
    usage: libc::rusage,
    /// podtap's eBPF programs (summed by name) while statistics were on.
    bpf: Vec<BpfUse>,
    /// The `podtap: summary ...` line, or empty.
    summary: String,
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
            .stdout(File::create(calls_path)?)
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
        let summary = self
            .log
            .iter()
            .find(|l| l.starts_with("podtap: summary"))
            .cloned()
            .unwrap_or_default();
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            eprintln!(
                "xtask: podtap exited abnormally (wait status {status}):\n{}",
                self.log.join("\n")
            );
        }
        Ok(PodtapUsage {
            usage,
            bpf,
            summary,
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
    let mut by_name: Vec<BpfUse> = Vec::new();
    for p in podtap_programs()?
        .into_iter()
        .filter(|p| held.contains(&p.id))
    {
        match by_name.iter_mut().find(|u| u.name == p.name) {
            Some(u) => {
                u.run_time_ns += p.run_time_ns;
                u.run_count += p.run_count;
            }
            None => by_name.push(BpfUse {
                name: p.name,
                run_time_ns: p.run_time_ns,
                run_count: p.run_count,
            }),
        }
    }
    Ok(by_name)
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

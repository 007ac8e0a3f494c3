//! `cargo xtask bench overhead`: nginx in one pod, wrk in the other, N seconds without podtap, N seconds
//! with `podtap run --output jsonl` writing to a file, and N seconds without again (the machines are shared
//! and drift: the baseline is the mean of the runs before and after). Reports the throughput ratio, podtap's CPU
//! time per 1,000 calls and peak RSS (from wait4's rusage), and calls reported vs requests completed.
//! Writes `target/bench/overhead.json`.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use podtap_tests::clients::wrk;
use podtap_tests::records::involves;
use podtap_tests::{CgroupDriver, Nginx, PodPair};
use serde_json::{json, Value};

use crate::root;

pub fn overhead(bin: &std::path::Path, seconds: u32, connections: u32) -> Result<()> {
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Systemd)?;
    let nginx = Nginx::start(&pair.b, 0, 8080)?;
    let url = nginx.url("/items/1");
    // A short warm-up so both phases start from the same state.
    wrk(&pair.a, 0, &url, connections, 1)?;

    eprintln!("xtask: {seconds} s of wrk without podtap");
    let base = wrk(&pair.a, 0, &url, connections, seconds)?;

    let out_dir = root().join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let calls_path = out_dir.join("overhead-calls.jsonl");
    let mut child = Command::new(bin)
        .args([
            "run",
            "--output",
            "jsonl",
            "--duration",
            &(seconds + 120).to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(File::create(&calls_path)?)
        .stderr(Stdio::piped())
        .spawn()
        .context("starting podtap (build it with `cargo build --release -p podtap`)")?;
    let pid = child.id() as i32;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) => {
                let capturing = l.starts_with("podtap: capturing");
                log.push(l);
                if capturing {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Reap it (the error below is what matters); the status itself adds nothing.
                child.wait().ok();
                bail!("podtap exited before capturing:\n{}", log.join("\n"));
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() > deadline => {
                child.kill().ok();
                child.wait().ok();
                bail!(
                    "podtap did not print `podtap: capturing` in 30 s:\n{}",
                    log.join("\n")
                );
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }

    eprintln!("xtask: {seconds} s of wrk with podtap");
    let with = wrk(&pair.a, 0, &url, connections, seconds)?;
    // Let podtap write the last calls: wait until the file stops growing (at most 10 s).
    let ips = pair.ips();
    let mut last = 0;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200));
        let n = std::fs::metadata(&calls_path).map(|m| m.len()).unwrap_or(0);
        if n == last && n > 0 {
            break;
        }
        last = n;
    }
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
        match rx.recv_timeout(left) {
            Ok(l) => log.push(l),
            Err(_) => break,
        }
    }
    if reader.is_finished() {
        reader.join().ok();
    }
    let summary = log
        .iter()
        .find(|l| l.starts_with("podtap: summary"))
        .cloned()
        .unwrap_or_default();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        eprintln!(
            "xtask: podtap exited abnormally (wait status {status}):\n{}",
            log.join("\n")
        );
    }

    eprintln!("xtask: {seconds} s of wrk without podtap, again");
    let base_after = wrk(&pair.a, 0, &url, connections, seconds)?;
    let baseline = (base.requests_per_sec + base_after.requests_per_sec) / 2.0;

    let reported = count_calls(&calls_path, &ips)?;
    let cpu_s = tv(usage.ru_utime) + tv(usage.ru_stime);
    let rss_mib = usage.ru_maxrss as f64 / 1024.0;
    let ratio = if baseline > 0.0 {
        with.requests_per_sec / baseline
    } else {
        0.0
    };
    let cpu_ms_per_1k = if reported > 0 {
        cpu_s * 1000.0 / (reported as f64 / 1000.0)
    } else {
        f64::NAN
    };

    println!("podtap overhead: nginx <- wrk -t1 -c{connections} -d{seconds}s, one pod to another");
    println!(
        "{:<34} {:>14}",
        "requests/s without podtap (before)",
        format!("{:.0}", base.requests_per_sec)
    );
    println!(
        "{:<34} {:>14}",
        "requests/s without podtap (after)",
        format!("{:.0}", base_after.requests_per_sec)
    );
    println!(
        "{:<34} {:>14}",
        "requests/s with podtap",
        format!("{:.0}", with.requests_per_sec)
    );
    println!(
        "{:<34} {:>14}",
        "throughput ratio (with/mean without)",
        format!("{ratio:.3}")
    );
    println!(
        "{:<34} {:>14}",
        "podtap CPU ms per 1,000 calls",
        format!("{cpu_ms_per_1k:.2}")
    );
    println!(
        "{:<34} {:>14}",
        "podtap CPU seconds (user+sys)",
        format!("{cpu_s:.2}")
    );
    println!(
        "{:<34} {:>14}",
        "podtap peak RSS (MiB)",
        format!("{rss_mib:.1}")
    );
    println!("{:<34} {:>14}", "requests completed by wrk", with.requests);
    println!("{:<34} {:>14}", "calls reported by podtap", reported);
    if !summary.is_empty() {
        println!("{summary}");
    }

    let report = json!({
        "seconds": seconds,
        "connections": connections,
        "without_podtap": { "requests": base.requests, "requests_per_sec": base.requests_per_sec },
        "without_podtap_after": { "requests": base_after.requests, "requests_per_sec": base_after.requests_per_sec },
        "with_podtap": { "requests": with.requests, "requests_per_sec": with.requests_per_sec },
        "throughput_ratio": ratio,
        "podtap_cpu_seconds": cpu_s,
        "podtap_cpu_ms_per_1000_calls": if cpu_ms_per_1k.is_finite() { json!(cpu_ms_per_1k) } else { Value::Null },
        "podtap_peak_rss_kib": usage.ru_maxrss,
        "calls_reported": reported,
        "requests_completed": with.requests,
        "podtap_summary": summary,
    });
    let path = out_dir.join("overhead.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("written {}", path.display());
    drop(nginx);
    drop(pair);
    Ok(())
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

fn count_calls(path: &std::path::Path, ips: &[Ipv4Addr]) -> Result<u64> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut n = 0;
    for line in BufReader::new(f).lines() {
        let line = line?;
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            if involves(&v, ips) {
                n += 1;
            }
        }
    }
    Ok(n)
}

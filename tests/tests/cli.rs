//! The podtap command line as a whole: `podtap check`, the run ending by itself (duration) or on a
//! signal, and no eBPF program left loaded afterwards. Needs root and the podtap binary.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use podtap_tests::bpf::podtap_programs;
use podtap_tests::podtap::binary;
use podtap_tests::Podtap;

#[test]
fn j_check_passes_here_and_reports_cgroup_v2() {
    let out = Command::new(binary().expect("podtap binary"))
        .arg("check")
        .output()
        .expect("podtap check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "podtap check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let text = format!("{stdout}\n{stderr}");
    assert!(
        text.lines().any(|l| {
            let l = l.to_lowercase();
            l.contains("cgroup") && (l.contains("v2") || l.contains("cgroup2")) && l.contains("ok")
        }),
        "no `ok` line for cgroup v2 in:\n{text}"
    );
}

/// Tests here that start podtap run one at a time, so `k` can tell its podtap's programs apart by id
/// (this bpftool does not report the owning pids).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn k_no_program_left_after_exit() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before: BTreeSet<u64> = podtap_programs()
        .expect("bpftool")
        .iter()
        .map(|p| p.id)
        .collect();
    let mut tap = Podtap::start(60, &[]).expect("podtap run");
    let pid = tap.pid().expect("pid");
    let running = podtap_programs().expect("bpftool");
    let ours: BTreeSet<&str> = running
        .iter()
        .filter(|p| !before.contains(&p.id))
        .map(|p| p.name.as_str())
        .collect();
    for name in ["podtap_egress", "podtap_ingress"] {
        assert!(
            ours.contains(name),
            "{name} not loaded by podtap (pid {pid}) while capturing: {running:?}"
        );
    }
    let out = tap.stop().expect("stop");
    out.assert_clean_exit();
    // Left behind = a podtap program that was not there before (the tests of this file run one at a time).
    // The kernel frees tracing programs after an RCU grace period once their link is closed, so a
    // program may still be listed for a moment after podtap exited: allow it a few seconds to go.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let leaked = loop {
        let leaked: Vec<_> = podtap_programs()
            .expect("bpftool")
            .into_iter()
            .filter(|p| !before.contains(&p.id))
            .collect();
        if leaked.is_empty() || std::time::Instant::now() > deadline {
            break leaked;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        leaked.is_empty(),
        "eBPF programs left loaded after podtap exited: {leaked:?}"
    );
}

#[test]
fn duration_ends_the_run_with_a_summary() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let start = Instant::now();
    let mut tap = Podtap::start(2, &[]).expect("podtap run");
    let out = tap.wait().expect("podtap exits by itself");
    assert!(start.elapsed() < Duration::from_secs(30));
    out.assert_clean_exit();
    let summary = out.summary().unwrap_or("");
    // The contract names events and drops; the binary prints `name=N` counters (calls=, packets=,
    // ring_buffer_full=, ...). Require counters, not particular names.
    let counters = summary
        .split_whitespace()
        .filter(|t| {
            t.split_once('=')
                .is_some_and(|(_, v)| v.parse::<u64>().is_ok())
        })
        .count();
    assert!(counters > 0, "summary lacks counters: {summary}");
}

#[test]
fn sigterm_detaches_and_summarises() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut tap = Podtap::start(60, &[]).expect("podtap run");
    let pid = tap.pid().expect("pid");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let out = tap.wait().expect("podtap exits on SIGTERM");
    out.assert_clean_exit();
    let held: Vec<_> = podtap_programs()
        .expect("bpftool")
        .into_iter()
        .filter(|p| p.pids.contains(&pid))
        .collect();
    assert!(held.is_empty(), "{held:?}");
}

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

#[test]
fn k_no_program_left_after_exit() {
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
        .filter(|p| p.pids.contains(&pid))
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
    // Left behind = a podtap program that was not there before and that no live process holds (other
    // podtap instances on this node, e.g. a parallel test, hold theirs).
    let leaked: Vec<_> = podtap_programs()
        .expect("bpftool")
        .into_iter()
        .filter(|p| !before.contains(&p.id) && (p.pids.is_empty() || p.pids.contains(&pid)))
        .collect();
    assert!(
        leaked.is_empty(),
        "eBPF programs left loaded after podtap exited: {leaked:?}"
    );
}

#[test]
fn duration_ends_the_run_with_a_summary() {
    let start = Instant::now();
    let mut tap = Podtap::start(2, &[]).expect("podtap run");
    let out = tap.wait().expect("podtap exits by itself");
    assert!(start.elapsed() < Duration::from_secs(30));
    out.assert_clean_exit();
    let summary = out.summary().unwrap_or("");
    assert!(
        summary.contains("events") && summary.contains("drops"),
        "summary lacks counters: {summary}"
    );
}

#[test]
fn sigterm_detaches_and_summarises() {
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

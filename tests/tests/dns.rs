//! podtap against real DNS between pods: dig -> dnsmasq over UDP (one socket per lookup) and over TCP
//! (several lookups on one connection), NXDOMAIN, a lookup nobody answers (`no_response` once
//! `--udp-timeout` passed), one query sent twice on one socket (one call); every call exactly once,
//! both ends attributed to their pod, container and process. The same traffic recorded with tcpdump in
//! the server's pod and replayed with `podtap replay` gives the same calls. Needs root and the podtap
//! binary (see `podtap::binary`).

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use podtap_tests::dns::{
    assert_dns_calls, dig, python_repeated_query, DigQuery, DnsExpect, Dnsmasq, SilentUdp,
    ALIAS_NAME, A_ADDR, A_NAME, WWW_ADDR, WWW_ADDR6, WWW_NAME,
};
use podtap_tests::podtap::replay;
use podtap_tests::records::EndExpect;
use podtap_tests::tcpdump::{wire_view, Tcpdump};
use podtap_tests::{CgroupDriver, PodPair, Podtap};

/// podtap runs at most this long; tests stop it with SIGINT well before.
const RUN_S: u32 = 120;
/// `--udp-timeout` for these tests: how long an unanswered query waits before it is `no_response`.
const UDP_TIMEOUT_S: &str = "2";
/// How long to wait for records after the traffic (the unanswered ones take the UDP timeout, plus up
/// to a second for podtap's idle sweep).
const SETTLE: Duration = Duration::from_secs(20);
/// Where the silent UDP socket listens (not 53: detection off port 53 is strict, and passes here).
const SILENT_PORT: u16 = 5300;

fn assert_answered(run: &[DigQuery], statuses: &[&str], answers: &[&[&str]]) {
    let got: Vec<(Option<&str>, Vec<&str>)> = run
        .iter()
        .map(|q| {
            assert!(q.id.is_some(), "dig got no answer to {q:?}");
            (
                q.status.as_deref(),
                q.answers.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let want: Vec<(Option<&str>, Vec<&str>)> = statuses
        .iter()
        .zip(answers)
        .map(|(s, a)| (Some(*s), a.to_vec()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_dig_to_dnsmasq_over_udp_and_tcp_and_unanswered_live_and_replayed() {
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Cgroupfs).expect("pods");
    let dnsmasq = Dnsmasq::start(&pair.b, 0).expect("dnsmasq");
    let silent = SilentUdp::start(&pair.b, 0, SILENT_PORT).expect("silent UDP socket");
    let mut tap = Podtap::start(RUN_S, &["--udp-timeout", UDP_TIMEOUT_S]).expect("podtap run");
    let mut capture = Tcpdump::record(&pair.b, 0, "veth0", "").expect("tcpdump");
    let server_ip = pair.b.ip.to_string();
    let at = format!("@{server_ip}");

    // UDP: one dig, five lookups, each from a socket of its own.
    let udp_queries = [
        (A_NAME, "A"),
        (WWW_NAME, "A"),
        (WWW_NAME, "AAAA"),
        (ALIAS_NAME, "A"),
        ("missing.nx.test", "A"),
    ];
    let mut args = vec!["+tries=1", "+timeout=3", at.as_str()];
    for (name, kind) in &udp_queries {
        args.extend([*name, *kind]);
    }
    let udp = dig(&pair.a, 0, &args, &udp_queries).expect("dig over UDP");
    assert_answered(
        &udp.queries,
        &["NOERROR", "NOERROR", "NOERROR", "NOERROR", "NXDOMAIN"],
        &[
            &[A_ADDR],
            &[WWW_ADDR],
            &[WWW_ADDR6],
            &[WWW_NAME, WWW_ADDR],
            &[],
        ],
    );

    // TCP: one connection, three lookups.
    let tcp_queries = [(ALIAS_NAME, "A"), (A_NAME, "A"), ("gone.nx.test", "AAAA")];
    let mut args = vec!["+tcp", "+keepopen", "+tries=1", at.as_str()];
    for (name, kind) in &tcp_queries {
        args.extend([*name, *kind]);
    }
    let tcp = dig(&pair.a, 0, &args, &tcp_queries).expect("dig over TCP");
    assert_answered(
        &tcp.queries,
        &["NOERROR", "NOERROR", "NXDOMAIN"],
        &[&[WWW_NAME, WWW_ADDR], &[A_ADDR], &[]],
    );

    // A lookup nobody answers (dig sends it once and gives up).
    let port = SILENT_PORT.to_string();
    let lost = dig(
        &pair.a,
        0,
        &[
            "+tries=1",
            "+timeout=1",
            &at,
            "-p",
            &port,
            "silent.test",
            "A",
        ],
        &[("silent.test", "A")],
    )
    .expect("dig to the silent socket");
    assert_eq!(lost.queries[0].id, None, "{}", lost.stdout);

    // The same query twice on one socket while it waits: one call.
    let twice = python_repeated_query(&pair.a, 0, &server_ip, SILENT_PORT, 4242, "twice.test", 2)
        .expect("repeated query");
    assert_eq!(twice.stdout.trim(), "0", "nobody answers");

    let client = |pid: u32, process: &str| {
        EndExpect::new(pair.a.ip, None, pair.a.container()).process(pid, process)
    };
    let dns_server = EndExpect::new(pair.b.ip, Some(53), pair.b.container())
        .process(dnsmasq.process.pid(), "dnsmasq");
    let silent_server = EndExpect::new(pair.b.ip, Some(SILENT_PORT), pair.b.container())
        .process(silent.process.pid(), "python3");
    let mut expected = Vec::new();
    for q in &udp.queries {
        expected.push(DnsExpect::from_dig(
            "udp",
            q,
            client(udp.pid, "isc-net-*"),
            dns_server.clone(),
        ));
    }
    for q in &tcp.queries {
        expected.push(DnsExpect::from_dig(
            "tcp",
            q,
            client(tcp.pid, "isc-net-*"),
            dns_server.clone(),
        ));
    }
    expected.push(DnsExpect::from_dig(
        "udp",
        &lost.queries[0],
        client(lost.pid, "isc-net-*"),
        silent_server.clone(),
    ));
    expected.push(DnsExpect {
        transport: "udp",
        id: Some(4242),
        name: "twice.test".into(),
        kind: "A".into(),
        rcode: None,
        answers: Vec::new(),
        client: client(twice.pid, "python3"),
        server: silent_server,
    });

    tap.wait_records(&pair.ips(), expected.len(), SETTLE);
    // Anything late (a second report of something) would show up now.
    std::thread::sleep(Duration::from_millis(500));
    let file = capture.stop().expect("stop tcpdump").to_owned();
    let out = tap.stop().expect("stop podtap");
    out.assert_clean_exit();
    let live = out.records_for(&pair.ips());
    assert_dns_calls(&live, &expected);
    // One TCP connection: one client port for its three calls; a UDP socket per dig lookup.
    let ports = |transport: &str, pid: u32| {
        live.iter()
            .filter(|r| r["transport"] == transport && r["client"]["pid"] == pid)
            .map(|r| r["client"]["port"].to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    assert_eq!(ports("tcp", tcp.pid), 1);
    assert_eq!(ports("udp", udp.pid), udp_queries.len());

    // The recording of the same traffic, replayed.
    let replayed = replay(&file).expect("podtap replay");
    replayed.assert_clean_exit();
    let mut from_file: Vec<String> = replayed
        .records_for(&pair.ips())
        .iter()
        .map(wire_view)
        .collect();
    let mut from_live: Vec<String> = live.iter().map(wire_view).collect();
    from_file.sort();
    from_live.sort();
    assert_eq!(
        from_file,
        from_live,
        "replay of {} differs from the live capture",
        file.display()
    );
}

#[test]
fn b_ipv6_loopback_between_two_containers_of_one_pod() {
    let mut pair = PodPair::new(CgroupDriver::Cgroupfs, CgroupDriver::Systemd).expect("pods");
    let sidecar = pair.a.add_container().expect("second container");
    let loopback = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let dnsmasq = Dnsmasq::start_on(&pair.a, 0, loopback).expect("dnsmasq on ::1");
    let mut tap = Podtap::start(RUN_S, &["--udp-timeout", UDP_TIMEOUT_S]).expect("podtap run");
    let at = "@::1";
    let udp_queries = [(A_NAME, "A"), (WWW_NAME, "AAAA")];
    let udp = dig(
        &pair.a,
        sidecar,
        &["+tries=1", at, A_NAME, "A", WWW_NAME, "AAAA"],
        &udp_queries,
    )
    .expect("dig over UDP");
    assert_answered(
        &udp.queries,
        &["NOERROR", "NOERROR"],
        &[&[A_ADDR], &[WWW_ADDR6]],
    );
    let tcp = dig(
        &pair.a,
        sidecar,
        &["+tcp", "+tries=1", at, "x.nx.test", "A"],
        &[("x.nx.test", "A")],
    )
    .expect("dig over TCP");
    assert_answered(&tcp.queries, &["NXDOMAIN"], &[&[]]);

    let client = |pid: u32| {
        EndExpect::at(loopback, None, &pair.a.containers[sidecar]).process(pid, "isc-net-*")
    };
    let server = EndExpect::at(loopback, Some(53), &pair.a.containers[0])
        .process(dnsmasq.process.pid(), "dnsmasq");
    let mut expected: Vec<DnsExpect> = udp
        .queries
        .iter()
        .map(|q| DnsExpect::from_dig("udp", q, client(udp.pid), server.clone()))
        .collect();
    expected.push(DnsExpect::from_dig(
        "tcp",
        &tcp.queries[0],
        client(tcp.pid),
        server,
    ));
    // Every pod's loopback is ::1: this pod's records are the ones naming its uid.
    let uid = pair.a.uid().to_owned();
    let ours = |records: Vec<serde_json::Value>| -> Vec<serde_json::Value> {
        records
            .into_iter()
            .filter(|r| r["client"]["pod_uid"] == uid.as_str())
            .collect()
    };
    podtap_tests::util::wait_until(SETTLE, || {
        let lines = ours(tap.all_records());
        (lines.len() >= expected.len()).then_some(())
    });
    let out = tap.stop().expect("stop podtap");
    out.assert_clean_exit();
    assert_dns_calls(&ours(out.records.clone()), &expected);
}

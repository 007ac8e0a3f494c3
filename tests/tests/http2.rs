//! podtap against real HTTP/2 and gRPC traffic between pods: h2load (streams multiplexed on each
//! connection) and curl with prior knowledge against nghttpd, curl's h2c upgrade against a Go h2c server
//! (nghttpd does not do the upgrade), and a grpc-go client against a grpcio server (the four kinds of
//! call, one failing). Each test also records the server pod's packets with tcpdump and checks that
//! `podtap replay` of the recording reports the same calls as the live run.

use std::collections::BTreeSet;
use std::time::Duration;

use podtap_tests::clients::curl;
use podtap_tests::h2::{grpc_client, h2load, GoH2c, GrpcServer, Nghttpd};
use podtap_tests::records::{assert_calls, call, EndExpect};
use podtap_tests::tcpdump::{assert_live_equals_replay, Tcpdump};
use podtap_tests::{CallExpect, CgroupDriver, PodPair, Podtap};
use serde_json::Value;

/// podtap runs at most this long; tests stop it with SIGINT well before.
const RUN_S: u32 = 120;
/// How long to wait for records to show up after the traffic.
const SETTLE: Duration = Duration::from_secs(10);

/// Waits for `n` records of this pair, stops podtap, checks it exited cleanly, returns the pair's records.
fn finish(tap: &mut Podtap, pair: &PodPair, n: usize) -> Vec<Value> {
    tap.wait_records(&pair.ips(), n, SETTLE);
    let out = tap.stop().expect("stop");
    // Shown when the test fails.
    eprintln!("{}", out.summary().unwrap_or_default());
    out.assert_clean_exit();
    out.records_for(&pair.ips())
}

/// `finish`, then checks the records are exactly `expected`, all HTTP/2, and that the replay of the
/// recording gives the same calls; returns the records.
fn finish_http2(
    tap: &mut Podtap,
    dump: &mut Tcpdump,
    pair: &PodPair,
    expected: &[CallExpect],
) -> Vec<Value> {
    let records = finish(tap, pair, expected.len());
    assert_calls(&records, expected);
    assert_version_2(&records);
    assert_live_equals_replay(&records, &dump.stop_and_replay().expect("replay"));
    records
}

fn podtap() -> Podtap {
    Podtap::start(RUN_S, &[]).expect("podtap run")
}

fn assert_version_2(records: &[Value]) {
    for r in records {
        assert_eq!(r["version"], "2", "version in {r}");
    }
}

/// `curl -sS --http2... -w '%{http_code} %{http_version}\n' -o /dev/null URL...` on one connection.
fn curl_h2(pair: &PodPair, mode: &str, urls: &[String]) -> (u32, Vec<(u16, String)>) {
    let mut args: Vec<&str> = vec!["-sS", mode, "-w", "%{http_code} %{http_version}\\n"];
    for u in urls {
        args.extend(["-o", "/dev/null", u.as_str()]);
    }
    let run = curl(&pair.a, 0, &args).expect("curl");
    let answers = run
        .stdout
        .lines()
        .map(|l| {
            let (code, version) = l.split_once(' ').expect("code and version");
            (code.parse().expect("code"), version.to_owned())
        })
        .collect();
    (run.pid, answers)
}

#[test]
fn a_h2load_multiplexes_200_requests_on_2_connections() {
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Cgroupfs).expect("pods");
    let server = Nghttpd::start(&pair.b, 0, 8080).expect("nghttpd");
    let mut dump = Tcpdump::start(&pair.b, 8080).expect("tcpdump");
    let mut tap = podtap();
    let result = h2load(&pair.a, 0, &server.url("/small.txt"), 200, 2, 10).expect("h2load");
    assert_eq!(
        (result.done, result.succeeded, result.status_2xx),
        (200, 200, 200)
    );
    let client = EndExpect::new(pair.a.ip, None, pair.a.container()).process(result.pid, "h2load");
    let server_end = EndExpect::new(pair.b.ip, Some(8080), pair.b.container());
    let host = format!("{}:8080", pair.b.ip);
    let expected: Vec<_> = (0..200)
        .map(|_| {
            call(
                "GET",
                "/small.txt",
                Some(host.clone()),
                200,
                client.clone(),
                server_end.clone(),
            )
        })
        .collect();
    let records = finish_http2(&mut tap, &mut dump, &pair, &expected);
    let ports: BTreeSet<_> = records
        .iter()
        .map(|r| r["client"]["port"].to_string())
        .collect();
    assert_eq!(
        ports.len(),
        2,
        "h2load -c 2 opens two connections: {ports:?}"
    );
}

/// One curl per URL: curl 7.88 fails the second request of a prior-knowledge connection ("Error in the
/// HTTP2 framing layer", whatever the server), so each request has its own connection here; h2load
/// covers many streams per connection.
#[test]
fn b_curl_prior_knowledge_to_nghttpd() {
    let pair = PodPair::new(CgroupDriver::Cgroupfs, CgroupDriver::Systemd).expect("pods");
    let server = Nghttpd::start(&pair.b, 0, 8081).expect("nghttpd");
    let mut dump = Tcpdump::start(&pair.b, 8081).expect("tcpdump");
    let mut tap = podtap();
    let cases = [
        ("/small.txt", 200),
        ("/items/1", 200),
        ("/missing", 404),
        ("/big.bin", 200),
        ("/items/2", 200),
    ];
    let server_end = EndExpect::new(pair.b.ip, Some(8081), pair.b.container());
    let host = format!("{}:8081", pair.b.ip);
    let mut expected = Vec::new();
    for (path, status) in cases {
        let url = server.url(&format!("{path}?token=secret"));
        let (pid, answers) = curl_h2(&pair, "--http2-prior-knowledge", &[url]);
        assert_eq!(answers, vec![(status, "2".to_owned())]);
        let client = EndExpect::new(pair.a.ip, None, pair.a.container()).process(pid, "curl");
        expected.push(call(
            "GET",
            path,
            Some(host.clone()),
            status,
            client,
            server_end.clone(),
        ));
    }
    finish_http2(&mut tap, &mut dump, &pair, &expected);
}

/// curl asks for `Upgrade: h2c` on its first request; the Go server answers `101 Switching Protocols`
/// and the response to that request as HTTP/2 stream 1; curl's next requests are streams 3, 5 and 7
/// on the same connection. One call per request, all version "2", none for the 101.
#[test]
fn c_curl_h2c_upgrade_to_a_go_server() {
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Systemd).expect("pods");
    let server = GoH2c::start(&pair.b, 0, 8082).expect("go h2c server");
    let mut dump = Tcpdump::start(&pair.b, 8082).expect("tcpdump");
    let mut tap = podtap();
    // After the 10 MiB body (skipped, mostly by the kernel) the next streams must still be read.
    let cases = [
        ("/items/1", 200),
        ("/big", 200),
        ("/fail", 503),
        ("/missing", 404),
    ];
    let urls: Vec<String> = cases.iter().map(|(p, _)| server.url(p)).collect();
    let (pid, answers) = curl_h2(&pair, "--http2", &urls);
    let want: Vec<(u16, String)> = cases.iter().map(|&(_, s)| (s, "2".to_owned())).collect();
    assert_eq!(answers, want);
    let client = EndExpect::new(pair.a.ip, None, pair.a.container()).process(pid, "curl");
    let server_end = EndExpect::new(pair.b.ip, Some(8082), pair.b.container());
    let host = format!("{}:8082", pair.b.ip);
    let expected: Vec<_> = cases
        .iter()
        .map(|&(path, status)| {
            call(
                "GET",
                path,
                Some(host.clone()),
                status,
                client.clone(),
                server_end.clone(),
            )
        })
        .collect();
    finish_http2(&mut tap, &mut dump, &pair, &expected);
}

/// (method, grpc_status, messages sent by the client, messages sent by the server, status).
type GrpcExpect = (&'static str, u64, u64, u64, &'static str);

#[test]
fn d_grpc_go_client_to_grpcio_server_all_four_kinds() {
    let pair = PodPair::new(CgroupDriver::Cgroupfs, CgroupDriver::Cgroupfs).expect("pods");
    let _server = GrpcServer::start(&pair.b, 0, 50051).expect("grpcio server");
    let mut dump = Tcpdump::start(&pair.b, 50051).expect("tcpdump");
    let mut tap = podtap();
    let target = format!("{}:50051", pair.b.ip);
    let run = grpc_client(&pair.a, 0, &target).expect("grpc client");
    let did: Vec<(&str, u32, u64)> = run
        .calls
        .iter()
        .map(|(m, c, n)| (m.as_str(), *c, *n))
        .collect();
    assert_eq!(
        did,
        vec![
            ("/podtap.Test/Unary", 0, 1),
            ("/podtap.Test/Unary", 0, 1),
            ("/podtap.Test/Fail", 5, 0),
            ("/podtap.Test/ServerStream", 0, 5),
            ("/podtap.Test/ClientStream", 0, 1),
            ("/podtap.Test/Bidi", 0, 3),
        ],
        "what the client did"
    );
    let expected: [GrpcExpect; 6] = [
        ("/podtap.Test/Unary", 0, 1, 1, "ok"),
        ("/podtap.Test/Unary", 0, 1, 1, "ok"),
        ("/podtap.Test/Fail", 5, 1, 0, "error"),
        ("/podtap.Test/ServerStream", 0, 1, 5, "ok"),
        ("/podtap.Test/ClientStream", 0, 4, 1, "ok"),
        ("/podtap.Test/Bidi", 0, 3, 3, "ok"),
    ];
    let records = finish(&mut tap, &pair, expected.len());
    assert_eq!(records.len(), expected.len(), "records:\n{records:#?}");
    let client =
        EndExpect::new(pair.a.ip, None, pair.a.container()).process(run.pid, "grpc-client");
    let server = EndExpect::new(pair.b.ip, Some(50051), pair.b.container());
    // The client makes its calls one after the other: time order is call order.
    for (r, &(method, grpc_status, sent, received, status)) in records.iter().zip(&expected) {
        let ctx = || serde_json::to_string(r).unwrap_or_default();
        assert_eq!(r["protocol"], "grpc", "{}", ctx());
        assert_eq!(r["version"], "2", "{}", ctx());
        assert_eq!(r["request"]["method"], method, "{}", ctx());
        assert_eq!(r["request"]["authority"], target.as_str(), "{}", ctx());
        assert_eq!(r["request"]["messages"], sent, "{}", ctx());
        assert_eq!(r["response"]["grpc_status"], grpc_status, "{}", ctx());
        assert_eq!(r["response"]["status"], 200, "{}", ctx());
        assert_eq!(r["response"]["messages"], received, "{}", ctx());
        assert_eq!(r["status"], status, "{}", ctx());
        assert!(
            r["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
            "{}",
            ctx()
        );
        for (name, e) in [("client", &client), ("server", &server)] {
            let end = &r[name];
            assert_eq!(end["ip"], e.ip.to_string().as_str(), "{name} in {}", ctx());
            if let Some(p) = e.port {
                assert_eq!(end["port"], p, "{name} in {}", ctx());
            }
            assert_eq!(end["pod_uid"], e.pod_uid.as_str(), "{name} in {}", ctx());
            assert_eq!(
                end["container_id"],
                e.container_id.as_str(),
                "{name} in {}",
                ctx()
            );
        }
        assert_eq!(r["client"]["pid"], run.pid, "{}", ctx());
        assert_eq!(r["client"]["process"], "grpc-client", "{}", ctx());
    }
    let ports: BTreeSet<_> = records
        .iter()
        .map(|r| r["client"]["port"].to_string())
        .collect();
    assert_eq!(ports.len(), 1, "one connection for all calls: {ports:?}");
    assert_live_equals_replay(&records, &dump.stop_and_replay().expect("replay"));
}

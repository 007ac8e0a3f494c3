//! podtap against real HTTP/1.x traffic between pods: every call is reported exactly once, with both
//! ends attributed to their pod and container. Needs root and the podtap binary (see `podtap::binary`).

use std::time::Duration;

use podtap_tests::clients::{curl, curl_codes, python_pipelined, KeepAliveClient};
use podtap_tests::records::{assert_calls, call, EndExpect};
use podtap_tests::servers::BIG_FILE_BYTES;
use podtap_tests::{CgroupDriver, Nginx, PodPair, Podtap, PythonServer};

/// podtap runs at most this long; tests stop it with SIGINT well before.
const RUN_S: u32 = 120;
/// How long to wait for records to show up after the traffic.
const SETTLE: Duration = Duration::from_secs(10);

/// Waits for `n` records of this pair, stops podtap, checks it exited cleanly, returns the pair's records.
fn finish(tap: &mut Podtap, pair: &PodPair, n: usize) -> Vec<serde_json::Value> {
    tap.wait_records(&pair.ips(), n, SETTLE);
    let out = tap.stop().expect("stop");
    out.assert_clean_exit();
    out.records_for(&pair.ips())
}

fn podtap() -> Podtap {
    Podtap::start(RUN_S, &[]).expect("podtap run")
}

/// One curl per path from pod a to a server in pod b; asserts exactly those calls, both ends named.
fn curl_each_path(pair: &PodPair, port: u16, url: impl Fn(&str) -> String, cases: &[(&str, u16)]) {
    let mut tap = podtap();
    let server = EndExpect::new(pair.b.ip, Some(port), pair.b.container());
    let host = format!("{}:{port}", pair.b.ip);
    let mut expected = Vec::new();
    for &(path, status) in cases {
        let (pid, codes) = curl_codes(&pair.a, 0, &[url(path)]).expect("curl");
        assert_eq!(codes, vec![status]);
        let client = EndExpect::new(pair.a.ip, None, pair.a.container()).process(pid, "curl");
        expected.push(call(
            "GET",
            path,
            Some(host.clone()),
            status,
            client,
            server.clone(),
        ));
    }
    assert_calls(&finish(&mut tap, pair, expected.len()), &expected);
}

#[test]
fn a_curl_to_nginx_across_the_veth() {
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Cgroupfs).expect("pods");
    let nginx = Nginx::start(&pair.b, 0, 8080).expect("nginx");
    let cases = [
        ("/items/1", 200),
        ("/items/2", 200),
        ("/small.txt", 200),
        ("/empty", 204),
        ("/fail", 503),
    ];
    curl_each_path(&pair, 8080, |path| nginx.url(path), &cases);
}

#[test]
fn b_curl_to_python_http_server() {
    let pair = PodPair::new(CgroupDriver::Cgroupfs, CgroupDriver::Systemd).expect("pods");
    let py = PythonServer::http_server(&pair.b, 0, 8000).expect("http.server");
    let cases = [
        ("/items/1", 200),
        ("/items/2", 200),
        ("/small.txt", 200),
        ("/missing", 404),
        ("/items/3", 200),
    ];
    curl_each_path(&pair, 8000, |path| py.url(path), &cases);
}

#[test]
fn c_loopback_between_two_containers_of_one_pod() {
    let mut pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Systemd).expect("pods");
    let sidecar = pair.a.add_container().expect("second container");
    let nginx = Nginx::start(&pair.a, 0, 8081).expect("nginx");
    let mut tap = podtap();
    let server = EndExpect::new(pair.a.ip, Some(8081), &pair.a.containers[0]);
    let host = format!("{}:8081", pair.a.ip);
    let mut expected = Vec::new();
    for path in ["/items/1", "/items/2", "/small.txt"] {
        let (pid, codes) = curl_codes(&pair.a, sidecar, &[nginx.url(path)]).expect("curl");
        assert_eq!(codes, vec![200]);
        let client =
            EndExpect::new(pair.a.ip, None, &pair.a.containers[sidecar]).process(pid, "curl");
        expected.push(call(
            "GET",
            path,
            Some(host.clone()),
            200,
            client,
            server.clone(),
        ));
    }
    let records = finish(&mut tap, &pair, expected.len());
    assert_calls(&records, &expected);
    for r in &records {
        assert_eq!(
            r["client"]["pod_uid"], r["server"]["pod_uid"],
            "one pod: {r}"
        );
        assert_ne!(
            r["client"]["container_id"], r["server"]["container_id"],
            "two containers: {r}"
        );
    }
}

#[test]
fn d_hundred_requests_on_one_keepalive_connection() {
    let pair = PodPair::new(CgroupDriver::Cgroupfs, CgroupDriver::Cgroupfs).expect("pods");
    let nginx = Nginx::start(&pair.b, 0, 8080).expect("nginx");
    let mut tap = podtap();
    let paths: Vec<String> = (0..100).map(|i| format!("/items/{i}")).collect();
    let urls: Vec<String> = paths.iter().map(|p| nginx.url(p)).collect();
    let (pid, codes) = curl_codes(&pair.a, 0, &urls).expect("curl");
    assert_eq!(codes, vec![200; 100]);
    let server = EndExpect::new(pair.b.ip, Some(8080), pair.b.container());
    let client = EndExpect::new(pair.a.ip, None, pair.a.container()).process(pid, "curl");
    let host = format!("{}:8080", pair.b.ip);
    let expected: Vec<_> = paths
        .iter()
        .map(|p| {
            call(
                "GET",
                p,
                Some(host.clone()),
                200,
                client.clone(),
                server.clone(),
            )
        })
        .collect();
    let records = finish(&mut tap, &pair, expected.len());
    assert_calls(&records, &expected);
    // One connection: one client port for all of them.
    let ports: std::collections::BTreeSet<_> = records
        .iter()
        .map(|r| r["client"]["port"].to_string())
        .collect();
    assert_eq!(
        ports.len(),
        1,
        "curl should reuse one connection: {ports:?}"
    );
}

#[test]
fn e_pipelined_requests_in_one_write() {
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Cgroupfs).expect("pods");
    let _nginx = Nginx::start(&pair.b, 0, 8080).expect("nginx");
    let mut tap = podtap();
    let ip = pair.b.ip;
    let reqs = "GET /items/p1 HTTP/1.1\r\nHost: api:8080\r\n\r\n\
         GET /items/p2 HTTP/1.1\r\nHost: api:8080\r\n\r\n\
         GET /empty HTTP/1.1\r\nHost: api:8080\r\n\r\n\
         GET /items/p4 HTTP/1.1\r\nHost: api:8080\r\nConnection: close\r\n\r\n";
    let run = python_pipelined(&pair.a, 0, &ip.to_string(), 8080, reqs).expect("pipelined client");
    assert_eq!(
        run.stdout.matches("HTTP/1.1 200").count(),
        3,
        "{}",
        run.stdout
    );
    assert_eq!(
        run.stdout.matches("HTTP/1.1 204").count(),
        1,
        "{}",
        run.stdout
    );
    let server = EndExpect::new(ip, Some(8080), pair.b.container());
    let client = EndExpect::new(pair.a.ip, None, pair.a.container()).process(run.pid, "python3");
    let host = Some("api:8080".to_owned());
    let expected = vec![
        call(
            "GET",
            "/items/p1",
            host.clone(),
            200,
            client.clone(),
            server.clone(),
        ),
        call(
            "GET",
            "/items/p2",
            host.clone(),
            200,
            client.clone(),
            server.clone(),
        ),
        call(
            "GET",
            "/empty",
            host.clone(),
            204,
            client.clone(),
            server.clone(),
        ),
        call("GET", "/items/p4", host, 200, client, server),
    ];
    let records = finish(&mut tap, &pair, expected.len());
    assert_calls(&records, &expected);
    let order: Vec<_> = records
        .iter()
        .map(|r| r["request"]["path"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        order,
        ["/items/p1", "/items/p2", "/empty", "/items/p4"],
        "pipelined calls keep their order"
    );
}

#[test]
fn f_chunked_response_and_expect_100_continue() {
    let pair = PodPair::new(CgroupDriver::Cgroupfs, CgroupDriver::Systemd).expect("pods");
    let srv = PythonServer::custom(&pair.b, 0, 9000).expect("server.py");
    let mut tap = podtap();
    let server = EndExpect::new(pair.b.ip, Some(9000), pair.b.container());
    let host = Some(format!("{}:9000", pair.b.ip));
    // Two chunked responses on one connection, then a small GET: all three must be seen (the chunked body
    // must be delimited correctly, or the next response on the connection is lost).
    let (pid, codes) = curl_codes(
        &pair.a,
        0,
        &[srv.url("/chunked"), srv.url("/chunked"), srv.url("/after")],
    )
    .expect("curl");
    assert_eq!(codes, vec![200, 200, 200]);
    let client = EndExpect::new(pair.a.ip, None, pair.a.container()).process(pid, "curl");
    let mut expected = vec![
        call(
            "GET",
            "/chunked",
            host.clone(),
            200,
            client.clone(),
            server.clone(),
        ),
        call(
            "GET",
            "/chunked",
            host.clone(),
            200,
            client.clone(),
            server.clone(),
        ),
        call("GET", "/after", host.clone(), 200, client, server.clone()),
    ];
    // POST with `Expect: 100-continue`: the interim 100 is not the response; 201 is.
    let run = curl(
        &pair.a,
        0,
        &[
            "-sS",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            "@/etc/os-release",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &srv.url("/upload"),
        ],
    )
    .expect("curl post");
    assert_eq!(run.stdout, "201");
    let client = EndExpect::new(pair.a.ip, None, pair.a.container()).process(run.pid, "curl");
    expected.push(call("POST", "/upload", host, 201, client, server));
    assert_calls(&finish(&mut tap, &pair, expected.len()), &expected);
}

#[test]
fn g_ten_megabyte_response() {
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Systemd).expect("pods");
    let nginx = Nginx::start(&pair.b, 0, 8080).expect("nginx");
    let mut tap = podtap();
    // The big body, then a small call on the same connection: the body must be skipped exactly.
    let run = curl(
        &pair.a,
        0,
        &[
            "-sS",
            "-w",
            "%{size_download}\\n",
            "-o",
            "/dev/null",
            &nginx.url("/big.bin"),
            "-o",
            "/dev/null",
            &nginx.url("/items/after"),
        ],
    )
    .expect("curl");
    assert_eq!(
        run.stdout.lines().next(),
        Some(BIG_FILE_BYTES.to_string().as_str())
    );
    let server = EndExpect::new(pair.b.ip, Some(8080), pair.b.container());
    let client = EndExpect::new(pair.a.ip, None, pair.a.container()).process(run.pid, "curl");
    let host = Some(format!("{}:8080", pair.b.ip));
    let expected = vec![
        call(
            "GET",
            "/big.bin",
            host.clone(),
            200,
            client.clone(),
            server.clone(),
        ),
        call("GET", "/items/after", host, 200, client, server),
    ];
    assert_calls(&finish(&mut tap, &pair, expected.len()), &expected);
}

#[test]
fn h_connection_opened_before_podtap_started() {
    let pair = PodPair::new(CgroupDriver::Cgroupfs, CgroupDriver::Cgroupfs).expect("pods");
    let _nginx = Nginx::start(&pair.b, 0, 8080).expect("nginx");
    let mut client =
        KeepAliveClient::start(&pair.a, 0, &pair.b.ip.to_string(), 8080).expect("client");
    assert_eq!(client.get("/items/before").expect("get"), 200);
    let mut tap = podtap();
    for p in ["/items/x1", "/items/x2", "/items/x3"] {
        assert_eq!(client.get(p).expect("get"), 200);
    }
    let server = EndExpect::new(pair.b.ip, Some(8080), pair.b.container());
    let c = EndExpect::new(pair.a.ip, None, pair.a.container()).process(client.pid(), "python3");
    let host = Some(format!("{}:8080", pair.b.ip));
    let expected: Vec<_> = ["/items/x1", "/items/x2", "/items/x3"]
        .iter()
        .map(|p| call("GET", p, host.clone(), 200, c.clone(), server.clone()))
        .collect();
    assert_calls(&finish(&mut tap, &pair, expected.len()), &expected);
}

#[test]
fn small_max_payload_still_reports_calls() {
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Cgroupfs).expect("pods");
    let nginx = Nginx::start(&pair.b, 0, 8080).expect("nginx");
    let mut tap = Podtap::start(RUN_S, &["--max-payload", "512"]).expect("podtap run");
    let (pid, codes) = curl_codes(
        &pair.a,
        0,
        &[nginx.url("/small.txt"), nginx.url("/big.bin")],
    )
    .expect("curl");
    assert_eq!(codes, vec![200, 200]);
    let server = EndExpect::new(pair.b.ip, Some(8080), pair.b.container());
    let client = EndExpect::new(pair.a.ip, None, pair.a.container()).process(pid, "curl");
    let host = Some(format!("{}:8080", pair.b.ip));
    let expected = vec![
        call(
            "GET",
            "/small.txt",
            host.clone(),
            200,
            client.clone(),
            server.clone(),
        ),
        call("GET", "/big.bin", host, 200, client, server),
    ];
    assert_calls(&finish(&mut tap, &pair, expected.len()), &expected);
}

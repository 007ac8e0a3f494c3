//! podtap's Prometheus endpoint against real HTTP traffic between two pods: the semconv histograms
//! count every call on both sides, the service-graph edge is counted once, failures and bytes per edge
//! match what curl saw, the health counters move, and `promtool check metrics` accepts the text.
//! Needs root, the podtap binary and Debian's `prometheus` package (promtool).
//!
//! podtap sees the whole node, and other tests run beside this one: the client and server run under
//! names of their own (symlinks to curl and python3, whose process name is the link's), and the
//! assertions select series by those names.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podtap_tests::util::{python, require_tool, TempDir};
use podtap_tests::{CgroupDriver, PodPair, Podtap};

const RUN_S: u32 = 120;
const BIG_BYTES: usize = 1_000_000;

/// A tiny HTTP/1.1 server: `/ok` 200, `/fail` 500, `/big` a 1 MB body.
const SERVER_PY: &str = r#"
import sys, http.server
BIG = b"x" * int(sys.argv[3])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/fail":
            code, body = 500, b"boom\n"
        elif self.path == "/big":
            code, body = 200, BIG
        else:
            code, body = 200, b"ok\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"#;

/// One sample of the exposition: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (head, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match head.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (head, ""),
        };
        let mut map = BTreeMap::new();
        let mut rest = labels;
        while let Some((key, after)) = rest.split_once("=\"") {
            // Values here hold no escaped quotes (names, numbers).
            let (value, after) = after.split_once('"').expect("closing quote");
            map.insert(key.trim_start_matches(',').to_owned(), value.to_owned());
            rest = after;
        }
        out.push(Sample {
            name: name.to_owned(),
            labels: map,
            value: value.parse().expect("number"),
        });
    }
    out
}

/// Sum of the samples named `name` whose labels include all of `want`.
fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    select(samples, name, want).map(|s| s.value).sum()
}

fn select<'a>(
    samples: &'a [Sample],
    name: &'a str,
    want: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a Sample> + 'a {
    samples.iter().filter(move |s| {
        s.name == name
            && want
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

fn promtool_check(text: &str) {
    require_tool("promtool").expect("promtool (apt-get install prometheus; cargo xtask setup)");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn http_between_two_pods_in_histograms_service_graph_and_health() {
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Cgroupfs).expect("pods");
    let dir = TempDir::new("podtap-metrics").expect("tempdir");
    let tag = format!("{}", std::process::id() % 10_000_000);
    let (client_name, server_name) = (format!("cm{tag}"), format!("sm{tag}"));
    let curl_link = dir.path().join(&client_name);
    let py_link = dir.path().join(&server_name);
    std::os::unix::fs::symlink(require_tool("curl").expect("curl"), &curl_link).expect("link");
    std::os::unix::fs::symlink(python().expect("python3"), &py_link).expect("link");
    let script = dir.path().join("server.py");
    std::fs::write(&script, SERVER_PY).expect("script");

    let mut tap = Podtap::start(RUN_S, &[]).expect("podtap run");
    let url = tap.metrics_url().expect("metrics url");
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/metrics"),
        "{url}"
    );

    let port = 8080;
    let _server = pair
        .b
        .spawn(
            0,
            &py_link.to_string_lossy(),
            &[
                &script.to_string_lossy(),
                &pair.b.ip.to_string(),
                &port.to_string(),
                &BIG_BYTES.to_string(),
            ],
        )
        .expect("server");
    pair.b
        .wait_listening(pair.b.ip, port, Duration::from_secs(10))
        .expect("server listening");

    // Health counters are there before any call, and move.
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let samples = parse(&tap.scrape().expect("scrape"));
        if sum(&samples, "podtap_events_total", &[("source", "packet")]) > 0.0 {
            break samples;
        }
        assert!(Instant::now() < deadline, "no podtap_events_total");
        std::thread::sleep(Duration::from_millis(300));
    };

    // One connection (curl reuses it for every URL): 5 ok, 1 big, 2 failures.
    let paths = ["/ok", "/ok", "/fail", "/big", "/ok", "/ok", "/fail", "/ok"];
    let base = format!("http://{}:{port}", pair.b.ip);
    let mut args: Vec<String> = vec![
        "-sS".into(),
        "-w".into(),
        "%{http_code} %{size_request} %{size_header} %{size_download}\\n".into(),
    ];
    for p in paths {
        args.extend(["-o".into(), "/dev/null".into(), format!("{base}{p}")]);
    }
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = pair
        .a
        .command(0, &curl_link.to_string_lossy(), &args_ref)
        .expect("curl command");
    let out = cmd.output().expect("curl run");
    assert!(out.status.success(), "curl: {out:?}");
    let (mut req_bytes, mut resp_bytes, mut codes) = (0u64, 0u64, Vec::new());
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<u64> = line
            .split_whitespace()
            .map(|x| x.parse().expect("number"))
            .collect();
        codes.push(f[0]);
        req_bytes += f[1];
        resp_bytes += f[2] + f[3];
    }
    assert_eq!(codes, vec![200, 200, 500, 200, 200, 200, 500, 200]);
    let (n_ok, n_fail) = (6.0, 2.0);
    let total = n_ok + n_fail;

    tap.wait_records(&pair.ips(), paths.len(), Duration::from_secs(15));
    // The calls are recorded before their records are written; give the edge a moment anyway.
    std::thread::sleep(Duration::from_millis(500));
    let text = tap.scrape().expect("scrape");
    let s = parse(&text);
    let c = client_name.as_str();
    let sv = server_name.as_str();

    // Semconv histograms: every call once on each side.
    for (family, who) in [
        ("http_client_request_duration_seconds_count", c),
        ("http_server_request_duration_seconds_count", sv),
    ] {
        let ok = sum(
            &s,
            family,
            &[
                ("service_name", who),
                ("http_request_method", "GET"),
                ("http_response_status_code", "200"),
                ("network_protocol_version", "1.1"),
            ],
        );
        let failed = sum(
            &s,
            family,
            &[
                ("service_name", who),
                ("http_response_status_code", "500"),
                ("error_type", "500"),
            ],
        );
        assert_eq!((ok, failed), (n_ok, n_fail), "{family} for {who}:\n{text}");
        let inf = sum(
            &s,
            &family.replace("_count", "_bucket"),
            &[("service_name", who), ("le", "+Inf")],
        );
        assert_eq!(inf, total, "{family} +Inf bucket");
    }

    // Service graph: the edge once, both ends local (no connection_type).
    let edge = [("client", c), ("server", sv)];
    let edges: Vec<_> = select(&s, "traces_service_graph_request_total", &edge).collect();
    assert_eq!(edges.len(), 1, "one series for the edge: {edges:?}");
    assert_eq!(edges[0].value, total, "edge counted once per call");
    assert!(
        !edges[0].labels.contains_key("connection_type"),
        "{edges:?}"
    );
    assert_eq!(
        sum(&s, "traces_service_graph_request_failed_total", &edge),
        n_fail
    );
    for h in [
        "traces_service_graph_request_server_seconds_count",
        "traces_service_graph_request_client_seconds_count",
    ] {
        assert_eq!(sum(&s, h, &edge), total, "{h}");
    }

    // Bytes per edge against what curl counted (request lines + headers; response headers + bodies).
    let req = sum(&s, "podtap_service_graph_request_bytes_total", &edge);
    let resp = sum(&s, "podtap_service_graph_response_bytes_total", &edge);
    eprintln!("bytes: request {req} (curl {req_bytes}), response {resp} (curl {resp_bytes})");
    assert_eq!(req, req_bytes as f64, "request bytes");
    let resp_expected = resp_bytes as f64;
    assert!(
        (resp - resp_expected).abs() <= resp_expected * 0.01,
        "response bytes {resp} vs curl {resp_expected}"
    );
    assert!(resp >= BIG_BYTES as f64, "the skipped 1 MB body counts");

    // Health: present and moving.
    for (name, labels) in [
        ("podtap_connections_tracked", &[][..]),
        ("podtap_drops_total", &[("reason", "ring_buffer_full")][..]),
        ("podtap_calls_total", &[][..]),
        ("podtap_parse_errors_total", &[("protocol", "http")][..]),
    ] {
        assert!(
            select(&s, name, labels).next().is_some(),
            "{name} missing:\n{text}"
        );
    }
    assert!(sum(&s, "podtap_process_resident_memory_bytes", &[]) > 1e6);
    assert!(select(&s, "podtap_process_cpu_seconds_total", &[])
        .next()
        .is_some());
    // Health is taken about once a second: wait for a later tick.
    let packets = |v: &[Sample]| sum(v, "podtap_events_total", &[("source", "packet")]);
    let moved = Instant::now() + Duration::from_secs(15);
    while packets(&parse(&tap.scrape().expect("scrape"))) <= packets(&first) {
        assert!(Instant::now() < moved, "podtap_events_total does not move");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        sum(
            &parse(&tap.scrape().expect("scrape")),
            "podtap_calls_total",
            &[]
        ) >= total
    );

    promtool_check(&text);

    let out = tap.stop().expect("stop");
    out.assert_clean_exit();
}

#[test]
fn metrics_listen_off_and_taken_port() {
    // `off`: no endpoint, no line.
    let mut tap = Podtap::start(RUN_S, &["--metrics-listen", "off"]).expect("podtap run");
    assert_eq!(tap.metrics_url(), None);
    tap.stop().expect("stop").assert_clean_exit();

    // A port in use is a clear start-up error.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let err = Podtap::start(RUN_S, &["--metrics-listen", &addr]).expect_err("must fail");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("cannot listen on") && msg.contains(&addr),
        "{msg}"
    );
}

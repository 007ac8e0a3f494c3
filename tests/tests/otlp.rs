//! podtap's OTLP export against a real OTLP receiver (`otlp_receiver`: the tonic OTLP services and an
//! OTLP/HTTP endpoint): real eBPF, real servers and clients in netns pods, the real podtap binary
//! with `--otlp-endpoint`. Asserts the spans as the receiver decoded them: resources, kinds, names,
//! attributes, status, ids, timestamps; and that a receiver down for a while under load costs
//! bounded memory and counted drops, and export resumes when it returns. Needs root.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use podtap_tests::clients::{curl_codes, run_client, wrk};
use podtap_tests::dns::{dig, Dnsmasq, A_ADDR, A_NAME};
use podtap_tests::h2::GrpcServer;
use podtap_tests::otlp_receiver::{attributes, OtlpReceiver, ReceivedSpan};
use podtap_tests::util::{python_with, wait_until, TempDir};
use podtap_tests::{CgroupDriver, Nginx, Pod, PodPair, Podtap};
use serde_json::json;

const RUN_S: u32 = 180;
/// Spans leave podtap within a second or two (batches wait at most 1 s).
const SETTLE: Duration = Duration::from_secs(20);
/// Clock slack around the test window (the span times come from kernel timestamps converted to
/// wall-clock time).
const SLACK_NS: u64 = 2_000_000_000;

const SPAN_SERVER: i32 = 2;
const SPAN_CLIENT: i32 = 3;
const STATUS_UNSET: i32 = 0;
const STATUS_ERROR: i32 = 2;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

/// Waits until the receiver has a cumulative histogram `name` in seconds, pushed by podtap as its
/// own resource, whose points with attribute `key` = `value` count at least `min` calls.
fn wait_histogram(
    receiver: &OtlpReceiver,
    name: &str,
    key: &str,
    value: &serde_json::Value,
    min: u64,
) {
    let counted = wait_until(SETTLE, || {
        let (resource, metric) = receiver
            .metrics()
            .into_iter()
            .rev()
            .find(|(_, m)| m.name == name)?;
        assert_eq!(
            resource.get("service.name"),
            Some(&json!("podtap")),
            "{resource:?}"
        );
        assert_eq!(metric.unit, "s", "{metric:?}");
        let Some(Data::Histogram(histogram)) = &metric.data else {
            panic!("{name} is not a histogram: {metric:?}");
        };
        assert_eq!(histogram.aggregation_temporality, 2, "cumulative");
        let count: u64 = histogram
            .data_points
            .iter()
            .filter(|p| attributes(&p.attributes).get(key) == Some(value))
            .map(|p| {
                assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1, "{p:?}");
                assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count, "{p:?}");
                p.count
            })
            .sum();
        (count >= min).then_some(count)
    });
    assert!(
        counted.is_some(),
        "no {name} with {key}={value} counting {min} calls; metrics received: {:?}",
        receiver
            .metrics()
            .iter()
            .map(|(_, m)| m.name.clone())
            .collect::<HashSet<_>>()
    );
}

fn podtap(endpoint: &str, protocol: &str, extra: &[&str]) -> Podtap {
    let mut args = vec![
        "--otlp-endpoint",
        endpoint,
        "--otlp-protocol",
        protocol,
        "--otlp-metrics-interval",
        "1",
    ];
    args.extend_from_slice(extra);
    Podtap::start(RUN_S, &args).expect("podtap run")
}

/// Spans whose resource is one of these pods.
fn pod_spans(receiver: &OtlpReceiver, pods: &[&Pod]) -> Vec<ReceivedSpan> {
    let uids: Vec<&str> = pods.iter().map(|p| p.uid()).collect();
    receiver
        .spans()
        .into_iter()
        .filter(|s| {
            s.resource_str("k8s.pod.uid")
                .is_some_and(|u| uids.contains(&u))
        })
        .collect()
}

/// Waits for `n` spans of these pods (returns what came).
fn wait_spans(receiver: &OtlpReceiver, pods: &[&Pod], n: usize) -> Vec<ReceivedSpan> {
    wait_until(SETTLE, || {
        let spans = pod_spans(receiver, pods);
        (spans.len() >= n).then_some(spans)
    })
    .unwrap_or_else(|| pod_spans(receiver, pods))
}

/// The `podtap: otlp ...` line's counters.
fn otlp_counter(stderr: &str, key: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("podtap: otlp "))
        .unwrap_or_else(|| panic!("no `podtap: otlp` line on stderr:\n{stderr}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

/// What every span must satisfy: ids, times inside the window, the pod's resource.
fn assert_common(spans: &[ReceivedSpan], window: (u64, u64)) {
    let mut span_ids = HashSet::new();
    for s in spans {
        let span = &s.span;
        assert_eq!(span.trace_id.len(), 16, "{s:?}");
        assert!(span.trace_id.iter().any(|b| *b != 0), "zero trace id {s:?}");
        assert_eq!(span.span_id.len(), 8, "{s:?}");
        assert!(span.span_id.iter().any(|b| *b != 0), "zero span id {s:?}");
        assert!(
            span_ids.insert(span.span_id.clone()),
            "span id twice: {s:?}"
        );
        assert!(
            span.start_time_unix_nano + SLACK_NS >= window.0
                && span.end_time_unix_nano <= window.1 + SLACK_NS,
            "span outside the test window {window:?}: {s:?}"
        );
        assert!(
            span.end_time_unix_nano >= span.start_time_unix_nano,
            "{s:?}"
        );
        assert!(s.resource_str("service.name").is_some(), "{s:?}");
        assert!(s.resource.contains_key("process.pid"), "{s:?}");
    }
}

/// The resource of a local end: the pod's uid and container id from its cgroup, the process.
fn assert_resource(s: &ReceivedSpan, pod: &Pod, process: &str, pid: Option<u32>) {
    assert_eq!(s.resource_str("k8s.pod.uid"), Some(pod.uid()), "{s:?}");
    assert_eq!(
        s.resource_str("container.id"),
        Some(pod.container().id.as_str()),
        "{s:?}"
    );
    assert_eq!(
        s.resource_str("process.executable.name"),
        Some(process),
        "{s:?}"
    );
    if let Some(pid) = pid {
        assert_eq!(s.resource.get("process.pid"), Some(&json!(pid)), "{s:?}");
    }
    // Until the Kubernetes metadata is there: the OpenTelemetry name of an unnamed service.
    let service = s.resource_str("service.name").unwrap_or_default();
    assert!(
        service == format!("unknown_service:{process}") || s.resource.contains_key("k8s.pod.name"),
        "{s:?}"
    );
}

/// Client span of `path` and the server span that is its child.
fn http_pair<'a>(spans: &'a [ReceivedSpan], path: &str) -> (&'a ReceivedSpan, &'a ReceivedSpan) {
    let find = |kind| {
        spans
            .iter()
            .find(|s| s.span.kind == kind && s.attr_str("url.path") == Some(path))
            .unwrap_or_else(|| panic!("no kind {kind} span of {path} in {spans:#?}"))
    };
    (find(SPAN_CLIENT), find(SPAN_SERVER))
}

#[test]
fn a_http_between_two_pods_over_otlp_grpc() {
    let receiver = OtlpReceiver::start().expect("receiver");
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Cgroupfs).expect("pods");
    let nginx = Nginx::start(&pair.b, 0, 8080).expect("nginx");
    let mut tap = podtap(&receiver.grpc_url(), "grpc", &[]);
    let t0 = now_ns();
    let (pid, codes) =
        curl_codes(&pair.a, 0, &[nginx.url("/items/1"), nginx.url("/error")]).expect("curl");
    assert_eq!(codes, vec![200, 500]);
    let spans = wait_spans(&receiver, &[&pair.a, &pair.b], 4);
    let t1 = now_ns();
    // The same calls in the metrics podtap pushes over OTLP/gRPC.
    for name in [
        "http.server.request.duration",
        "http.client.request.duration",
    ] {
        wait_histogram(&receiver, name, "http.response.status_code", &json!(500), 1);
    }
    let podtap_pid = tap.pid().expect("pid");
    let out = tap.stop().expect("stop");
    out.assert_clean_exit();
    assert_eq!(spans.len(), 4, "{spans:#?}");
    assert_common(&spans, (t0, t1));
    let (grpc, http) = receiver.request_counts();
    assert!(grpc > 0 && http == 0, "requests: grpc {grpc}, http {http}");
    assert!(
        otlp_counter(&out.stderr, "spans_exported") >= 4,
        "{}",
        out.stderr
    );
    // podtap's own export connection is no call of anyone's.
    assert!(
        !receiver
            .spans()
            .iter()
            .any(|s| s.resource.get("process.pid") == Some(&json!(podtap_pid))),
        "podtap exported its own export traffic"
    );

    let mut traces = HashSet::new();
    for (path, status) in [("/items/1", 200), ("/error", 500)] {
        let (client, server) = http_pair(&spans, path);
        assert_resource(client, &pair.a, "curl", Some(pid));
        assert_resource(server, &pair.b, "nginx", None);
        // One trace per call, the server span a child of the client span.
        assert_eq!(client.span.trace_id, server.span.trace_id);
        assert!(traces.insert(client.span.trace_id.clone()), "trace reused");
        assert!(client.span.parent_span_id.is_empty());
        assert_eq!(server.span.parent_span_id, client.span.span_id);
        for s in [client, server] {
            assert_eq!(s.span.name, "GET", "{s:?}");
            assert_eq!(s.attr_str("http.request.method"), Some("GET"));
            assert_eq!(s.attr_str("url.scheme"), Some("http"));
            assert_eq!(s.attr_str("network.protocol.version"), Some("1.1"));
            assert_eq!(s.attr("http.response.status_code"), Some(&json!(status)));
            assert_eq!(s.attr("server.port"), Some(&json!(8080)));
            assert_eq!(s.attr_str("network.transport"), Some("tcp"));
            let expected = if status == 500 {
                STATUS_ERROR
            } else {
                STATUS_UNSET
            };
            assert_eq!(s.status_code(), expected, "{s:?}");
        }
        let b_ip = pair.b.ip.to_string();
        let a_ip = pair.a.ip.to_string();
        assert_eq!(client.attr_str("server.address"), Some(b_ip.as_str()));
        assert_eq!(client.attr_str("network.peer.address"), Some(b_ip.as_str()));
        assert_eq!(server.attr_str("client.address"), Some(a_ip.as_str()));
        assert_eq!(server.attr_str("network.peer.address"), Some(a_ip.as_str()));
        if status == 500 {
            assert_eq!(client.attr_str("error.type"), Some("500"));
        }
    }
}

/// A grpcio client calling the test server's methods; prints `method code` per call.
const GRPC_CLIENT_PY: &str = r#"
import sys, grpc
channel = grpc.insecure_channel(sys.argv[1])
for method in sys.argv[2:]:
    call = channel.unary_unary("/podtap.Test/" + method)
    try:
        call(b"ping", timeout=5)
        print(method, 0)
    except grpc.RpcError as e:
        print(method, e.code().value[0])
"#;

#[test]
fn b_grpc_ok_and_unavailable_over_otlp_http() {
    let receiver = OtlpReceiver::start().expect("receiver");
    let pair = PodPair::new(CgroupDriver::Cgroupfs, CgroupDriver::Systemd).expect("pods");
    let _server = GrpcServer::start(&pair.b, 0, 50051).expect("grpcio server");
    let python = python_with("grpc").expect("grpcio");
    let dir = TempDir::new("podtap-otlp-grpc").expect("tempdir");
    let script = dir.path().join("client.py");
    std::fs::write(&script, GRPC_CLIENT_PY).expect("script");
    let mut tap = podtap(&receiver.http_url(), "http", &[]);
    let t0 = now_ns();
    let target = format!("{}:50051", pair.b.ip);
    let run = run_client(
        &mut pair
            .a
            .command(
                0,
                &python.to_string_lossy(),
                &[&script.to_string_lossy(), &target, "Unary", "Unavailable"],
            )
            .expect("command"),
        "grpcio client",
    )
    .expect("grpc client");
    assert_eq!(run.stdout.trim(), "Unary 0\nUnavailable 14");
    let spans = wait_spans(&receiver, &[&pair.a, &pair.b], 4);
    let t1 = now_ns();
    // And in the metrics pushed over OTLP/HTTP.
    for name in ["rpc.server.call.duration", "rpc.client.call.duration"] {
        wait_histogram(
            &receiver,
            name,
            "rpc.method",
            &json!("podtap.Test/Unavailable"),
            1,
        );
    }
    let out = tap.stop().expect("stop");
    out.assert_clean_exit();
    let rpc: Vec<ReceivedSpan> = spans
        .into_iter()
        .filter(|s| s.attr_str("rpc.system.name") == Some("grpc"))
        .collect();
    assert_eq!(rpc.len(), 4, "{rpc:#?}");
    assert_common(&rpc, (t0, t1));
    let (grpc, http) = receiver.request_counts();
    assert!(http > 0 && grpc == 0, "requests: grpc {grpc}, http {http}");
    for (method, code, status) in [
        ("podtap.Test/Unary", "OK", STATUS_UNSET),
        ("podtap.Test/Unavailable", "UNAVAILABLE", STATUS_ERROR),
    ] {
        let find = |kind| {
            rpc.iter()
                .find(|s| s.span.kind == kind && s.attr_str("rpc.method") == Some(method))
                .unwrap_or_else(|| panic!("no kind {kind} span of {method}: {rpc:#?}"))
        };
        let (client, server) = (find(SPAN_CLIENT), find(SPAN_SERVER));
        assert_eq!(client.resource_str("k8s.pod.uid"), Some(pair.a.uid()));
        assert_eq!(server.resource_str("k8s.pod.uid"), Some(pair.b.uid()));
        assert_eq!(server.span.parent_span_id, client.span.span_id);
        assert_eq!(server.span.trace_id, client.span.trace_id);
        for s in [client, server] {
            assert_eq!(s.span.name, method);
            assert_eq!(s.attr_str("rpc.status_code"), Some(code), "{s:?}");
            // UNAVAILABLE is an error on both kinds.
            assert_eq!(s.status_code(), status, "{s:?}");
        }
        assert_eq!(client.attr("server.port"), Some(&json!(50051)));
    }
}

#[test]
fn c_dns_client_spans() {
    let receiver = OtlpReceiver::start().expect("receiver");
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Systemd).expect("pods");
    let _dns = Dnsmasq::start(&pair.b, 0).expect("dnsmasq");
    let mut tap = podtap(&receiver.grpc_url(), "grpc", &[]);
    let t0 = now_ns();
    let at = format!("@{}", pair.b.ip);
    let queries = [(A_NAME, "A"), ("missing.nx.test", "A")];
    let run = dig(
        &pair.a,
        0,
        &[
            "+tries=1",
            "+timeout=3",
            &at,
            A_NAME,
            "A",
            "missing.nx.test",
            "A",
        ],
        &queries,
    )
    .expect("dig");
    assert_eq!(run.queries.len(), 2);
    let spans = wait_spans(&receiver, &[&pair.a], 2);
    let t1 = now_ns();
    let out = tap.stop().expect("stop");
    out.assert_clean_exit();
    let dns: Vec<ReceivedSpan> = spans
        .into_iter()
        .filter(|s| s.attributes.contains_key("dns.question.name"))
        .collect();
    assert_eq!(dns.len(), 2, "{dns:#?}");
    assert_common(&dns, (t0, t1));
    // The resolver's side is no span of its own.
    assert!(pod_spans(&receiver, &[&pair.b]).is_empty());
    let ok = dns
        .iter()
        .find(|s| s.attr_str("dns.question.name") == Some(A_NAME))
        .expect("A query");
    assert_eq!(ok.span.name, format!("A {A_NAME}"));
    assert_eq!(ok.span.kind, SPAN_CLIENT);
    assert_eq!(ok.attr("dns.answers"), Some(&json!([A_ADDR])));
    assert_eq!(ok.status_code(), STATUS_UNSET);
    // dig sends from a worker thread named `isc-net-*`: the executable name is the thread's comm,
    // the pid is dig's.
    let process = ok
        .resource_str("process.executable.name")
        .unwrap_or_default();
    assert!(process == "dig" || process.starts_with("isc-"), "{ok:?}");
    assert_resource(ok, &pair.a, process, Some(run.pid));
    assert_eq!(ok.attr_str("network.transport"), Some("udp"));
    let nx = dns
        .iter()
        .find(|s| s.attr_str("dns.question.name") == Some("missing.nx.test"))
        .expect("NX query");
    assert_eq!(nx.status_code(), STATUS_ERROR);
    assert_eq!(nx.attr_str("error.type"), Some("NXDOMAIN"));
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn d_receiver_down_under_load_then_back() {
    let mut receiver = OtlpReceiver::start().expect("receiver");
    let pair = PodPair::new(CgroupDriver::Cgroupfs, CgroupDriver::Cgroupfs).expect("pods");
    let nginx = Nginx::start(&pair.b, 0, 8080).expect("nginx");
    let mut tap = podtap(
        &receiver.grpc_url(),
        "grpc",
        &["--otlp-queue-spans", "2000"],
    );
    let pid = tap.pid().expect("pid");
    let (_, codes) = curl_codes(&pair.a, 0, &[nginx.url("/items/before")]).expect("curl");
    assert_eq!(codes, vec![200]);
    let before = wait_spans(&receiver, &[&pair.a, &pair.b], 2);
    assert_eq!(before.len(), 2, "{before:#?}");
    let rss_before = rss_kib(pid);

    // Down: a load far beyond the queue, RSS sampled all along.
    receiver.stop();
    let sampler = std::thread::spawn(move || {
        let mut max = 0;
        for _ in 0..60 {
            max = max.max(rss_kib(pid));
            std::thread::sleep(Duration::from_millis(200));
        }
        max
    });
    let load = wrk(&pair.a, 0, &nginx.url("/items/load"), 2, 6).expect("wrk");
    let rss_max = sampler.join().expect("sampler");
    assert!(
        load.requests > 2000,
        "too little load to fill the queue: {load:?}"
    );

    // Back: calls made now arrive.
    receiver.restart().expect("restart");
    let (_, codes) = curl_codes(&pair.a, 0, &[nginx.url("/items/after")]).expect("curl");
    assert_eq!(codes, vec![200]);
    let after = wait_until(Duration::from_secs(60), || {
        let spans: Vec<_> = pod_spans(&receiver, &[&pair.a, &pair.b])
            .into_iter()
            .filter(|s| s.attr_str("url.path") == Some("/items/after"))
            .collect();
        (spans.len() >= 2).then_some(spans)
    });
    let out = tap.stop().expect("stop");
    out.assert_clean_exit();
    let after = after.unwrap_or_else(|| {
        panic!(
            "no spans of calls after the receiver returned; stderr:\n{}",
            out.stderr
        )
    });
    assert_eq!(after.len(), 2);
    let dropped = otlp_counter(&out.stderr, "spans_dropped");
    let failures = otlp_counter(&out.stderr, "export_failures");
    let exported = otlp_counter(&out.stderr, "spans_exported");
    assert!(dropped > 0, "no drop counted:\n{}", out.stderr);
    assert!(failures > 0, "no failed request counted:\n{}", out.stderr);
    let received = pod_spans(&receiver, &[&pair.a, &pair.b]).len() as u64;
    assert!(
        exported >= received,
        "exported {exported} < received {received}"
    );
    // Two spans a request: everything podtap saw is either exported or counted as dropped.
    let seen = 2 * (load.requests + 2);
    assert!(
        exported + dropped + 16 >= seen,
        "exported {exported} + dropped {dropped} < {seen} spans seen"
    );
    let growth = rss_max.saturating_sub(rss_before);
    eprintln!(
        "otlp outage: {} requests, rss {rss_before} KiB -> max {rss_max} KiB, exported {exported}, dropped {dropped}, failures {failures}",
        load.requests
    );
    assert!(
        growth < 64 * 1024,
        "RSS grew by {growth} KiB while the receiver was down"
    );
}

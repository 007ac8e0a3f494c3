//! Capture filters (`--namespace`, `--exclude-namespace`, `--pod`, `--selector`) against real pods:
//! nginx and curl inside network-namespace pods with kubelet-named cgroups, their Pod objects served by
//! the Kubernetes API test server, the real podtap binary. A pod left out must produce no record at all
//! while the pods kept in do, and the summary's `filtered` counter shows the kernel dropped records.
//! Needs root and the podtap binary (see `podtap::binary`).
//!
//! Each pod calls its own server at its own address (the traffic stays inside that pod's namespace and
//! cgroup), so a record involving a pod's address can only come from that pod's sockets.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podtap_tests::clients::curl_codes;
use podtap_tests::kube_api::{KubeApi, PodBuilder};
use podtap_tests::podtap::{binary, PodtapOutput};
use podtap_tests::util::{next_id, wait_until, TempDir};
use podtap_tests::{CgroupDriver, Nginx, Pod, PodPair, Podtap};

/// podtap runs at most this long; tests stop it with SIGINT well before.
const RUN_S: u32 = 180;
/// How long a pod may take to be listed (API watch + reconciler) or unlisted.
const LISTED_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a captured call may take to show up as a record.
const RECORD_WAIT: Duration = Duration::from_secs(3);
const PORT: u16 = 8080;

/// A unique namespace-safe suffix per test.
fn tag() -> String {
    format!("{}-{}", std::process::id(), next_id())
}

fn node(tag: &str) -> String {
    format!("node-{tag}")
}

/// Serves `pod` to podtap: its uid, node, IP, one container with the cgroup's container id.
fn register(api: &KubeApi, pod: &Pod, node: &str, ns: &str, name: &str, labels: &[(&str, &str)]) {
    let mut builder = PodBuilder::new(ns, name)
        .uid(pod.uid())
        .node(node)
        .ip(pod.ip)
        .container("main", &pod.container().id);
    for (k, v) in labels {
        builder = builder.label(k, v);
    }
    api.apply(&builder.build()).expect("apply pod");
}

fn start_podtap(api: &KubeApi, node: &str, filter: &[&str]) -> Podtap {
    let kubeconfig = api.kubeconfig().to_string_lossy().into_owned();
    let mut args = vec!["--kubeconfig", &kubeconfig, "--node-name", node];
    args.extend_from_slice(filter);
    Podtap::start(RUN_S, &args).expect("podtap run")
}

/// The request paths of the records involving `ip`.
fn paths(records: &[serde_json::Value], ip: Ipv4Addr) -> Vec<String> {
    records
        .iter()
        .filter(|r| {
            ["client", "server"]
                .iter()
                .any(|end| r[end]["ip"].as_str() == Some(ip.to_string().as_str()))
        })
        .filter_map(|r| r["request"]["path"].as_str().map(str::to_owned))
        .collect()
}

/// One curl in `pod` to its own nginx at `path`; whether podtap reported that call within `wait`.
fn call_captured(tap: &Podtap, pod: &Pod, nginx: &Nginx, path: &str, wait: Duration) -> bool {
    let (_, codes) = curl_codes(pod, 0, &[nginx.url(path)]).expect("curl");
    assert_eq!(codes.len(), 1, "one response for {path}");
    wait_until(wait, || {
        paths(&tap.all_records(), pod.ip)
            .iter()
            .any(|p| p == path)
            .then_some(())
    })
    .is_some()
}

/// Calls until one is captured: the pod has been listed (include mode) or is not excluded.
fn wait_captured(tap: &Podtap, pod: &Pod, nginx: &Nginx, what: &str) {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < LISTED_TIMEOUT {
        n += 1;
        if call_captured(tap, pod, nginx, &format!("/items/{what}-{n}"), RECORD_WAIT) {
            return;
        }
    }
    panic!(
        "{what}: no call of pod {} captured in {LISTED_TIMEOUT:?}",
        pod.uid()
    );
}

/// Calls until one is not captured: the pod has been excluded.
fn wait_not_captured(tap: &Podtap, pod: &Pod, nginx: &Nginx, what: &str) {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < LISTED_TIMEOUT {
        n += 1;
        if !call_captured(tap, pod, nginx, &format!("/items/{what}-{n}"), RECORD_WAIT) {
            return;
        }
    }
    panic!(
        "{what}: calls of pod {} still captured after {LISTED_TIMEOUT:?}",
        pod.uid()
    );
}

/// After `kept` is captured and `left_out` is filtered: `left_out` makes calls, then `kept` one more;
/// once that last one is reported (so the earlier ones would have been too), podtap stops. Returns its
/// output after checking that `left_out` has no record at all, `kept` has its calls, and the kernel
/// counted filtered records.
fn assert_split(
    mut tap: Podtap,
    api: &KubeApi,
    kept: (&Pod, &Nginx),
    left_out: (&Pod, &Nginx),
) -> PodtapOutput {
    for n in 0..3 {
        let (_, codes) =
            curl_codes(left_out.0, 0, &[left_out.1.url(&format!("/items/out-{n}"))]).expect("curl");
        assert_eq!(codes, vec![200]);
    }
    assert!(
        call_captured(&tap, kept.0, kept.1, "/items/last", RECORD_WAIT * 3),
        "the last call of the pod kept in was not captured"
    );
    let out = tap.stop().expect("stop");
    out.assert_clean_exit();
    let kept_paths = paths(&out.records, kept.0.ip);
    assert!(
        kept_paths.iter().any(|p| p == "/items/last"),
        "kept pod's paths: {kept_paths:?}"
    );
    let out_paths = paths(&out.records, left_out.0.ip);
    assert!(
        out_paths.is_empty(),
        "records of the pod left out: {out_paths:?}"
    );
    let filtered = out
        .summary_counter("filtered")
        .expect("filtered= in the summary");
    assert!(filtered > 0, "summary: {:?}", out.summary());
    assert!(
        out.summary_counter("filter_cgroups")
            .expect("filter_cgroups=")
            >= 1,
        "summary: {:?}",
        out.summary()
    );
    // podtap's own calls to the API server are never reported (no loop through its own traffic).
    let own: Vec<_> = out
        .records
        .iter()
        .filter(|r| r["server"]["port"].as_u64() == Some(u64::from(api.port())))
        .collect();
    assert!(own.is_empty(), "podtap reported its own API calls: {own:?}");
    out
}

struct Setup {
    api: KubeApi,
    node: String,
    tag: String,
    pair: PodPair,
    nginx_a: Nginx,
    nginx_b: Nginx,
}

fn setup() -> Setup {
    let tag = tag();
    let api = KubeApi::start().expect("Kubernetes API test server");
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Cgroupfs).expect("pods");
    let nginx_a = Nginx::start(&pair.a, 0, PORT).expect("nginx a");
    let nginx_b = Nginx::start(&pair.b, 0, PORT).expect("nginx b");
    Setup {
        api,
        node: node(&tag),
        tag,
        pair,
        nginx_a,
        nginx_b,
    }
}

#[test]
fn namespace_includes_only_its_pods() {
    let s = setup();
    let (ns_a, ns_b) = (format!("fa-{}", s.tag), format!("fb-{}", s.tag));
    register(&s.api, &s.pair.a, &s.node, &ns_a, "web-a", &[]);
    register(&s.api, &s.pair.b, &s.node, &ns_b, "web-b", &[]);
    let tap = start_podtap(&s.api, &s.node, &["--namespace", &ns_a]);
    wait_captured(&tap, &s.pair.a, &s.nginx_a, "ns-a");
    assert_split(
        tap,
        &s.api,
        (&s.pair.a, &s.nginx_a),
        (&s.pair.b, &s.nginx_b),
    );
}

#[test]
fn exclude_namespace_leaves_out_its_pods() {
    let s = setup();
    let (ns_a, ns_b) = (format!("fa-{}", s.tag), format!("fb-{}", s.tag));
    register(&s.api, &s.pair.a, &s.node, &ns_a, "web-a", &[]);
    register(&s.api, &s.pair.b, &s.node, &ns_b, "web-b", &[]);
    let tap = start_podtap(&s.api, &s.node, &["--exclude-namespace", &ns_b]);
    wait_not_captured(&tap, &s.pair.b, &s.nginx_b, "excluded-b");
    wait_captured(&tap, &s.pair.a, &s.nginx_a, "kept-a");
    assert_split(
        tap,
        &s.api,
        (&s.pair.a, &s.nginx_a),
        (&s.pair.b, &s.nginx_b),
    );
}

#[test]
fn pod_regex_matches_names() {
    let s = setup();
    let ns = format!("fp-{}", s.tag);
    register(&s.api, &s.pair.a, &s.node, &ns, "web-7d9f-x2", &[]);
    register(&s.api, &s.pair.b, &s.node, &ns, "db-0", &[]);
    let tap = start_podtap(&s.api, &s.node, &["--pod", "^web-[0-9a-f]+-"]);
    wait_captured(&tap, &s.pair.a, &s.nginx_a, "regex-a");
    assert_split(
        tap,
        &s.api,
        (&s.pair.a, &s.nginx_a),
        (&s.pair.b, &s.nginx_b),
    );
}

#[test]
fn selector_matches_labels() {
    let s = setup();
    let ns = format!("fs-{}", s.tag);
    register(
        &s.api,
        &s.pair.a,
        &s.node,
        &ns,
        "front",
        &[("app", "web"), ("tier", "front")],
    );
    register(
        &s.api,
        &s.pair.b,
        &s.node,
        &ns,
        "back",
        &[("app", "web"), ("tier", "back")],
    );
    let tap = start_podtap(
        &s.api,
        &s.node,
        &["--selector", "app in (web, api),tier!=back,!legacy"],
    );
    wait_captured(&tap, &s.pair.a, &s.nginx_a, "selector-a");
    assert_split(
        tap,
        &s.api,
        (&s.pair.a, &s.nginx_a),
        (&s.pair.b, &s.nginx_b),
    );
}

/// podtap starts before the pods exist: their cgroups, then their API objects, come later; a container
/// added to a listed pod afterwards is covered without a new map entry.
#[test]
fn pods_that_appear_later_are_included() {
    let tag = tag();
    let node = node(&tag);
    let api = KubeApi::start().expect("Kubernetes API test server");
    let ns = format!("fl-{tag}");
    let tap = start_podtap(&api, &node, &["--namespace", &ns]);

    let mut pair = PodPair::new(CgroupDriver::Cgroupfs, CgroupDriver::Systemd).expect("pods");
    let nginx_a = Nginx::start(&pair.a, 0, PORT).expect("nginx a");
    let nginx_b = Nginx::start(&pair.b, 0, PORT).expect("nginx b");
    assert!(
        !call_captured(&tap, &pair.a, &nginx_a, "/items/before-api", RECORD_WAIT),
        "a pod the API does not know yet was captured with an include filter"
    );
    register(&api, &pair.a, &node, &ns, "late-a", &[]);
    register(&api, &pair.b, &node, &format!("other-{tag}"), "late-b", &[]);
    wait_captured(&tap, &pair.a, &nginx_a, "late-a");

    // A new container of the listed pod: its cgroup appears now, below the listed pod cgroup.
    let second = pair.a.add_container().expect("second container");
    let (_, codes) = curl_codes(&pair.a, second, &[nginx_a.url("/items/second-container")])
        .expect("curl from the second container");
    assert_eq!(codes, vec![200]);
    let second_id = pair.a.containers[second].id.clone();
    let found = wait_until(RECORD_WAIT * 3, || {
        tap.records_for(&[pair.a.ip])
            .into_iter()
            .find(|r| r["request"]["path"] == "/items/second-container")
    })
    .expect("the second container's call was not captured");
    assert_eq!(
        found["client"]["container_id"],
        second_id.as_str(),
        "client of {found}"
    );
    assert_split(tap, &api, (&pair.a, &nginx_a), (&pair.b, &nginx_b));
}

/// The same with an exclusion: a pod of an excluded namespace that appears later stops being captured.
#[test]
fn pods_that_appear_later_are_excluded() {
    let tag = tag();
    let node = node(&tag);
    let api = KubeApi::start().expect("Kubernetes API test server");
    let ns_x = format!("fx-{tag}");
    let tap = start_podtap(&api, &node, &["--exclude-namespace", &ns_x]);

    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Cgroupfs).expect("pods");
    let nginx_a = Nginx::start(&pair.a, 0, PORT).expect("nginx a");
    let nginx_b = Nginx::start(&pair.b, 0, PORT).expect("nginx b");
    // Unknown to the API: an exclude filter captures it.
    wait_captured(&tap, &pair.b, &nginx_b, "before-api");
    register(&api, &pair.a, &node, &format!("ok-{tag}"), "late-a", &[]);
    register(&api, &pair.b, &node, &ns_x, "late-b", &[]);
    wait_not_captured(&tap, &pair.b, &nginx_b, "late-b");
    wait_captured(&tap, &pair.a, &nginx_a, "late-a");
    // `assert_split` looks at every record: drop b's from before the exclusion by checking only the
    // calls made after it.
    let mut tap = tap;
    for n in 0..3 {
        let (_, codes) =
            curl_codes(&pair.b, 0, &[nginx_b.url(&format!("/items/after-{n}"))]).expect("curl");
        assert_eq!(codes, vec![200]);
    }
    assert!(call_captured(
        &tap,
        &pair.a,
        &nginx_a,
        "/items/last",
        RECORD_WAIT * 3
    ));
    let out = tap.stop().expect("stop");
    out.assert_clean_exit();
    let b_after: Vec<_> = paths(&out.records, pair.b.ip)
        .into_iter()
        .filter(|p| p.starts_with("/items/after-"))
        .collect();
    assert!(
        b_after.is_empty(),
        "excluded pod's calls captured: {b_after:?}"
    );
    assert!(out.summary_counter("filtered").expect("filtered=") > 0);
}

/// Runs podtap with `args` (and `env`) expecting it to refuse to start: non-zero exit, a message that
/// contains every one of `expect`.
fn refuses(args: &[&str], env: &[(&str, &str)], unset: &[&str], expect: &[&str]) {
    let mut cmd = Command::new(binary().expect("podtap binary"));
    cmd.args(["run", "--output", "jsonl", "--duration", "20", "--no-tls"])
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in unset {
        cmd.env_remove(k);
    }
    let out = cmd.output().expect("running podtap");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "podtap {args:?} started; stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("podtap: capturing"),
        "podtap {args:?} captured before failing:\n{stderr}"
    );
    for e in expect {
        assert!(
            stderr.contains(e),
            "podtap {args:?}: {e:?} not in:\n{stderr}"
        );
    }
}

#[test]
fn bad_filters_are_refused_with_a_clear_message() {
    refuses(
        &["--no-kubernetes", "--pod", "web-("],
        &[],
        &[],
        &["--pod", "web-(", "regular expression"],
    );
    refuses(
        &["--no-kubernetes", "--selector", "app in web"],
        &[],
        &[],
        &["--selector", "app in web", "expected '('"],
    );
    refuses(
        &["--no-kubernetes", "--selector", "app=web,,tier=x"],
        &[],
        &[],
        &["--selector"],
    );
    refuses(
        &["--no-kubernetes", "--namespace", "Not_A_Namespace"],
        &[],
        &[],
        &["--namespace", "Not_A_Namespace"],
    );
    // Valid filters, but nothing to tell which pods they mean.
    refuses(
        &["--no-kubernetes", "--namespace", "default"],
        &[],
        &[],
        &["--no-kubernetes", "Kubernetes API"],
    );
    refuses(
        &["--no-kubernetes", "--exclude-namespace", "kube-system"],
        &[],
        &[],
        &["--no-kubernetes", "Kubernetes API"],
    );
    let home = TempDir::new("podtap-filter-home").expect("temp home");
    let home = home.path().to_string_lossy().into_owned();
    refuses(
        &["--selector", "app=web"],
        &[("HOME", &home)],
        &[
            "KUBECONFIG",
            "KUBERNETES_SERVICE_HOST",
            "KUBERNETES_SERVICE_PORT",
        ],
        &["Kubernetes API"],
    );
}

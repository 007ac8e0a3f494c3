//! Sensitive calls end to end: a "pod" calls a cloud metadata service stand-in on 169.254.169.254 and
//! reads a Secret from the Kubernetes API test server; podtap (real eBPF) marks those call records,
//! counts them in `podtap_sensitive_calls_total`, and a real Prometheus (Debian 2.42) scraping podtap's
//! `/metrics` and evaluating the shipped rules (dashboards/prometheus/podtap-rules.yaml) fires the three
//! alerts for that pod, and none for a second pod that made only ordinary calls. Also the rules' own
//! `promtool` checks and unit tests. Needs root and the podtap binary (see `podtap::binary`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::Value;

use podtap_tests::clients::{curl, curl_codes};
use podtap_tests::kube_api::{secret, KubeApi, PodBuilder};
use podtap_tests::netns::{Pod, PodProcess};
use podtap_tests::prometheus::{
    free_local_port, promtool_check_rules, promtool_test_rules, shipped_rule_tests, shipped_rules,
    Prometheus,
};
use podtap_tests::util::{python, sh, wait_until, workspace_root};
use podtap_tests::{CgroupDriver, PodPair, Podtap, PythonServer};

/// podtap runs at most this long; the test stops it with SIGINT well before.
const RUN_S: u32 = 300;
/// How long to wait for records after the traffic.
const SETTLE: Duration = Duration::from_secs(15);
/// How long Prometheus may take to scrape, evaluate and fire (1 s scrape and evaluation intervals).
const ALERT_TIMEOUT: Duration = Duration::from_secs(60);
const METADATA_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// Where the calling pod reaches the Kubernetes API (a forwarder in the other pod).
const API_PORT: u16 = 6443;
const NODE: &str = "podtap-sensitive-node";
const NAMESPACE: &str = "sensitive";
const ALERTS: [&str; 3] = [
    "PodtapCloudMetadataCallFailed",
    "PodtapCloudCredentialsFetched",
    "PodtapKubernetesSecretRead",
];

#[test]
fn promtool_rules() {
    let check = promtool_check_rules(&shipped_rules()).expect("promtool check rules");
    assert!(check.contains("SUCCESS: 3 rules found"), "{check}");
    let test = promtool_test_rules(&shipped_rule_tests()).expect("promtool test rules");
    assert!(test.contains("SUCCESS"), "{test}");
}

/// Forwards TCP connections accepted inside a pod's network namespace to an address of the test's
/// own namespace (the Kubernetes API test server listens on the host's 127.0.0.1, which a pod cannot
/// reach). Stops accepting on drop; open connections end when their peers close.
struct Forwarder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    fn start(pod: &Pod, listen: SocketAddr, to: SocketAddr) -> Result<Self> {
        let listener = pod.in_netns(move || TcpListener::bind(listen))??;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if let Err(e) = forward(client, to) {
                            eprintln!("forwarder: {e:#}");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => {
                        eprintln!("forwarder: accept: {e}");
                        break;
                    }
                }
            }
        });
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

fn forward(client: TcpStream, to: SocketAddr) -> Result<()> {
    client.set_nonblocking(false)?;
    let server = TcpStream::connect_timeout(&to, Duration::from_secs(5))
        .with_context(|| format!("connecting to {to}"))?;
    for (mut from, mut into) in [(client.try_clone()?, server.try_clone()?), (server, client)] {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if into.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            into.shutdown(Shutdown::Write).ok();
        });
    }
    Ok(())
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

/// The metadata service stand-in (tests/python/metadata.py) on 169.254.169.254:80 inside `pod`,
/// which gets that address on its veth; `caller` gets a route to it over the veth pair.
fn metadata_service(pod: &Pod, caller: &Pod) -> Result<PodProcess> {
    sh(
        "ip",
        &[
            "-n",
            pod.netns(),
            "addr",
            "add",
            "169.254.169.254/32",
            "dev",
            "veth0",
        ],
    )?;
    sh(
        "ip",
        &[
            "-n",
            caller.netns(),
            "route",
            "add",
            "169.254.169.254/32",
            "dev",
            "veth0",
        ],
    )?;
    let script = workspace_root().join("tests/python/metadata.py");
    let py = python()?.to_string_lossy().into_owned();
    let process = pod.spawn(
        0,
        &py,
        &[&script.to_string_lossy(), &METADATA_IP.to_string(), "80"],
    )?;
    pod.wait_listening(METADATA_IP, 80, Duration::from_secs(10))
        .context("metadata stand-in did not start")?;
    Ok(process)
}

/// The one record of `method path` from `client_ip`.
fn record<'a>(records: &'a [Value], client_ip: Ipv4Addr, method: &str, path: &str) -> &'a Value {
    let found: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["client"]["ip"] == client_ip.to_string()
                && r["request"]["method"] == method
                && r["request"]["path"] == path
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one record of {method} {path} from {client_ip}; records:\n{records:#?}"
    );
    found[0]
}

/// Alerts (firing) whose labels name `namespace`/`pod`.
fn firing_for<'a>(alerts: &'a [Value], pod: &str) -> Vec<&'a Value> {
    alerts
        .iter()
        .filter(|a| {
            a["state"] == "firing"
                && a["labels"]["namespace"] == NAMESPACE
                && a["labels"]["pod"] == pod
        })
        .collect()
}

#[test]
fn metadata_and_secret_calls_are_marked_counted_and_alerted() {
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Cgroupfs).expect("pods");
    let short = &pair.a.uid()[..8];
    // Pod a makes the sensitive calls; pod b hosts the stand-ins and makes only an ordinary call.
    let caller = format!("caller-{short}");
    let bystander = format!("bystander-{short}");

    let api = KubeApi::start().expect("Kubernetes API test server");
    for (pod, name) in [(&pair.a, &caller), (&pair.b, &bystander)] {
        api.apply(
            &PodBuilder::new(NAMESPACE, name)
                .uid(pod.uid())
                .node(NODE)
                .ip(pod.ip)
                .container("app", &pod.container().id)
                .build(),
        )
        .expect("pod object");
    }
    api.apply(&secret("x", "y", &[("password", b"not-a-real-one")]))
        .expect("secret object");
    let _forwarder = Forwarder::start(
        &pair.b,
        SocketAddr::from((pair.b.ip, API_PORT)),
        SocketAddr::from((Ipv4Addr::LOCALHOST, api.port())),
    )
    .expect("API forwarder in pod b");
    pair.b
        .wait_listening(pair.b.ip, API_PORT, Duration::from_secs(5))
        .expect("API forwarder listening");
    let _metadata = metadata_service(&pair.b, &pair.a).expect("metadata stand-in");
    let ordinary = PythonServer::http_server(&pair.a, 0, 8000).expect("http.server in pod a");

    let metrics_port = free_local_port().expect("free port");
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let kubeconfig = api.kubeconfig().to_string_lossy().into_owned();
    let mut tap = Podtap::start(
        RUN_S,
        &[
            "--metrics-listen",
            &metrics_addr,
            "--kubeconfig",
            &kubeconfig,
            "--node-name",
            NODE,
        ],
    )
    .expect("podtap run");
    // Names come from the pod watch: let podtap list the pods before the calls.
    api.wait_watches("/api/v1/pods", 1, Duration::from_secs(30))
        .expect("podtap watches this node's pods");

    // The calls of pod a. (method, path, expected status, expected `sensitive`)
    let meta = |path: &str| format!("http://{METADATA_IP}{path}");
    let kube = |path: &str| format!("http://{}:{API_PORT}{path}", pair.b.ip);
    let token = curl(
        &pair.a,
        0,
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "-H",
            "X-aws-ec2-metadata-token-ttl-seconds: 60",
            &meta("/latest/api/token"),
        ],
    )
    .expect("curl PUT token");
    assert_eq!(token.stdout.trim(), "200");
    let metadata_calls = [
        ("/latest/meta-data/ami-id", 200, "cloud_metadata"),
        (
            "/latest/meta-data/iam/security-credentials/podtap-test-role",
            200,
            "cloud_credentials",
        ),
        ("/latest/meta-data/forbidden/tags", 403, "cloud_metadata"),
        ("/latest/user-data", 404, "cloud_metadata"),
    ];
    let urls: Vec<String> = metadata_calls.iter().map(|(p, _, _)| meta(p)).collect();
    let (_, codes) = curl_codes(&pair.a, 0, &urls).expect("curl metadata");
    let want: Vec<u16> = metadata_calls.iter().map(|(_, s, _)| *s).collect();
    assert_eq!(codes, want, "metadata stand-in answers");
    let (_, codes) = curl_codes(
        &pair.a,
        0,
        &[
            kube("/api/v1/namespaces/x/secrets/y"),
            kube("/api/v1/namespaces/x/configmaps/z"),
        ],
    )
    .expect("curl Kubernetes API");
    assert_eq!(codes, vec![200, 404], "API test server answers");
    // Pod b's only call: an ordinary one.
    let (_, codes) = curl_codes(&pair.b, 0, &[ordinary.url("/items/1")]).expect("curl ordinary");
    assert_eq!(codes, vec![200]);

    // 1. The records carry `sensitive`.
    let expected_records = 1 + metadata_calls.len() + 2 + 1;
    tap.wait_records(&pair.ips(), expected_records, SETTLE);
    let records = tap.records_for(&pair.ips());
    let a = pair.a.ip;
    assert_eq!(
        record(&records, a, "PUT", "/latest/api/token")["sensitive"],
        "cloud_metadata"
    );
    for (path, status, category) in metadata_calls {
        let r = record(&records, a, "GET", path);
        assert_eq!(r["sensitive"], category, "{r}");
        assert_eq!(r["response"]["status"], status, "{r}");
    }
    let r = record(&records, a, "GET", "/api/v1/namespaces/x/secrets/y");
    assert_eq!(r["sensitive"], "k8s_secret", "{r}");
    let r = record(&records, a, "GET", "/api/v1/namespaces/x/configmaps/z");
    assert!(r.get("sensitive").is_none(), "not sensitive: {r}");
    let r = record(&records, pair.b.ip, "GET", "/items/1");
    assert!(r.get("sensitive").is_none(), "not sensitive: {r}");
    // The counter's pod labels come from these names.
    for r in &records {
        let (pod, name) = if r["client"]["ip"] == a.to_string() {
            (&pair.a, &caller)
        } else {
            (&pair.b, &bystander)
        };
        if r["client"]["pod_uid"] == pod.uid() {
            assert_eq!(r["client"]["namespace"], NAMESPACE, "{r}");
            assert_eq!(r["client"]["pod"], name.as_str(), "{r}");
        }
    }

    // 2. Prometheus scrapes podtap and evaluates the shipped rules: the three alerts fire for the
    //    caller, none for the bystander.
    let prometheus = Prometheus::start(std::slice::from_ref(&metrics_addr), &[shipped_rules()])
        .expect("prometheus");
    let fired = wait_until(ALERT_TIMEOUT, || {
        let alerts = prometheus.alerts().ok()?;
        let names: std::collections::BTreeSet<String> = firing_for(&alerts, &caller)
            .iter()
            .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
            .collect();
        ALERTS.iter().all(|n| names.contains(*n)).then_some(alerts)
    });
    let Some(alerts) = fired else {
        panic!(
            "the three alerts did not fire for {NAMESPACE}/{caller} within {ALERT_TIMEOUT:?}\n\
             alerts: {:#?}\nseries: {:#?}\ntargets: {:#?}\nprometheus log:\n{}",
            prometheus.alerts(),
            prometheus.query("podtap_sensitive_calls_total"),
            prometheus.targets(),
            prometheus.log()
        );
    };
    for alert in firing_for(&alerts, &caller) {
        assert!(
            ["warning", "critical"].contains(&alert["labels"]["severity"].as_str().unwrap_or("")),
            "{alert}"
        );
        for key in ["summary", "description", "runbook"] {
            let text = alert["annotations"][key].as_str().unwrap_or_default();
            assert!(!text.is_empty(), "annotation {key}: {alert}");
        }
        assert!(
            alert["annotations"]["summary"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("{NAMESPACE}/{caller}")),
            "{alert}"
        );
    }
    // The counter itself, per category and outcome, for the caller; nothing for the bystander.
    let series = prometheus
        .query(&format!(
            "sum by (category) (podtap_sensitive_calls_total{{namespace=\"{NAMESPACE}\", pod=\"{caller}\"}})"
        ))
        .expect("query");
    let count = |category: &str| {
        series
            .iter()
            .find(|s| s["metric"]["category"] == category)
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(count("cloud_metadata"), Some(4.0), "{series:#?}");
    assert_eq!(count("cloud_credentials"), Some(1.0), "{series:#?}");
    assert_eq!(count("k8s_secret"), Some(1.0), "{series:#?}");
    let denied = prometheus
        .query(&format!(
            "podtap_sensitive_calls_total{{pod=\"{caller}\", category=\"cloud_metadata\", outcome=\"denied\"}}"
        ))
        .expect("query");
    assert_eq!(denied.len(), 1, "the 403 counts as denied: {denied:#?}");
    // A few more evaluations: the bystander never shows up.
    std::thread::sleep(Duration::from_secs(3));
    let alerts = prometheus.alerts().expect("alerts");
    let named: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["labels"]["pod"] == bystander.as_str())
        .collect();
    assert!(named.is_empty(), "alerts for the bystander pod: {named:#?}");
    let bystander_series = prometheus
        .query(&format!(
            "podtap_sensitive_calls_total{{pod=\"{bystander}\"}}"
        ))
        .expect("query");
    assert!(bystander_series.is_empty(), "{bystander_series:#?}");
    drop(prometheus);

    let out = tap.stop().expect("stop");
    out.assert_clean_exit();
}

//! Kubernetes metadata: the test API server against kube's own client and watchers, then podtap naming both
//! ends of real calls between netns "pods" from what that server serves (as root, real eBPF, the real
//! podtap binary with `--kubeconfig` of the test server and `--node-name`).

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt as _;
use podtap_tests::clients::curl_codes;
use podtap_tests::kube_api::{self, KubeApi, PodBuilder};
use podtap_tests::netns::PodProcess;
use podtap_tests::util::{sh, wait_until};
use podtap_tests::{CgroupDriver, Nginx, Pod as NetnsPod, PodPair, Podtap};
use serde_json::Value;

async fn client(api: &KubeApi) -> kube::Client {
    let kc = Kubeconfig::read_from(api.kubeconfig()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

fn pod(ns: &str, name: &str, node: &str, ip: &str) -> Pod {
    PodBuilder::new(ns, name)
        .node(node)
        .ip(ip)
        .label("app", name)
        .container("main", &kube_api::fresh_container_id())
        .build()
}

fn name<K: kube::Resource>(o: &K) -> String {
    o.meta().name.clone().unwrap_or_default()
}

/// Next event of `stream` that is not Init/InitDone, with a timeout.
async fn next_change<S, K>(stream: &mut S) -> Event<K>
where
    S: futures_util::Stream<Item = Result<Event<K>, watcher::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.next().await {
                Some(Ok(Event::Init | Event::InitDone)) => continue,
                Some(Ok(e)) => return e,
                Some(Err(_)) => continue,
                None => panic!("watch stream ended"),
            }
        }
    })
    .await
    .expect("no watch event within 20 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_api_serves_kube_watchers() {
    let api = KubeApi::start().expect("start test API server");
    api.apply(&pod("shop", "web-1", "node-a", "10.9.0.1"))
        .unwrap();
    api.apply(&pod("shop", "db-1", "node-b", "10.9.0.2"))
        .unwrap();
    let dep = kube_api::deployment("shop", "web");
    api.apply(&dep).unwrap();
    api.apply(&kube_api::replica_set("shop", "web-7d9f", &dep))
        .unwrap();
    let client = client(&api).await;

    // Plain list: resourceVersion and the field selector.
    let pods: Api<Pod> = Api::all(client.clone());
    let list = pods
        .list(&ListParams::default().fields("spec.nodeName=node-a"))
        .await
        .expect("list pods");
    assert!(list.metadata.resource_version.is_some());
    assert_eq!(list.items.iter().map(name).collect::<Vec<_>>(), ["web-1"]);

    // A Secret read.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "x");
    let s = secrets.get("y").await.expect("get secret");
    assert_eq!(s.metadata.name.as_deref(), Some("y"));

    // A watcher of this node's pods: the initial list, then ADDED, MODIFIED, DELETED.
    let cfg = watcher::Config::default().fields("spec.nodeName=node-a");
    let mut pod_events = watcher::watcher(pods.clone(), cfg)
        .default_backoff()
        .boxed();
    match next_change(&mut pod_events).await {
        Event::InitApply(p) => assert_eq!(name(&p), "web-1"),
        e => panic!("expected the initial pod, got {e:?}"),
    }
    api.apply(&pod("shop", "other-node", "node-b", "10.9.0.3"))
        .unwrap();
    api.apply(&pod("shop", "web-2", "node-a", "10.9.0.4"))
        .unwrap();
    match next_change(&mut pod_events).await {
        Event::Apply(p) => assert_eq!(name(&p), "web-2"),
        e => panic!("expected web-2 added, got {e:?}"),
    }
    assert!(api.delete::<Pod>("shop", "web-2"));
    match next_change(&mut pod_events).await {
        Event::Delete(p) => assert_eq!(name(&p), "web-2"),
        e => panic!("expected web-2 deleted, got {e:?}"),
    }

    // A metadata watcher of ReplicaSets: owner references come through PartialObjectMetadata.
    let rss: Api<PartialObjectMeta<ReplicaSet>> = Api::all(client.clone());
    let mut rs_events = watcher::watcher(rss, watcher::Config::default())
        .default_backoff()
        .boxed();
    match next_change(&mut rs_events).await {
        Event::InitApply(m) => {
            assert_eq!(m.metadata.name.as_deref(), Some("web-7d9f"));
            let owners = m.metadata.owner_references.unwrap_or_default();
            assert_eq!(owners[0].kind, "Deployment");
            assert_eq!(owners[0].name, "web");
        }
        e => panic!("expected the initial replicaset, got {e:?}"),
    }
    assert!(api
        .requests()
        .iter()
        .any(|r| r.path == "/apis/apps/v1/replicasets"
            && r.accept
                .as_deref()
                .is_some_and(|a| a.contains("PartialObjectMetadataList"))));

    // The API server goes away and comes back: the watcher reconnects and sees what changed meanwhile.
    let watches_before = api.watches("/api/v1/pods");
    api.stop();
    api.apply(&pod("shop", "web-3", "node-a", "10.9.0.5"))
        .unwrap();
    api.restart().expect("restart");
    match next_change(&mut pod_events).await {
        Event::Apply(p) | Event::InitApply(p) => assert_eq!(name(&p), "web-3"),
        e => panic!("expected web-3 after the restart, got {e:?}"),
    }
    assert!(api.watches("/api/v1/pods") > watches_before);

    // History compacted: resuming gets 410 Gone, the watcher lists again and still sees new pods.
    api.compact();
    api.stop();
    api.restart().expect("restart");
    api.apply(&pod("shop", "web-4", "node-a", "10.9.0.6"))
        .unwrap();
    let mut seen = Vec::new();
    while !seen.contains(&"web-4".to_string()) {
        match next_change(&mut pod_events).await {
            Event::Apply(p) | Event::InitApply(p) => seen.push(name(&p)),
            Event::Delete(_) => {}
            e => panic!("unexpected {e:?}"),
        }
    }
    api.stop();
}

// ---------------------------------------------------------------------------------------------
// podtap against the test API server.

const NODE: &str = "node-test";
const RUN_S: u32 = 180;

/// The client pod: `web-6c9d7-x2k4p` of ReplicaSet `web-6c9d7` of Deployment `web`, container `web`.
fn client_objects(api: &KubeApi, pod: &NetnsPod, name: &str) -> Pod {
    let dep = kube_api::deployment("shop", "web");
    let rs = kube_api::replica_set("shop", "web-6c9d7", &dep);
    api.apply(&dep).unwrap();
    api.apply(&rs).unwrap();
    PodBuilder::new("shop", name)
        .uid(pod.uid())
        .node(NODE)
        .ip(pod.ip)
        .label("pod-template-hash", "6c9d7")
        .owned_by(&rs)
        .container("web", &pod.container().id)
        .build()
}

/// The server pod `db-0` of StatefulSet `db` (label app.kubernetes.io/name=database) behind the
/// Service `db` and its EndpointSlice.
fn server_objects(api: &KubeApi, pod: &NetnsPod) {
    let sts = kube_api::stateful_set("shop", "db");
    api.apply(&sts).unwrap();
    let p = PodBuilder::new("shop", "db-0")
        .uid(pod.uid())
        .node(NODE)
        .ip(pod.ip)
        .label("app.kubernetes.io/name", "database")
        .owned_by(&sts)
        .container("db", &pod.container().id)
        .build();
    let svc = kube_api::service(
        "shop",
        "db",
        "10.96.77.7",
        &[("app.kubernetes.io/name", "database")],
        80,
    );
    api.apply(&p).unwrap();
    api.apply(&kube_api::endpoint_slice(&svc, &[&p], 8080))
        .unwrap();
    api.apply(&svc).unwrap();
}

fn podtap_with(api: &KubeApi) -> Podtap {
    let kubeconfig = api.kubeconfig().to_string_lossy().into_owned();
    Podtap::start(RUN_S, &["--kubeconfig", &kubeconfig, "--node-name", NODE]).expect("podtap run")
}

fn s<'a>(r: &'a Value, end: &str, key: &str) -> Option<&'a str> {
    r[end][key].as_str()
}

/// Curls `url` from pod `a` until podtap reports a call from `a` whose client end has a pod name
/// (a pod applied to the API a moment ago reaches podtap through its watch), at most `timeout`.
fn curl_until_named(tap: &Podtap, pair: &PodPair, url: &str, timeout: Duration) -> Value {
    let found = wait_until(timeout, || {
        let (_, codes) = curl_codes(&pair.a, 0, &[url.to_string()]).expect("curl");
        assert_eq!(codes, vec![200]);
        tap.wait_records(&pair.ips(), 1, Duration::from_millis(500));
        tap.records_for(&pair.ips()).into_iter().find(|r| {
            s(r, "client", "pod").is_some() && s(r, "client", "ip") == Some(&pair.a.ip.to_string())
        })
    });
    found.unwrap_or_else(|| {
        panic!(
            "no call with a named client within {timeout:?}; records: {:?}",
            tap.records_for(&pair.ips())
        )
    })
}

fn assert_client_named(r: &Value, pair: &PodPair, pod_name: &str) {
    assert_eq!(s(r, "client", "namespace"), Some("shop"), "{r}");
    assert_eq!(s(r, "client", "pod"), Some(pod_name), "{r}");
    assert_eq!(s(r, "client", "container"), Some("web"), "{r}");
    assert_eq!(s(r, "client", "workload"), Some("web"), "{r}");
    assert_eq!(s(r, "client", "service"), Some("web"), "{r}");
    assert_eq!(s(r, "client", "pod_uid"), Some(pair.a.uid()), "{r}");
}

fn assert_server_named(r: &Value, pair: &PodPair) {
    assert_eq!(s(r, "server", "namespace"), Some("shop"), "{r}");
    assert_eq!(s(r, "server", "pod"), Some("db-0"), "{r}");
    assert_eq!(s(r, "server", "container"), Some("db"), "{r}");
    assert_eq!(s(r, "server", "workload"), Some("db"), "{r}");
    assert_eq!(s(r, "server", "service"), Some("database"), "{r}");
    assert_eq!(s(r, "server", "pod_uid"), Some(pair.b.uid()), "{r}");
}

/// A server outside any kubelet cgroup on an extra address of pod b's namespace: to podtap a socket of
/// the node itself, named by its address (served as a pod of another node).
fn remote_server(pair: &PodPair, port: u16) -> (Ipv4Addr, PodProcess) {
    let o = pair.b.ip.octets();
    let ip = Ipv4Addr::new(o[0], o[1], o[2], 3);
    sh(
        "ip",
        &[
            "-n",
            pair.b.netns(),
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "veth0",
        ],
    )
    .expect("extra address");
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            pair.b.netns(),
            "python3",
            "-m",
            "http.server",
            "--bind",
            &ip.to_string(),
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 http.server");
    let guard = PodProcess { child };
    pair.b
        .wait_listening(ip, port, Duration::from_secs(10))
        .expect("remote server listening");
    (ip, guard)
}

#[test]
fn a_both_ends_named_and_a_pod_added_later() {
    let api = KubeApi::start().expect("test API server");
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Cgroupfs).expect("pods");
    let nginx = Nginx::start(&pair.b, 0, 8080).expect("nginx");
    let (remote_ip, _remote) = remote_server(&pair, 8090);
    server_objects(&api, &pair.b);
    // A pod of another node, found by its address.
    let cache_sts = kube_api::stateful_set("shop", "cache");
    api.apply(&cache_sts).unwrap();
    api.apply(
        &PodBuilder::new("shop", "cache-0")
            .node("node-other")
            .ip(remote_ip)
            .label("app.kubernetes.io/instance", "cache-main")
            .owned_by(&cache_sts)
            .container("cache", &kube_api::fresh_container_id())
            .build(),
    )
    .unwrap();
    // A host-network pod of another node with pod a's address must not name anything.
    api.apply(
        &PodBuilder::new("kube-system", "node-agent")
            .node("node-other")
            .ip(pair.a.ip)
            .host_network(true)
            .build(),
    )
    .unwrap();

    let mut tap = podtap_with(&api);
    // The client pod appears after podtap started: it is named once its watch event arrives.
    api.apply(&client_objects(&api, &pair.a, "web-6c9d7-x2k4p"))
        .unwrap();
    let r = curl_until_named(&tap, &pair, &nginx.url("/items/1"), Duration::from_secs(30));
    assert_client_named(&r, &pair, "web-6c9d7-x2k4p");
    assert_server_named(&r, &pair);

    // The other node's pod, by address.
    let url = format!("http://{remote_ip}:8090/");
    let (_, codes) = curl_codes(&pair.a, 0, &[url]).expect("curl remote");
    assert_eq!(codes, vec![200]);
    let ips = [remote_ip];
    assert!(
        tap.wait_records(&ips, 1, Duration::from_secs(10)) >= 1,
        "no call to {remote_ip}"
    );
    let out = tap.stop().expect("stop");
    out.assert_clean_exit();
    let remote = out.records_for(&ips);
    let r = &remote[0];
    assert_client_named(r, &pair, "web-6c9d7-x2k4p");
    assert_eq!(s(r, "server", "namespace"), Some("shop"), "{r}");
    assert_eq!(s(r, "server", "pod"), Some("cache-0"), "{r}");
    assert_eq!(s(r, "server", "workload"), Some("cache"), "{r}");
    assert_eq!(s(r, "server", "service"), Some("cache-main"), "{r}");
    assert_eq!(
        s(r, "server", "container"),
        None,
        "no container name by address: {r}"
    );
    // Every call of the pair named both ends; none named after the host-network pod.
    for r in out.records_for(&pair.ips()) {
        assert_ne!(s(&r, "client", "pod"), Some("node-agent"), "{r}");
    }
    // podtap listed this node's pods with the field selector and the owners as metadata.
    let reqs = api.requests();
    assert!(reqs.iter().any(|q| q.path == "/api/v1/pods"
        && q.param("fieldSelector").as_deref() == Some(&format!("spec.nodeName={NODE}"))));
    assert!(reqs.iter().any(|q| q.path == "/apis/apps/v1/replicasets"
        && q.accept
            .as_deref()
            .is_some_and(|a| a.contains("PartialObjectMetadata"))));
    api.stop();
}

#[test]
fn b_reconnects_after_the_api_server_comes_back() {
    let api = KubeApi::start().expect("test API server");
    let pair = PodPair::new(CgroupDriver::Cgroupfs, CgroupDriver::Systemd).expect("pods");
    let nginx = Nginx::start(&pair.b, 0, 8080).expect("nginx");
    server_objects(&api, &pair.b);
    let mut tap = podtap_with(&api);
    api.wait_watches("/api/v1/pods", 2, Duration::from_secs(10))
        .expect("pod watches");
    let watches = api.watches("/api/v1/pods");
    api.stop();
    // Down long enough for every watch to notice and retry at least once.
    std::thread::sleep(Duration::from_secs(3));
    api.restart().expect("restart");
    api.wait_watches("/api/v1/pods", watches + 2, Duration::from_secs(60))
        .expect("podtap watches pods again after the restart");
    // A pod added after the restart is named.
    api.apply(&client_objects(&api, &pair.a, "web-6c9d7-after"))
        .unwrap();
    let r = curl_until_named(&tap, &pair, &nginx.url("/items/2"), Duration::from_secs(30));
    assert_client_named(&r, &pair, "web-6c9d7-after");
    assert_server_named(&r, &pair);
    let out = tap.stop().expect("stop");
    out.assert_clean_exit();
    let warnings = out.stderr.matches("Kubernetes API unavailable").count();
    assert!(
        (1..=2).contains(&warnings),
        "one warning per outage, got {warnings}:\n{}",
        out.stderr
    );
}

#[test]
fn c_without_an_api_server_podtap_reports_uids() {
    // A kubeconfig whose server is gone.
    let api = KubeApi::start().expect("test API server");
    api.stop();
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Systemd).expect("pods");
    let nginx = Nginx::start(&pair.b, 0, 8080).expect("nginx");
    let mut tap = podtap_with(&api);
    for path in ["/items/1", "/items/2", "/items/3"] {
        let (_, codes) = curl_codes(&pair.a, 0, &[nginx.url(path)]).expect("curl");
        assert_eq!(codes, vec![200]);
    }
    assert!(tap.wait_records(&pair.ips(), 3, Duration::from_secs(10)) >= 3);
    // Still running, a few retries later.
    std::thread::sleep(Duration::from_secs(4));
    let out = tap.stop().expect("stop");
    out.assert_clean_exit();
    let records = out.records_for(&pair.ips());
    assert_eq!(records.len(), 3, "{records:?}");
    for r in &records {
        assert_eq!(s(r, "client", "pod_uid"), Some(pair.a.uid()), "{r}");
        assert_eq!(s(r, "server", "pod_uid"), Some(pair.b.uid()), "{r}");
        for end in ["client", "server"] {
            for key in ["pod", "namespace", "workload", "service", "container"] {
                assert!(
                    r[end].get(key).is_none(),
                    "no {end}.{key} without the API: {r}"
                );
            }
        }
    }
    let warnings = out.stderr.matches("Kubernetes API unavailable").count();
    assert_eq!(
        warnings, 1,
        "one clear warning, not a flood:\n{}",
        out.stderr
    );
}

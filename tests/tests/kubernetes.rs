//! Kubernetes metadata: the test API server against kube's own client and watchers, then podtap naming both
//! ends of real calls between netns "pods" from what that server serves.

use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt as _;
use podtap_tests::kube_api::{self, KubeApi, PodBuilder};

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

//! Kubernetes API watches that fill the `MetadataStore`, on the tokio runtime `main` builds:
//!
//! - this node's pods (field selector `spec.nodeName`), full: labels and containers;
//! - every pod of the cluster, projected to names, addresses and owner (the other end of calls);
//! - Services (ClusterIPs) and EndpointSlices (ready addresses) cluster-wide;
//! - ReplicaSets and Jobs as metadata only (`PartialObjectMetadata`): their owner references give the
//!   Deployment / CronJob of a pod.
//!
//! kube-runtime's watcher lists, watches, resumes from the last resourceVersion and lists again after a
//! 410 Gone; each (re)list replaces that kind's entries, so what was deleted while the API server was
//! away disappears. Errors back off (`default_backoff`) and are logged once per outage, not per retry.
//! Without any configuration, or while the API server is unreachable, podtap keeps running and
//! reports pod uids only.

use std::{
    fmt::Debug,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures_util::StreamExt as _;
use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    batch::v1::Job,
    core::v1::{Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    api::Api,
    config::{KubeConfigOptions, Kubeconfig},
    core::PartialObjectMeta,
    runtime::{
        watcher::{self, Event},
        WatchStreamExt as _,
    },
    Client, Config,
};
use serde::de::DeserializeOwned;

use super::{
    meta::{ContainerMeta, EndpointSliceMeta, MetadataStore, OwnerMap, PodMeta, ServiceMeta},
    names,
};

/// Why the watches did not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "no Kubernetes configuration (not in a cluster, no $KUBECONFIG or ~/.kube/config): {0}"
    )]
    NoConfig(#[source] kube::config::KubeconfigError),
    #[error("building the Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// Counters of the watches.
#[derive(Debug, Default)]
pub struct WatchStats {
    /// Objects without the fields podtap needs (no name, uid, ...), skipped.
    pub malformed: AtomicU64,
    /// Watch errors (connection refused, 410 Gone, decode errors), each followed by a retry.
    pub errors: AtomicU64,
    /// Completed (re)lists.
    pub lists: AtomicU64,
}

struct Shared {
    store: Arc<MetadataStore>,
    stats: Arc<WatchStats>,
    /// An outage is being reported: warn once when it starts, once when it ends.
    down: AtomicBool,
}

/// The first outcome of each watch, for `start` to wait on.
#[derive(Debug)]
enum Outcome {
    Listed,
    Failed,
    NoClient,
}

/// Watches `start` runs (and waits for).
const WATCHES: usize = 6;

/// Starts the watches on `runtime` and waits up to `wait` for their first lists, so the first calls
/// already have names. Returns the watch counters; never fails (problems are logged and podtap runs on
/// with pod uids only).
pub fn start(
    runtime: &tokio::runtime::Handle,
    store: Arc<MetadataStore>,
    kubeconfig: Option<PathBuf>,
    wait: Duration,
) -> Option<Arc<WatchStats>> {
    let stats = Arc::new(WatchStats::default());
    let (tx, rx) = std::sync::mpsc::channel::<Outcome>();
    let shared = Arc::new(Shared {
        store,
        stats: Arc::clone(&stats),
        down: AtomicBool::new(false),
    });
    runtime.spawn(async move {
        let client = match client(kubeconfig.as_deref()).await {
            Ok(c) => c,
            Err(e) => {
                log::warn!("podtap: Kubernetes names off, calls carry pod uids only: {e}");
                let _ = tx.send(Outcome::NoClient);
                return;
            }
        };
        run_all(client, shared, tx).await;
    });
    let deadline = Instant::now() + wait;
    let mut outcomes = 0;
    while outcomes < WATCHES {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Outcome::NoClient) => return None,
            Err(_) => break,
            Ok(Outcome::Listed | Outcome::Failed) => outcomes += 1,
        }
    }
    if outcomes < WATCHES {
        log::debug!("{outcomes} of {WATCHES} Kubernetes watches answered within {wait:?}");
    }
    Some(stats)
}

/// The client: `--kubeconfig`, else in-cluster, else `$KUBECONFIG` / `~/.kube/config`.
async fn client(kubeconfig: Option<&Path>) -> Result<Client, WatchError> {
    let config = if let Some(path) = kubeconfig {
        let kc = Kubeconfig::read_from(path).map_err(|source| WatchError::Kubeconfig {
            path: path.to_owned(),
            source,
        })?;
        Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|source| WatchError::Kubeconfig {
                path: path.to_owned(),
                source,
            })?
    } else if let Ok(c) = Config::incluster() {
        c
    } else {
        Config::from_kubeconfig(&KubeConfigOptions::default())
            .await
            .map_err(WatchError::NoConfig)?
    };
    Client::try_from(config).map_err(WatchError::Client)
}

async fn run_all(client: Client, shared: Arc<Shared>, tx: std::sync::mpsc::Sender<Outcome>) {
    let (otx, mut orx) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
    // Owners first: pods listed before their ReplicaSets would be named after the ReplicaSet.
    spawn_owner::<ReplicaSet>(&client, &shared, &otx, OwnerMap::ReplicaSets, "Deployment");
    spawn_owner::<Job>(&client, &shared, &otx, OwnerMap::Jobs, "CronJob");
    let owners_by = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut owners = 0;
    while owners < 2 {
        match tokio::time::timeout_at(owners_by, orx.recv()).await {
            Ok(Some(o)) => {
                let _ = tx.send(o);
                owners += 1;
            }
            _ => break,
        }
    }

    let store = &shared.store;
    let node_config = match store.node_name() {
        Some(node) => watcher::Config::default().fields(&format!("spec.nodeName={node}")),
        None => {
            log::warn!(
                "podtap: no --node-name (or NODE_NAME): every pod of the cluster counts as this node's \
                 (fine for one-node clusters)"
            );
            watcher::Config::default()
        }
    };
    let pods: Api<Pod> = Api::all(client.clone());
    {
        let s = Arc::clone(&shared);
        let w = Arc::clone(&shared);
        tokio::spawn(run(
            pods.clone(),
            node_config,
            "pods of this node",
            Arc::clone(&shared),
            otx.clone(),
            move |p: &Pod| pod_meta::<PodMeta>(p, &s.store, true),
            move |c| match c {
                Change::Reset(all) => w.store.node_pods_reset(all),
                Change::Apply(p) => w.store.node_pod_apply(p),
                Change::Delete(p) => w.store.node_pod_delete(&p.uid),
            },
        ));
    }
    {
        let s = Arc::clone(&shared);
        let w = Arc::clone(&shared);
        tokio::spawn(run(
            pods,
            watcher::Config::default(),
            "pods",
            Arc::clone(&shared),
            otx.clone(),
            move |p: &Pod| pod_meta::<PeerPod>(p, &s.store, false),
            move |c| match c {
                Change::Reset(all) => w.store.peers_reset(
                    all.into_iter()
                        .filter(|p| !p.finished)
                        .map(|p| p.meta)
                        .collect(),
                ),
                Change::Apply(p) if p.finished => w.store.peer_delete(&p.meta.uid, &p.meta.ips),
                Change::Apply(p) => w.store.peer_apply(p.meta),
                Change::Delete(p) => w.store.peer_delete(&p.meta.uid, &p.meta.ips),
            },
        ));
    }
    {
        let w = Arc::clone(&shared);
        tokio::spawn(run(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
            "services",
            Arc::clone(&shared),
            otx.clone(),
            service_meta,
            move |c| match c {
                Change::Reset(all) => w.store.services_reset(all),
                Change::Apply((s, ips)) => w.store.service_apply(s, &ips),
                Change::Delete((s, ips)) => w.store.service_delete(&s, &ips),
            },
        ));
    }
    {
        let w = Arc::clone(&shared);
        tokio::spawn(run(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
            "endpointslices",
            Arc::clone(&shared),
            otx,
            slice_meta,
            move |c| match c {
                Change::Reset(all) => w.store.slices_reset(all),
                Change::Apply(s) => w.store.slice_apply(s),
                Change::Delete(s) => w.store.slice_delete(&s.namespace, &s.service, &s.name),
            },
        ));
    }
    while let Some(o) = orx.recv().await {
        if tx.send(o).is_err() {
            break;
        }
    }
}

fn spawn_owner<K>(
    client: &Client,
    shared: &Arc<Shared>,
    ready: &tokio::sync::mpsc::UnboundedSender<Outcome>,
    map: OwnerMap,
    top_kind: &'static str,
) where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let api: Api<PartialObjectMeta<K>> = Api::all(client.clone());
    let w = Arc::clone(shared);
    let what = match map {
        OwnerMap::ReplicaSets => "replicasets",
        OwnerMap::Jobs => "jobs",
    };
    tokio::spawn(run(
        api,
        watcher::Config::default(),
        what,
        Arc::clone(shared),
        ready.clone(),
        move |o: &PartialObjectMeta<K>| {
            let m = &o.metadata;
            let top =
                names::controller_named(m.owner_references.as_deref().unwrap_or(&[]), top_kind);
            Some((m.namespace.clone()?, m.name.clone()?, top))
        },
        move |c| match c {
            Change::Reset(all) => w.store.owners_reset(
                map,
                all.into_iter()
                    .filter_map(|(ns, name, top)| Some((ns, name, top?)))
                    .collect(),
            ),
            Change::Apply((ns, name, top)) => w.store.owner_apply(map, &ns, &name, top.as_deref()),
            Change::Delete((ns, name, _)) => w.store.owner_apply(map, &ns, &name, None),
        },
    ));
}

/// What a watch hands its store writer.
enum Change<P> {
    /// A complete (re)list: replaces every entry of the kind.
    Reset(Vec<P>),
    Apply(P),
    Delete(P),
}

/// Runs one watch for ever: projects each object (`None`: malformed, counted) and applies it.
async fn run<K, P>(
    api: Api<K>,
    config: watcher::Config,
    what: &'static str,
    shared: Arc<Shared>,
    ready: tokio::sync::mpsc::UnboundedSender<Outcome>,
    project: impl Fn(&K) -> Option<P> + Send + 'static,
    mut apply: impl FnMut(Change<P>) + Send + 'static,
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    P: Send + 'static,
{
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut listing: Vec<P> = Vec::new();
    let mut reported = false;
    let project_counted = |o: &K| {
        let p = project(o);
        if p.is_none() {
            shared.stats.malformed.fetch_add(1, Ordering::Relaxed);
        }
        p
    };
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(o)) => listing.extend(project_counted(&o)),
            Ok(Event::InitDone) => {
                apply(Change::Reset(std::mem::take(&mut listing)));
                shared.stats.lists.fetch_add(1, Ordering::Relaxed);
                if shared.down.swap(false, Ordering::AcqRel) {
                    log::warn!(
                        "podtap: Kubernetes API answers again ({what} listed): names are back"
                    );
                }
                if !reported {
                    reported = true;
                    let _ = ready.send(Outcome::Listed);
                }
            }
            Ok(Event::Apply(o)) => {
                if let Some(p) = project_counted(&o) {
                    apply(Change::Apply(p));
                }
            }
            Ok(Event::Delete(o)) => {
                if let Some(p) = project_counted(&o) {
                    apply(Change::Delete(p));
                }
            }
            Err(e) => {
                shared.stats.errors.fetch_add(1, Ordering::Relaxed);
                if shared.down.swap(true, Ordering::AcqRel) {
                    log::debug!("Kubernetes watch of {what}: {e}");
                } else {
                    log::warn!(
                        "podtap: Kubernetes API unavailable (watching {what}: {e}); calls carry pod \
                         uids only until it answers; retrying with backoff"
                    );
                }
                if !reported {
                    reported = true;
                    let _ = ready.send(Outcome::Failed);
                }
            }
        }
    }
}

/// A pod, as the cluster-wide watch keeps it: whether it has finished (its addresses may be reused).
struct PeerPod {
    meta: PodMeta,
    finished: bool,
}

/// Projects a pod; `full` keeps labels and containers (this node's pods).
fn pod_meta<T: From<PeerPod>>(pod: &Pod, store: &MetadataStore, full: bool) -> Option<T> {
    let m = &pod.metadata;
    let (uid, name, namespace) = (m.uid.clone()?, m.name.clone()?, m.namespace.clone()?);
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let mut ips: Vec<IpAddr> = Vec::new();
    if !host_network {
        if let Some(list) = status.and_then(|s| s.pod_ips.as_ref()) {
            ips.extend(list.iter().filter_map(|p| p.ip.parse::<IpAddr>().ok()));
        }
        if ips.is_empty() {
            ips.extend(status.and_then(|s| s.pod_ip.as_deref()?.parse::<IpAddr>().ok()));
        }
    }
    let owner = names::owner_workload(
        &namespace,
        m.owner_references.as_deref().unwrap_or(&[]),
        store,
    );
    let service_name = names::service_name(
        &name,
        m.annotations.as_ref(),
        m.labels.as_ref(),
        owner.as_ref(),
    );
    let service_namespace = names::service_namespace(&namespace, m.annotations.as_ref());
    let mut containers = Vec::new();
    if full {
        if let Some(st) = status {
            for cs in [&st.init_container_statuses, &st.container_statuses]
                .into_iter()
                .flatten()
                .flatten()
            {
                containers.push(ContainerMeta {
                    name: cs.name.clone(),
                    id: cs
                        .container_id
                        .as_deref()
                        .map(|id| id.rsplit_once("://").map_or(id, |(_, hex)| hex).to_string()),
                });
            }
        }
        // Containers not started yet: their names, without ids.
        for c in spec.map(|s| s.containers.as_slice()).unwrap_or(&[]) {
            if !containers.iter().any(|k| k.name == c.name) {
                containers.push(ContainerMeta {
                    name: c.name.clone(),
                    id: None,
                });
            }
        }
    }
    let finished = matches!(
        status.and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    Some(T::from(PeerPod {
        meta: PodMeta {
            uid,
            name,
            namespace,
            node: spec.and_then(|s| s.node_name.clone()),
            ips,
            host_network,
            labels: if full {
                m.labels.clone().unwrap_or_default()
            } else {
                Default::default()
            },
            owner,
            service_name,
            service_namespace,
            containers,
        },
        finished,
    }))
}

impl From<PeerPod> for PodMeta {
    fn from(p: PeerPod) -> Self {
        p.meta
    }
}

fn service_meta(s: &Service) -> Option<(ServiceMeta, Vec<IpAddr>)> {
    let m = &s.metadata;
    let meta = ServiceMeta {
        name: m.name.clone()?,
        namespace: m.namespace.clone()?,
    };
    let spec = s.spec.as_ref();
    let mut ips: Vec<IpAddr> = spec
        .and_then(|s| s.cluster_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if ips.is_empty() {
        // Headless Services ("None") have no address of their own.
        ips.extend(spec.and_then(|s| s.cluster_ip.as_deref()?.parse::<IpAddr>().ok()));
    }
    Some((meta, ips))
}

fn slice_meta(s: &EndpointSlice) -> Option<EndpointSliceMeta> {
    let m = &s.metadata;
    let service = m
        .labels
        .as_ref()?
        .get("kubernetes.io/service-name")?
        .clone();
    Some(EndpointSliceMeta {
        namespace: m.namespace.clone()?,
        name: m.name.clone()?,
        service,
        ips: s
            .endpoints
            .iter()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
            .flat_map(|e| e.addresses.iter())
            .filter_map(|a| a.parse().ok())
            .collect(),
    })
}

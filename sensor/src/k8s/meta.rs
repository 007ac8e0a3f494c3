//! What podtap keeps of the Kubernetes API: small projections of pods, Services and workloads, enough
//! to name both ends of a call. Filled by the watches (`k8s::watch`), read by attribution (`enrich`),
//! the capture filter (`k8s::filter`) and the exporters (a pod's resource).
//!
//! Bounded: only the fields below are kept (labels only for this node's pods), and the number of
//! entries of each kind is capped.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock, RwLockReadGuard, RwLockWriteGuard,
    },
};

/// Pods of this node kept (kubelet's default limit is 110; large nodes run a few hundred).
pub const MAX_NODE_PODS: usize = 4_096;
/// Pod addresses kept cluster-wide (a 5,000-node cluster at 110 pods per node stays under it).
pub const MAX_PEER_IPS: usize = 600_000;
/// Service ClusterIPs kept.
pub const MAX_SERVICES: usize = 100_000;
/// EndpointSlices kept.
pub const MAX_ENDPOINT_SLICES: usize = 200_000;
/// ReplicaSet -> Deployment and Job -> CronJob entries kept (each map).
pub const MAX_OWNERS: usize = 300_000;

/// A pod as podtap needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodMeta {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// `spec.nodeName`.
    pub node: Option<String>,
    /// `status.podIPs` (empty for host-network pods: their address is the node's).
    pub ips: Vec<IpAddr>,
    pub host_network: bool,
    /// Labels; kept for the pods of this node only (the capture filter's `--selector`).
    pub labels: BTreeMap<String, String>,
    /// The controller at the top of the owner chain (ReplicaSet -> Deployment, Job -> CronJob).
    pub owner: Option<Workload>,
    /// `service.name` in the OpenTelemetry order (annotation, app.kubernetes.io labels, owner, pod).
    pub service_name: String,
    /// `service.namespace` (annotation, else the pod's namespace).
    pub service_namespace: String,
    pub containers: Vec<ContainerMeta>,
}

impl PodMeta {
    /// The container with this id (64 hex, without the `containerd://` prefix).
    #[must_use]
    pub fn container(&self, id: &str) -> Option<&ContainerMeta> {
        self.containers.iter().find(|c| c.id.as_deref() == Some(id))
    }
}

/// A container of a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerMeta {
    pub name: String,
    /// `status.containerStatuses[].containerID` without its runtime prefix.
    pub id: Option<String>,
}

/// The workload that owns a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
}

impl WorkloadKind {
    /// The resource attribute that names a workload of this kind (`k8s.deployment.name`, ...).
    #[must_use]
    pub fn name_attribute(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "k8s.deployment.name",
            WorkloadKind::ReplicaSet => "k8s.replicaset.name",
            WorkloadKind::StatefulSet => "k8s.statefulset.name",
            WorkloadKind::DaemonSet => "k8s.daemonset.name",
            WorkloadKind::Job => "k8s.job.name",
            WorkloadKind::CronJob => "k8s.cronjob.name",
        }
    }
}

/// A Service, as the other end of a call addressed to its ClusterIP.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceMeta {
    pub name: String,
    pub namespace: String,
}

/// What an IP address of the other end is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    Pod(Arc<PodMeta>),
    Service(Arc<ServiceMeta>),
}

/// Counters of the store: entries per kind and what the caps turned away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetadataStats {
    pub node_pods: usize,
    pub peer_ips: usize,
    pub services: usize,
    pub endpoint_slices: usize,
    pub owners: usize,
    /// Entries not stored because their map was full.
    pub dropped: u64,
}

/// Which owner map (see `MetadataStore::owner_apply`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerMap {
    /// ReplicaSet -> its Deployment.
    ReplicaSets,
    /// Job -> its CronJob.
    Jobs,
}

type NsName = (Box<str>, Box<str>);

fn key(namespace: &str, name: &str) -> NsName {
    (namespace.into(), name.into())
}

#[derive(Debug, Default)]
struct Maps {
    node_pods: HashMap<Box<str>, Arc<PodMeta>>,
    peers: HashMap<IpAddr, Arc<PodMeta>>,
    services: HashMap<IpAddr, Arc<ServiceMeta>>,
    /// (namespace, service) -> slice name -> ready endpoint addresses.
    slices: HashMap<NsName, HashMap<Box<str>, Box<[IpAddr]>>>,
    slice_count: usize,
    replica_sets: HashMap<NsName, Box<str>>,
    jobs: HashMap<NsName, Box<str>>,
}

/// The metadata cache. Cheap to share (`Arc`); readers never wait for the API server (only, briefly,
/// for a writer applying one change).
#[derive(Debug, Default)]
pub struct MetadataStore {
    node_name: Option<String>,
    /// Bumped whenever the pods of this node (or their labels) change: the capture filter
    /// recomputes its cgroup set when it moves.
    node_generation: AtomicU64,
    maps: RwLock<Maps>,
    dropped: AtomicU64,
}

impl MetadataStore {
    #[must_use]
    pub fn new(node_name: Option<String>) -> Self {
        Self {
            node_name,
            ..Self::default()
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Maps> {
        self.maps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Maps> {
        self.maps
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn drop_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    fn bump(&self) {
        self.node_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// This node's name (`--node-name`, `NODE_NAME`).
    #[must_use]
    pub fn node_name(&self) -> Option<&str> {
        self.node_name.as_deref()
    }

    /// A pod of this node by uid.
    #[must_use]
    pub fn pod_by_uid(&self, uid: &str) -> Option<Arc<PodMeta>> {
        self.read().node_pods.get(uid).cloned()
    }

    /// The pod or Service behind an address. Host-network pods are never answers: their address is
    /// their node's, shared by every host-network pod and the node itself.
    #[must_use]
    pub fn peer_by_ip(&self, ip: IpAddr) -> Option<Peer> {
        let maps = self.read();
        if let Some(s) = maps.services.get(&ip) {
            return Some(Peer::Service(Arc::clone(s)));
        }
        maps.peers.get(&ip).map(|p| Peer::Pod(Arc::clone(p)))
    }

    /// The pods behind a Service (its EndpointSlices' ready addresses that are known pods).
    #[must_use]
    pub fn service_backends(&self, service: &ServiceMeta) -> Vec<Arc<PodMeta>> {
        let maps = self.read();
        let Some(slices) = maps.slices.get(&key(&service.namespace, &service.name)) else {
            return Vec::new();
        };
        slices
            .values()
            .flat_map(|ips| ips.iter())
            .filter_map(|ip| maps.peers.get(ip).cloned())
            .collect()
    }

    /// See `node_generation`.
    #[must_use]
    pub fn node_generation(&self) -> u64 {
        self.node_generation.load(Ordering::Acquire)
    }

    /// The pods of this node.
    #[must_use]
    pub fn node_pods(&self) -> Vec<Arc<PodMeta>> {
        self.read().node_pods.values().cloned().collect()
    }

    #[must_use]
    pub fn stats(&self) -> MetadataStats {
        let m = self.read();
        MetadataStats {
            node_pods: m.node_pods.len(),
            peer_ips: m.peers.len(),
            services: m.services.len(),
            endpoint_slices: m.slice_count,
            owners: m.replica_sets.len() + m.jobs.len(),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    // ---- writers (the watches) ----

    /// Adds or replaces a pod of this node.
    pub fn node_pod_apply(&self, pod: PodMeta) {
        let mut m = self.write();
        if m.node_pods
            .get(pod.uid.as_str())
            .is_some_and(|old| **old == pod)
        {
            return;
        }
        if m.node_pods.len() >= MAX_NODE_PODS && !m.node_pods.contains_key(pod.uid.as_str()) {
            drop(m);
            self.drop_one();
            return;
        }
        m.node_pods.insert(pod.uid.as_str().into(), Arc::new(pod));
        drop(m);
        self.bump();
    }

    pub fn node_pod_delete(&self, uid: &str) {
        if self.write().node_pods.remove(uid).is_some() {
            self.bump();
        }
    }

    /// Replaces all pods of this node (after a (re)list).
    pub fn node_pods_reset(&self, pods: Vec<PodMeta>) {
        let mut fresh: HashMap<Box<str>, Arc<PodMeta>> = HashMap::with_capacity(pods.len());
        let mut dropped = 0;
        for pod in pods {
            if fresh.len() >= MAX_NODE_PODS {
                dropped += 1;
                continue;
            }
            fresh.insert(pod.uid.as_str().into(), Arc::new(pod));
        }
        let mut m = self.write();
        let same = m.node_pods.len() == fresh.len()
            && fresh
                .iter()
                .all(|(uid, p)| m.node_pods.get(uid).is_some_and(|old| old == p));
        m.node_pods = fresh;
        drop(m);
        self.dropped.fetch_add(dropped, Ordering::Relaxed);
        if !same {
            self.bump();
        }
    }

    fn peer_insert(&self, m: &mut Maps, pod: &Arc<PodMeta>) {
        if pod.host_network {
            return;
        }
        for ip in &pod.ips {
            if m.peers.len() >= MAX_PEER_IPS && !m.peers.contains_key(ip) {
                self.drop_one();
                continue;
            }
            m.peers.insert(*ip, Arc::clone(pod));
        }
    }

    /// Adds or replaces a pod anywhere in the cluster (labels and containers are not kept).
    pub fn peer_apply(&self, pod: PodMeta) {
        let pod = Arc::new(pod);
        let mut m = self.write();
        // An address the pod no longer has (rare: IPs are set once) is left to the next relist.
        self.peer_insert(&mut m, &pod);
    }

    /// Forgets a pod's addresses (only where they still point at that pod: an address may already
    /// belong to a new pod).
    pub fn peer_delete(&self, uid: &str, ips: &[IpAddr]) {
        let mut m = self.write();
        for ip in ips {
            if m.peers.get(ip).is_some_and(|p| p.uid == uid) {
                m.peers.remove(ip);
            }
        }
    }

    pub fn peers_reset(&self, pods: Vec<PodMeta>) {
        let mut m = self.write();
        m.peers.clear();
        for pod in pods {
            self.peer_insert(&mut m, &Arc::new(pod));
        }
        m.peers.shrink_to_fit();
    }

    fn service_insert(&self, m: &mut Maps, svc: &Arc<ServiceMeta>, ips: &[IpAddr]) {
        for ip in ips {
            if m.services.len() >= MAX_SERVICES && !m.services.contains_key(ip) {
                self.drop_one();
                continue;
            }
            m.services.insert(*ip, Arc::clone(svc));
        }
    }

    /// Adds or replaces a Service with its ClusterIPs (none for headless ones).
    pub fn service_apply(&self, svc: ServiceMeta, cluster_ips: &[IpAddr]) {
        let svc = Arc::new(svc);
        let mut m = self.write();
        m.services
            .retain(|ip, s| **s != *svc || cluster_ips.contains(ip));
        self.service_insert(&mut m, &svc, cluster_ips);
    }

    pub fn service_delete(&self, svc: &ServiceMeta, cluster_ips: &[IpAddr]) {
        let mut m = self.write();
        for ip in cluster_ips {
            if m.services.get(ip).is_some_and(|s| **s == *svc) {
                m.services.remove(ip);
            }
        }
    }

    pub fn services_reset(&self, services: Vec<(ServiceMeta, Vec<IpAddr>)>) {
        let mut m = self.write();
        m.services.clear();
        for (svc, ips) in services {
            self.service_insert(&mut m, &Arc::new(svc), &ips);
        }
        m.services.shrink_to_fit();
    }

    fn slice_insert(&self, m: &mut Maps, slice: EndpointSliceMeta) {
        let slices = m
            .slices
            .entry(key(&slice.namespace, &slice.service))
            .or_default();
        let new = !slices.contains_key(slice.name.as_str());
        if new && m.slice_count >= MAX_ENDPOINT_SLICES {
            self.drop_one();
            return;
        }
        slices.insert(slice.name.into(), slice.ips.into());
        if new {
            m.slice_count += 1;
        }
    }

    /// Adds or replaces an EndpointSlice (its service and ready addresses).
    pub fn slice_apply(&self, slice: EndpointSliceMeta) {
        let mut m = self.write();
        self.slice_insert(&mut m, slice);
    }

    pub fn slice_delete(&self, namespace: &str, service: &str, name: &str) {
        let mut m = self.write();
        let k = key(namespace, service);
        let Some(slices) = m.slices.get_mut(&k) else {
            return;
        };
        let removed = slices.remove(name).is_some();
        let empty = slices.is_empty();
        if empty {
            m.slices.remove(&k);
        }
        if removed {
            m.slice_count -= 1;
        }
    }

    pub fn slices_reset(&self, slices: Vec<EndpointSliceMeta>) {
        let mut m = self.write();
        m.slices.clear();
        m.slice_count = 0;
        for s in slices {
            self.slice_insert(&mut m, s);
        }
        m.slices.shrink_to_fit();
    }

    /// Records that `namespace/name` (a ReplicaSet or Job) is controlled by `top` (its Deployment or
    /// CronJob); `None` forgets it.
    pub fn owner_apply(&self, map: OwnerMap, namespace: &str, name: &str, top: Option<&str>) {
        let mut m = self.write();
        let table = match map {
            OwnerMap::ReplicaSets => &mut m.replica_sets,
            OwnerMap::Jobs => &mut m.jobs,
        };
        let k = key(namespace, name);
        match top {
            None => {
                table.remove(&k);
            }
            Some(top) => {
                if table.get(&k).is_some_and(|t| **t == *top) {
                    return;
                }
                if table.len() >= MAX_OWNERS && !table.contains_key(&k) {
                    drop(m);
                    self.drop_one();
                    return;
                }
                table.insert(k, top.into());
                // Its pods' events may have come first (separate watches race): name them now.
                let (from, to) = match map {
                    OwnerMap::ReplicaSets => (WorkloadKind::ReplicaSet, WorkloadKind::Deployment),
                    OwnerMap::Jobs => (WorkloadKind::Job, WorkloadKind::CronJob),
                };
                let fix = |p: &mut Arc<PodMeta>| {
                    let owned = p.namespace == namespace
                        && p.owner
                            .as_ref()
                            .is_some_and(|w| w.kind == from && w.name == name);
                    if owned {
                        let mut q = PodMeta::clone(p);
                        if q.service_name == name {
                            // It was the owner's name (names::service_name), not a label's.
                            q.service_name = top.to_string();
                        }
                        q.owner = Some(Workload {
                            kind: to,
                            name: top.to_string(),
                        });
                        *p = Arc::new(q);
                    }
                };
                m.node_pods.values_mut().for_each(fix);
                m.peers.values_mut().for_each(fix);
            }
        }
    }

    pub fn owners_reset(&self, map: OwnerMap, entries: Vec<(String, String, String)>) {
        let mut fresh = HashMap::with_capacity(entries.len().min(MAX_OWNERS));
        let mut dropped = 0;
        for (ns, name, top) in entries {
            if fresh.len() >= MAX_OWNERS {
                dropped += 1;
                continue;
            }
            fresh.insert(key(&ns, &name), top.into_boxed_str());
        }
        let mut m = self.write();
        match map {
            OwnerMap::ReplicaSets => m.replica_sets = fresh,
            OwnerMap::Jobs => m.jobs = fresh,
        }
        drop(m);
        self.dropped.fetch_add(dropped, Ordering::Relaxed);
    }

    /// The Deployment of a ReplicaSet / the CronJob of a Job, when known.
    #[must_use]
    pub fn owner_of(&self, map: OwnerMap, namespace: &str, name: &str) -> Option<String> {
        let m = self.read();
        let table = match map {
            OwnerMap::ReplicaSets => &m.replica_sets,
            OwnerMap::Jobs => &m.jobs,
        };
        table.get(&key(namespace, name)).map(|s| s.to_string())
    }
}

/// An EndpointSlice as the store keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointSliceMeta {
    pub namespace: String,
    pub name: String,
    /// Its `kubernetes.io/service-name` label.
    pub service: String,
    /// Addresses of its ready (or, without conditions, all) endpoints.
    pub ips: Vec<IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn pod(i: u32, node: &str, labels: bool) -> PodMeta {
        let mut p = PodMeta {
            uid: format!("{:08x}-1c2d-4e5f-8a9b-0c1d2e3f4a5b", i),
            name: format!("checkout-7d9f8b6c5-{:05x}", i),
            namespace: format!("team-{}", i % 50),
            node: Some(node.to_string()),
            ips: vec![IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))],
            host_network: false,
            labels: BTreeMap::new(),
            owner: Some(Workload {
                kind: WorkloadKind::Deployment,
                name: "checkout".into(),
            }),
            service_name: "checkout".into(),
            service_namespace: format!("team-{}", i % 50),
            containers: Vec::new(),
        };
        if labels {
            p.labels
                .insert("app.kubernetes.io/name".into(), "checkout".into());
            p.labels
                .insert("pod-template-hash".into(), "7d9f8b6c5".into());
            p.containers.push(ContainerMeta {
                name: "app".into(),
                id: Some("9".repeat(64)),
            });
        }
        p
    }

    #[test]
    fn node_generation_moves_on_node_pod_changes_only() {
        let s = MetadataStore::new(Some("n1".into()));
        let g0 = s.node_generation();
        s.node_pod_apply(pod(1, "n1", true));
        let g1 = s.node_generation();
        assert!(g1 > g0);
        s.node_pod_apply(pod(1, "n1", true));
        assert_eq!(s.node_generation(), g1, "an unchanged pod does not move it");
        let mut relabelled = pod(1, "n1", true);
        relabelled.labels.insert("tier".into(), "web".into());
        s.node_pod_apply(relabelled.clone());
        let g2 = s.node_generation();
        assert!(g2 > g1);
        s.peer_apply(pod(2, "n2", false));
        assert_eq!(s.node_generation(), g2, "pods elsewhere do not move it");
        s.node_pods_reset(vec![relabelled]);
        assert_eq!(
            s.node_generation(),
            g2,
            "a relist with the same pods does not move it"
        );
        s.node_pods_reset(Vec::new());
        assert!(s.node_generation() > g2);
    }

    #[test]
    fn host_network_pods_are_not_peers_and_reused_ips_stay() {
        let s = MetadataStore::new(None);
        let mut host = pod(1, "n2", false);
        host.host_network = true;
        s.peer_apply(host.clone());
        assert_eq!(s.peer_by_ip(host.ips[0]), None);
        let old = pod(2, "n2", false);
        s.peer_apply(old.clone());
        let mut new = pod(3, "n3", false);
        new.ips = old.ips.clone();
        s.peer_apply(new.clone());
        s.peer_delete(&old.uid, &old.ips);
        match s.peer_by_ip(old.ips[0]) {
            Some(Peer::Pod(p)) => assert_eq!(p.uid, new.uid),
            other => panic!("expected the new pod, got {other:?}"),
        }
    }

    #[test]
    fn services_and_backends() {
        let s = MetadataStore::new(None);
        let backend = pod(5, "n2", false);
        s.peer_apply(backend.clone());
        let svc = ServiceMeta {
            name: "api".into(),
            namespace: "shop".into(),
        };
        let vip = IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10));
        s.service_apply(svc.clone(), &[vip]);
        s.slice_apply(EndpointSliceMeta {
            namespace: "shop".into(),
            name: "api-abcde".into(),
            service: "api".into(),
            ips: backend.ips.clone(),
        });
        assert_eq!(
            s.peer_by_ip(vip),
            Some(Peer::Service(Arc::new(svc.clone())))
        );
        assert_eq!(s.service_backends(&svc).len(), 1);
        s.slice_delete("shop", "api", "api-abcde");
        assert!(s.service_backends(&svc).is_empty());
        assert_eq!(s.stats().endpoint_slices, 0);
        s.service_delete(&svc, &[vip]);
        assert_eq!(s.peer_by_ip(vip), None);
    }

    #[test]
    fn a_replicaset_listed_after_its_pods_still_names_the_deployment() {
        let s = MetadataStore::new(Some("n1".into()));
        let mut p = pod(1, "n1", true);
        p.owner = Some(Workload {
            kind: WorkloadKind::ReplicaSet,
            name: "web-6c9d7".into(),
        });
        p.service_name = "web-6c9d7".into();
        s.node_pod_apply(p.clone());
        s.peer_apply(p.clone());
        s.owner_apply(
            OwnerMap::ReplicaSets,
            &p.namespace,
            "web-6c9d7",
            Some("web"),
        );
        for got in [
            s.pod_by_uid(&p.uid),
            match s.peer_by_ip(p.ips[0]) {
                Some(Peer::Pod(q)) => Some(q),
                _ => None,
            },
        ] {
            let got = got.expect("pod");
            assert_eq!(
                got.owner.as_ref().map(|w| (w.kind, w.name.as_str())),
                Some((WorkloadKind::Deployment, "web"))
            );
            assert_eq!(got.service_name, "web");
        }
    }

    #[test]
    fn caps_count_what_they_turn_away() {
        let s = MetadataStore::new(None);
        for i in 0..(MAX_NODE_PODS as u32 + 10) {
            s.node_pod_apply(pod(i, "n1", false));
        }
        let st = s.stats();
        assert_eq!(st.node_pods, MAX_NODE_PODS);
        assert_eq!(st.dropped, 10);
    }

    /// Heap bytes per entry, measured with the allocator's per-thread counter (see the README).
    fn bytes_per(n: u32, f: impl Fn(&MetadataStore, u32)) -> f64 {
        let s = MetadataStore::new(Some("n1".into()));
        let before = crate::allocator::thread_net_allocated();
        for i in 0..n {
            f(&s, i);
        }
        let after = crate::allocator::thread_net_allocated();
        #[allow(clippy::cast_precision_loss)]
        let per = (after - before) as f64 / f64::from(n);
        drop(s);
        per
    }

    #[test]
    fn bytes_per_pod_entry() {
        for n in [10_000, 50_000] {
            let peer = bytes_per(n, |s, i| s.peer_apply(pod(i, "n2", false)));
            eprintln!("metadata: {n} peer pods: {peer:.0} heap bytes per pod");
            assert!(
                peer > 100.0 && peer < 1024.0,
                "peer pod entry: {peer} bytes"
            );
        }
        let node = bytes_per(4_000, |s, i| s.node_pod_apply(pod(i, "n1", true)));
        eprintln!(
            "metadata: 4000 node pods with labels and a container: {node:.0} heap bytes per pod"
        );
        assert!(
            node > 200.0 && node < 2048.0,
            "node pod entry: {node} bytes"
        );
    }
}

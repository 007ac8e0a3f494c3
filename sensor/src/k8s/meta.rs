//! What podtap keeps of the Kubernetes API: small projections of pods, Services and workloads, enough
//! to name both ends of a call. Filled by the watches (`k8s::watch`), read by attribution (`enrich`),
//! the capture filter (`k8s::filter`) and the exporters (a pod's resource).
//!
//! Bounded: only the fields below are kept (labels only for this node's pods), and the number of
//! entries of each kind is capped.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

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

/// The metadata cache. Cheap to share (`Arc`); readers never wait for the API server.
#[derive(Debug, Default)]
pub struct MetadataStore {
    node_name: Option<String>,
    /// Bumped whenever the pods of this node (or their labels) change: the capture filter
    /// recomputes its cgroup set when it moves.
    node_generation: AtomicU64,
}

impl MetadataStore {
    #[must_use]
    pub fn new(node_name: Option<String>) -> Self {
        Self {
            node_name,
            node_generation: AtomicU64::new(0),
        }
    }

    /// This node's name (`--node-name`, `NODE_NAME`).
    #[must_use]
    pub fn node_name(&self) -> Option<&str> {
        self.node_name.as_deref()
    }

    /// A pod by uid (this node's pods and, when known, others).
    #[must_use]
    pub fn pod_by_uid(&self, _uid: &str) -> Option<Arc<PodMeta>> {
        None
    }

    /// The pod or Service behind an address.
    #[must_use]
    pub fn peer_by_ip(&self, _ip: IpAddr) -> Option<Peer> {
        None
    }

    /// See `node_generation`.
    #[must_use]
    pub fn node_generation(&self) -> u64 {
        self.node_generation.load(Ordering::Acquire)
    }

    /// The pods of this node.
    #[must_use]
    pub fn node_pods(&self) -> Vec<Arc<PodMeta>> {
        Vec::new()
    }
}

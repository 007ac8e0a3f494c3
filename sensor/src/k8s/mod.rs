//! Kubernetes attribution: from the cgroup a packet or process belongs to, to the pod and container,
//! and from the API server, the names of both ends.
//!
//! - `cgroup`: cgroup v2 ids and paths -> pod uid, container id, runtime, QoS class (kubelet naming).
//! - `meta`: the bounded metadata cache (pods, Services, workloads) and its lookups.
//! - `names`: owner workload and `service.name` / `service.namespace` (OpenTelemetry order).
//! - `watch`: the Kubernetes API watches that fill `meta`.
//! - `filter`: the capture filter, evaluated per pod.

pub mod cgroup;
pub mod filter;
pub mod meta;
pub mod names;
pub mod watch;

pub use cgroup::{CgroupError, CgroupInfo, CgroupResolver, QosClass, Runtime};

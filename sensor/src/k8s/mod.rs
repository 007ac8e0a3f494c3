//! Kubernetes attribution: from the cgroup a packet or process belongs to, to the pod and container.
//!
//! In: cgroup v2 ids reported by the kernel programs (the inode of the cgroup directory) or cgroup
//! paths from `/proc/<pid>/cgroup`. Out: [`CgroupInfo`] values with the pod uid, container id,
//! container runtime and QoS class whenever the kubelet's cgroup naming says them.

pub mod cgroup;

pub use cgroup::{CgroupError, CgroupInfo, CgroupResolver, QosClass, Runtime};

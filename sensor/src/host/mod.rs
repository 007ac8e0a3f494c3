//! Facts about the node podtap runs on.
//!
//! In: the kernel's view of the current process and host (`/proc/self/mountinfo`, `/proc/self/status`,
//! `uname`, `/sys/kernel/btf`, a `/proc` root that may be the host's `/proc` mounted into a container).
//! Out: plain values (mount points, kernel version, capability sets, per-process facts) that `check`
//! reports and that `k8s` and the loader use to find cgroup v2, tracefs and bpffs.

pub mod caps;
pub mod kernel;
pub mod mounts;
pub mod procfs;

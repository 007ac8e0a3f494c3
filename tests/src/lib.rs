//! End-to-end test harness: "pods" made of network namespaces and kubelet-named cgroups, real servers
//! (nginx, python, dnsmasq) and clients (curl, wrk, python, dig) running inside them, and a runner for
//! the `podtap` binary that collects its JSON call records.
//!
//! Everything here needs root and a real kernel. Setup failures are returned as errors (and tests turn
//! them into panics): nothing is ever skipped silently. Every resource has a drop guard, so a failing
//! test leaves no network namespace, cgroup or process behind.

pub mod amqp;
pub mod bpf;
pub mod cgroup;
pub mod clients;
pub mod dns;
pub mod h2;
pub mod kafka;
pub mod kube_api;
pub mod netns;
pub mod otlp_receiver;
pub mod podtap;
pub mod prometheus;
pub mod records;
pub mod redis;
pub mod servers;
pub mod tcpdump;
pub mod tls;
pub mod util;

pub use cgroup::{CgroupDriver, Container, PodCgroup};
pub use netns::{Pod, PodPair};
pub use podtap::{Podtap, PodtapOutput};
pub use records::CallExpect;
pub use servers::{Nginx, PythonServer};

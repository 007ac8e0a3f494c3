//! podtap: an eBPF traffic sensor for Kubernetes nodes.
//!
//! Data flow: `capture` (kernel events or capture files) -> `flow` (connections, reassembly) ->
//! `protocols` (calls) -> `k8s` (attribution) -> `export` (sinks).
pub mod check;
pub mod host;
pub mod k8s;

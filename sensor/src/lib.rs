//! podtap: an eBPF traffic sensor for Kubernetes nodes.
//!
//! Data flow: `capture` (kernel events or capture files) -> `flow` (connections, reassembly) ->
//! `protocols` (calls) -> `enrich` (both ends named, through `k8s`) -> `export` (sinks). `app` wires
//! them per command; `host` and `check` know the node.

pub mod allocator;
pub mod app;
pub mod capture;
pub mod check;
pub mod cli;
pub mod enrich;
pub mod export;
pub mod flow;
#[doc(hidden)]
pub mod fuzz;
pub mod host;
pub mod k8s;
pub mod model;
pub mod protocols;
pub mod sensitive;
pub mod tls;

/// See `allocator`: a forged length on the wire must not abort the sensor.
#[global_allocator]
static ALLOCATOR: allocator::Allocator = allocator::Allocator;

//! podtap: an eBPF traffic sensor for Kubernetes nodes.
//!
//! Data flow: `capture` (kernel events or capture files) -> `flow` (connections, reassembly) ->
//! `protocols` (calls) -> `enrich` (both ends named) -> `export` (sinks). `app` wires them per command.

pub mod app;
pub mod capture;
pub mod cli;
pub mod enrich;
pub mod export;
pub mod flow;
pub mod model;
pub mod protocols;

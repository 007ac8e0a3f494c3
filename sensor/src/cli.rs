//! Command line: `podtap run`, `podtap replay`, `podtap check`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "podtap",
    version,
    about = "eBPF traffic sensor for Kubernetes nodes: every pod's API calls, without touching the apps"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Capture every pod's traffic on this node and print the calls.
    Run(Box<RunArgs>),
    /// Rebuild the calls in a pcap or pcapng file.
    Replay(ReplayArgs),
    /// Probe this node for what podtap needs; exit non-zero when a required item is missing.
    Check(CheckArgs),
}

/// Where the node's processes are.
#[derive(Debug, clap::Args)]
pub struct ProcArgs {
    /// The node's /proc (in a container: the host's, mounted e.g. at /host/proc).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/proc",
        env = "PODTAP_PROC_ROOT"
    )]
    pub proc_root: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Also list, per process, the TLS library podtap found and whether it can hook it (loads the
    /// eBPF programs and attaches the probes, then detaches them).
    #[arg(long)]
    pub tls: bool,
    #[command(flatten)]
    pub proc: ProcArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// One JSON call record per line.
    Jsonl,
    /// One aligned line per call, for a terminal.
    Pretty,
    /// No call output (counters only).
    None,
}

#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    /// Call output format; default: pretty on a terminal, jsonl otherwise.
    #[arg(long, value_enum, env = "PODTAP_OUTPUT")]
    pub output: Option<Output>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    /// Stop by itself after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Payload bytes copied from the kernel per packet (message heads; bodies are skipped).
    #[arg(long, value_name = "BYTES", default_value_t = podtap_common::DEFAULT_MAX_PAYLOAD,
          value_parser = clap::value_parser!(u32).range(0..=podtap_common::MAX_PAYLOAD_LIMIT as i64))]
    pub max_payload: u32,
    /// Size of the kernel ring buffer in bytes (a power of two, at least 4096).
    #[arg(long, value_name = "BYTES", default_value_t = 8 * 1024 * 1024, value_parser = ring_size)]
    pub ring_buffer_bytes: u32,
    /// Connections tracked at once; the least recently active is dropped beyond it.
    #[arg(long, default_value_t = 65_536)]
    pub max_connections: usize,
    /// A UDP flow (a socket and one peer) with no datagram for this long is closed, and a request over
    /// UDP (a DNS query) unanswered for this long is reported as `no_response`.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = positive_seconds)]
    pub udp_timeout: f64,
    /// The cgroup v2 mount to attach to (default: found in /proc/self/mountinfo).
    #[arg(long, value_name = "PATH")]
    pub cgroup_root: Option<PathBuf>,
    /// Do not hook TLS libraries (OpenSSL, Go crypto/tls): encrypted connections stay unseen.
    #[arg(long)]
    pub no_tls: bool,
    #[command(flatten)]
    pub proc: ProcArgs,
    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub otlp: OtlpArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// The Kubernetes API: names of pods, workloads and Services.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Kubernetes")]
pub struct KubernetesArgs {
    /// kubeconfig to use (default: in-cluster config, else $KUBECONFIG or ~/.kube/config; without
    /// any, podtap runs and reports pod uids only).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// This node's name (the pods watched are those with this `spec.nodeName`).
    #[arg(long, value_name = "NAME", env = "NODE_NAME")]
    pub node_name: Option<String>,
    /// Do not talk to the Kubernetes API at all.
    #[arg(long)]
    pub no_kubernetes: bool,
}

/// Which pods are captured; the rest never leave the kernel.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Capture filter")]
pub struct FilterArgs {
    /// Capture only pods of this namespace (repeatable).
    #[arg(long = "namespace", value_name = "NS")]
    pub namespaces: Vec<String>,
    /// Never capture pods of this namespace (repeatable).
    #[arg(long = "exclude-namespace", value_name = "NS")]
    pub exclude_namespaces: Vec<String>,
    /// Capture only pods whose name matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub pod: Option<String>,
    /// Capture only pods whose labels match this label selector (`app=web,tier!=db`).
    #[arg(long, value_name = "LABELS")]
    pub selector: Option<String>,
}

/// OpenTelemetry export.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "OpenTelemetry")]
pub struct OtlpArgs {
    /// OTLP receiver to send spans and metrics to (`http://collector:4317`); none: no export.
    #[arg(long, value_name = "URL", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// OTLP transport.
    #[arg(
        long,
        value_enum,
        default_value = "grpc",
        env = "OTEL_EXPORTER_OTLP_PROTOCOL"
    )]
    pub otlp_protocol: crate::export::otlp::OtlpProtocol,
    /// Full URL for spans (default: the endpoint, plus `/v1/traces` for `http`).
    #[arg(long, value_name = "URL", env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    pub otlp_traces_endpoint: Option<String>,
    /// Full URL for metrics (default: the endpoint, plus `/v1/metrics` for `http`).
    #[arg(long, value_name = "URL", env = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")]
    pub otlp_metrics_endpoint: Option<String>,
    /// Extra request headers, `key=value,key2=value2` (values percent-encoded).
    #[arg(long, value_name = "HEADERS", env = "OTEL_EXPORTER_OTLP_HEADERS")]
    pub otlp_headers: Option<String>,
    /// Time limit of one export request, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 10_000,
        env = "OTEL_EXPORTER_OTLP_TIMEOUT"
    )]
    pub otlp_timeout: u64,
    /// Seconds between two pushes of the metrics.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = positive_seconds)]
    pub otlp_metrics_interval: f64,
    /// Spans waiting for export at most (while the receiver is slow or down); more are dropped
    /// and counted.
    #[arg(long, value_name = "N", default_value_t = 8192)]
    pub otlp_queue_spans: usize,
}

/// The Prometheus endpoint.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Metrics")]
pub struct MetricsArgs {
    /// Address of the Prometheus `/metrics` endpoint (`off`: none).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9464")]
    pub metrics_listen: String,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The capture file (pcap or pcapng).
    pub file: PathBuf,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    let value: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if !(value.is_finite() && value > 0.0 && value <= 86_400.0) {
        return Err("must be a number of seconds above 0 and at most 86400".into());
    }
    Ok(value)
}

fn ring_size(text: &str) -> Result<u32, String> {
    let value: u32 = text.parse().map_err(|e| format!("{e}"))?;
    if value < 4096 || !value.is_power_of_two() {
        return Err("must be a power of two of at least 4096".into());
    }
    Ok(value)
}

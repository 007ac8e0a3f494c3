//! The `podtap` binary: parses the command line and runs the command. The only place `anyhow` lives.

use std::{
    io::{BufWriter, IsTerminal, Write},
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use anyhow::{bail, Context as _};
use clap::Parser as _;
use podtap::host::caps;
use podtap::{
    app::{self, LiveOptions},
    capture::ebpf::EbpfConfig,
    check,
    cli::{Cli, Command, Output, OutputArgs},
    export::{
        jsonl::JsonLines,
        metrics::{prometheus, Metrics, MetricsSink},
        otlp::{OtlpConfig, OtlpExporter},
        pretty::Pretty,
        Discard, Fanout, Sink,
    },
    flow::FlowConfig,
    host,
    k8s::{
        filter::{CaptureFilter, FilterMode},
        meta::MetadataStore,
        CgroupResolver,
    },
};

/// Background work (Kubernetes watches, OTLP export, the metrics endpoint) runs on a small tokio
/// runtime beside the capture loop, which stays on the main thread.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("podtap-io")
        .enable_all()
        .build()
        .context("starting the I/O runtime")
}

/// The calls' destinations of `podtap run`: the terminal, the metric store, and OTLP when configured.
fn live_sinks(
    args: &podtap::cli::RunArgs,
    runtime: &tokio::runtime::Handle,
    metadata: Option<&Arc<MetadataStore>>,
) -> anyhow::Result<Box<dyn Sink>> {
    let metrics = Metrics::new();
    if let Some(addr) = prometheus::parse_listen(&args.metrics.metrics_listen)? {
        let bound = prometheus::serve(addr, Arc::clone(&metrics), runtime)?;
        eprintln!("podtap: metrics on http://{bound}/metrics");
    }
    let mut sinks: Vec<Box<dyn Sink>> = vec![
        sink(&args.output),
        Box::new(MetricsSink(Arc::clone(&metrics))),
    ];
    let node_name = metadata.and_then(|m| m.node_name().map(str::to_owned));
    if let Some(config) =
        OtlpConfig::from_args(&args.otlp, node_name).context("OpenTelemetry export options")?
    {
        let exporter = OtlpExporter::start(config, runtime, Some(Arc::clone(&metrics)))
            .context("starting the OTLP exporter")?;
        sinks.push(Box::new(exporter));
    }
    Ok(Box::new(Fanout(sinks)))
}

fn sink(args: &OutputArgs) -> Box<dyn Sink> {
    let stdout = std::io::stdout();
    let output = args.output.unwrap_or(if stdout.is_terminal() {
        Output::Pretty
    } else {
        Output::Jsonl
    });
    let out = BufWriter::with_capacity(64 * 1024, stdout);
    match output {
        Output::Jsonl => Box::new(JsonLines::new(out)),
        Output::Pretty => Box::new(Pretty::new(out)),
        Output::None => Box::new(Discard),
    }
}

/// Fails early, naming what is missing, when podtap cannot load its programs.
fn require_privileges() -> anyhow::Result<()> {
    let have = caps::effective().context("reading this process's capabilities")?;
    let missing = caps::missing_for_podtap(have, host::kernel::version().ok());
    if !missing.load.is_empty() {
        let names: Vec<_> = missing.load.iter().map(|c| c.name()).collect();
        bail!(
            "podtap needs root or the capabilities {} to load its eBPF programs; run it with sudo \
             (or grant them), and see `podtap check` for everything else it needs",
            names.join(", ")
        );
    }
    Ok(())
}

/// The capture filter of the flags, each flag checked.
fn capture_filter(args: &podtap::cli::FilterArgs) -> anyhow::Result<CaptureFilter> {
    Ok(CaptureFilter::new(
        &args.namespaces,
        &args.exclude_namespaces,
        args.pod.as_deref(),
        args.selector.as_deref(),
    )?)
}

/// A capture filter names pods, which only the Kubernetes API knows: without it podtap would
/// silently capture nothing (or everything), so it refuses to start.
fn require_api_for_filter(
    options: &LiveOptions,
    args: &podtap::cli::KubernetesArgs,
) -> anyhow::Result<()> {
    if options.filter.mode() == FilterMode::Off || options.metadata.is_some() {
        return Ok(());
    }
    if args.no_kubernetes {
        bail!(
            "--namespace, --exclude-namespace, --pod and --selector cannot be used with \
             --no-kubernetes: the capture filter needs the pods' namespaces, names and labels from \
             the Kubernetes API"
        );
    }
    bail!(
        "the capture filter (--namespace, --exclude-namespace, --pod, --selector) needs the \
         Kubernetes API, and no configuration for it was found (in-cluster, --kubeconfig, \
         $KUBECONFIG or ~/.kube/config)"
    );
}

/// Mounts what the programs need and finds the cgroup v2 root to attach to.
fn prepare_host(cgroup_root: Option<std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    let mounts = host::mounts::ensure_mounted().context("mounting tracefs and bpffs")?;
    log::debug!("tracefs {}, bpffs {}", mounts.tracefs, mounts.bpffs);
    match cgroup_root {
        Some(path) => Ok(path),
        None => host::mounts::HostMounts::detect()
            .context("reading /proc/self/mountinfo")?
            .cgroup2
            .context(
                "no cgroup v2 mount found: podtap attaches to the cgroup v2 root (run `podtap check`)",
            ),
    }
}

/// `podtap check --tls`: loads the programs, hooks what it finds, and lists it.
fn check_tls(proc_root: &std::path::Path) -> anyhow::Result<()> {
    require_privileges()?;
    let cgroup_root = prepare_host(None)?;
    let config = EbpfConfig {
        cgroup_root,
        max_payload: podtap_common::DEFAULT_MAX_PAYLOAD,
        ring_buffer_bytes: 1 << 20,
        tls: true,
        filter: FilterMode::Off,
    };
    let rows = app::check_tls(&config, proc_root).context("hooking TLS libraries")?;
    podtap::tls::report::render(
        &rows,
        &host::procfs::ProcFs::new(proc_root),
        &mut std::io::stdout().lock(),
    )
    .context("writing the report")?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let filter = capture_filter(&args.filter)?;
            require_privileges()?;
            let cgroup_root = prepare_host(args.cgroup_root.clone())?;
            let mut cgroups =
                CgroupResolver::new(&cgroup_root, 16_384).context("cgroup resolver")?;
            let mut options = LiveOptions {
                ebpf: EbpfConfig {
                    cgroup_root,
                    max_payload: args.max_payload,
                    ring_buffer_bytes: args.ring_buffer_bytes,
                    tls: !args.no_tls,
                    filter: filter.mode(),
                },
                flow: FlowConfig {
                    max_connections: args.max_connections,
                    udp_idle_timeout_ns: Duration::from_secs_f64(args.udp_timeout)
                        .as_nanos()
                        .try_into()
                        .unwrap_or(u64::MAX),
                    ..FlowConfig::default()
                },
                duration: args.duration.map(Duration::from_secs_f64),
                proc_root: args.proc.proc_root.clone(),
                metadata: None,
                filter,
            };
            let runtime = runtime()?;
            if !args.kubernetes.no_kubernetes {
                let store = Arc::new(MetadataStore::new(args.kubernetes.node_name.clone()));
                // A few seconds for the first lists, so the first calls already have names.
                // Without any API configuration there is no store: pod uids only.
                let watching = podtap::k8s::watch::start(
                    runtime.handle(),
                    Arc::clone(&store),
                    args.kubernetes.kubeconfig.clone(),
                    Duration::from_secs(5),
                );
                if watching.is_some() {
                    options.metadata = Some(store);
                }
            }
            require_api_for_filter(&options, &args.kubernetes)?;
            let stop = Arc::new(AtomicBool::new(false));
            for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(signal, Arc::clone(&stop))
                    .context("installing signal handlers")?;
            }
            let mut sink = live_sinks(&args, runtime.handle(), options.metadata.as_ref())?;
            let summary = app::run_live(
                &options,
                &mut cgroups,
                sink.as_mut(),
                &stop,
                &mut std::io::stderr(),
            )
            .context("podtap run")?;
            eprintln!("{}", summary.line());
        }
        Command::Replay(args) => {
            let mut sink = sink(&args.output);
            let summary = app::replay(&args.file, FlowConfig::default(), sink.as_mut())
                .context("podtap replay")?;
            eprintln!("{}", summary.line());
        }
        Command::Check(args) => {
            let report = check::run(&check::CheckOptions::default());
            report
                .render(&mut std::io::stdout().lock())
                .context("writing the report")?;
            let mut code = report.exit_code();
            if args.tls {
                if let Err(error) = check_tls(&args.proc.proc_root) {
                    eprintln!("podtap: TLS check: {error:#}");
                    code = code.max(1);
                }
            }
            std::process::exit(code);
        }
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

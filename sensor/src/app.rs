//! Wires the stages for each command: capture source -> flow table -> attribution -> sink, in one
//! thread (the ring buffer is drained in batches; each batch's calls are written before the next poll),
//! and reports podtap's own counters at the end.

use std::{
    io::Write,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::{
    capture::{
        ebpf::{CaptureError, EbpfCapture, EbpfConfig, KernelCounters},
        pcap::{self, PcapReadError, PcapStats},
    },
    capture::{
        filter::{FilterSync, FilterSyncStats},
        Event, ProcessChange,
    },
    enrich::{enrich_named, CgroupLookup, Names, NoCgroups},
    export::Sink,
    flow::{FlowCall, FlowConfig, FlowStats, FlowTable, SkipRequest},
    host::procfs::ProcFs,
    k8s::{
        filter::{CaptureFilter, FilterMode},
        meta::MetadataStore,
    },
    tls::{TlsHookStats, TlsHooks},
};

/// How long the reader sleeps when the ring buffer is empty. The kernel wakes it earlier only when a
/// quarter of the ring is waiting, so this bounds how late a quiet node's calls appear.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Pcap(#[from] PcapReadError),
    #[error("writing calls: {0}")]
    Output(#[source] std::io::Error),
    #[error("a capture filter (--namespace, --exclude-namespace, --pod, --selector) needs the Kubernetes API to know which pods it means")]
    FilterWithoutMetadata,
}

/// Everything `podtap run` needs.
pub struct LiveOptions {
    pub ebpf: EbpfConfig,
    pub flow: FlowConfig,
    pub duration: Option<Duration>,
    /// The `/proc` tree of the node's processes (TLS libraries are found through it).
    pub proc_root: std::path::PathBuf,
    /// Names from the Kubernetes API (none: pod uids only).
    pub metadata: Option<Arc<MetadataStore>>,
    /// Which pods are captured.
    pub filter: CaptureFilter,
}

/// Counters of one run, printed as the summary line.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub calls_written: u64,
    pub flow: FlowStats,
    pub kernel: KernelCounters,
    pub decode_errors: u64,
    pub skip_errors: u64,
    pub pcap: PcapStats,
    pub tls: TlsHookStats,
    pub filter: FilterSyncStats,
    /// Connections and UDP flows in the table at the last tick.
    pub connections_tracked: u64,
}

impl Summary {
    /// One line, `key=value` pairs, for stderr at exit.
    #[must_use]
    pub fn line(&self) -> String {
        let f = &self.flow;
        let k = &self.kernel;
        format!(
            "podtap: summary calls={} connections={} unrecognised_connections={} unrecognised_udp_sockets={} mirrored_connections={} calls_seen_twice={} \
             packets={} ring_buffer_full={} owner_ring_buffer_full={} payload_truncated={} bytes_skipped={} \
             gaps={} gap_bytes={} retransmits={} out_of_order={} stream_overflow={} malformed={} pending_overflow={} unmatched_responses={} \
             evicted={} idle_closed={} decode_errors={} skip_errors={} frames={} not_tcp_udp={} ip_fragments={} undecodable_frames={} \
             unsupported_link_frames={} snaplen_cut_frames={} tls_records={} tls_unbound={} tls_ring_buffer_full={} \
             tls_files_hooked={} tls_files_unhookable={} tls_probes={} process_ring_buffer_full={} \
             filtered={} filter_cgroups={} filter_pods_without_cgroup={} filter_map_full={}",
            self.calls_written,
            f.connections_opened,
            f.connections_unrecognised,
            f.udp_sockets_unrecognised,
            f.connections_mirrored,
            f.calls_seen_twice,
            k.packets,
            k.ring_buffer_full,
            k.owner_ring_buffer_full,
            k.payload_truncated,
            k.bytes_skipped,
            f.streams.gaps,
            f.streams.gap_bytes,
            f.streams.retransmitted_segments,
            f.streams.out_of_order_segments,
            f.streams.overflow_drops,
            f.parsers.malformed,
            f.parsers.pending_overflow,
            f.parsers.unmatched_responses,
            f.connections_evicted,
            f.connections_idle_closed,
            self.decode_errors,
            self.skip_errors,
            self.pcap.frames,
            self.pcap.not_tcp_udp,
            self.pcap.ip_fragments,
            self.pcap.undecodable,
            self.pcap.unsupported_link,
            self.pcap.snaplen_cut,
            k.tls_records,
            k.tls_unbound,
            k.tls_ring_buffer_full,
            self.tls.files_hooked,
            self.tls.files_unhookable,
            self.tls.probes_attached,
            k.process_ring_buffer_full,
            k.filtered,
            self.filter.listed,
            self.filter.pods_without_cgroup,
            self.filter.map_full,
        )
    }
}

fn write_calls(
    calls: &mut Vec<FlowCall>,
    cgroups: &mut dyn CgroupLookup,
    names: Option<Names<'_>>,
    sink: &mut dyn Sink,
    written: &mut u64,
) -> Result<(), AppError> {
    for call in calls.drain(..) {
        sink.write(&enrich_named(call, cgroups, names))
            .map_err(AppError::Output)?;
        *written += 1;
    }
    Ok(())
}

/// Runs the live capture until `stop` is set or the duration is over.
///
/// # Errors
/// Loading or attaching the programs fails, or the output breaks.
pub fn run_live(
    options: &LiveOptions,
    cgroups: &mut dyn CgroupLookup,
    sink: &mut dyn Sink,
    stop: &Arc<AtomicBool>,
    ready: &mut dyn Write,
) -> Result<Summary, AppError> {
    // The kernel's filter mode is fixed at load: it comes from the filter, not from the caller.
    let mode = options.filter.mode();
    let mut filter = match (mode, &options.metadata) {
        (FilterMode::Off, _) => None,
        (_, None) => return Err(AppError::FilterWithoutMetadata),
        (_, Some(metadata)) => Some((
            FilterSync::new(&options.ebpf.cgroup_root, options.filter.clone()),
            Arc::clone(metadata),
        )),
    };
    let mut capture = EbpfCapture::start(&EbpfConfig {
        filter: mode,
        ..options.ebpf.clone()
    })?;
    // The pods known now are listed before podtap says it captures.
    if let Some((sync, metadata)) = &mut filter {
        sync.sync(
            metadata.node_generation(),
            &metadata.node_pods(),
            &mut capture,
            Instant::now(),
        );
    }
    let mut tls = options
        .ebpf
        .tls
        .then(|| TlsHooks::new(ProcFs::new(&options.proc_root)));
    if let Some(tls) = &mut tls {
        // Processes already running are hooked before podtap says it captures.
        tls.scan_all(&mut capture);
    }
    let mut tls_work: Vec<TlsWork> = Vec::new();
    let names = options.metadata.as_deref().map(|store| Names {
        store,
        filter: &options.filter,
    });
    let _ = writeln!(ready, "podtap: capturing");
    let _ = ready.flush();
    let mut flow = FlowTable::new(options.flow);
    let mut calls = Vec::new();
    let mut skips: Vec<SkipRequest> = Vec::new();
    let mut summary = Summary::default();
    let started = Instant::now();
    let mut last_tick = Instant::now();
    let result = loop {
        if stop.load(Ordering::Relaxed) || options.duration.is_some_and(|d| started.elapsed() >= d)
        {
            break Ok(());
        }
        let polled = capture.poll(POLL_INTERVAL, |event| {
            flow.handle(event, &mut calls, &mut skips);
            if tls.is_some() {
                tls_work.extend(TlsWork::of(event));
            }
        });
        if let Err(error) = polled {
            break Err(AppError::from(error));
        }
        capture.apply_skips(&skips);
        skips.clear();
        if let Some((sync, metadata)) = &mut filter {
            let generation = metadata.node_generation();
            let now = Instant::now();
            if sync.due(generation, now) {
                sync.sync(generation, &metadata.node_pods(), &mut capture, now);
            }
        }
        if let Some(tls) = &mut tls {
            let now = Instant::now();
            for work in tls_work.drain(..) {
                match work {
                    TlsWork::Exec(pid) => tls.exec(pid, now),
                    TlsWork::Exit(pid) => tls.exit(pid),
                    TlsWork::SocketUsed(pid) => tls.socket_used(pid, now),
                }
            }
            tls.run_due(&mut capture, now);
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            flow.tick(crate::model::unix_now(), &mut calls, &mut skips);
            capture.apply_skips(&skips);
            skips.clear();
            summary.flow = flow.stats();
            summary.connections_tracked = flow.connections() as u64;
            summary.kernel = capture.counters();
            summary.decode_errors = capture.decode_errors;
            summary.skip_errors = capture.skip_errors;
            if let Some(tls) = &tls {
                summary.tls = tls.stats();
            }
            if let Some((sync, _)) = &filter {
                summary.filter = sync.stats();
            }
            sink.health(&summary);
        }
        if let Err(error) =
            write_calls(&mut calls, cgroups, names, sink, &mut summary.calls_written)
                .and_then(|()| sink.flush().map_err(AppError::Output))
        {
            break Err(error);
        }
    };
    // Whatever is still in the ring buffer, then every open connection's pending requests.
    let _ = capture.poll(Duration::ZERO, |event| {
        flow.handle(event, &mut calls, &mut skips)
    });
    flow.finish(&mut calls, &mut skips);
    let written = write_calls(&mut calls, cgroups, names, sink, &mut summary.calls_written)
        .and_then(|()| sink.flush().map_err(AppError::Output));
    summary.flow = flow.stats();
    summary.kernel = capture.counters();
    summary.decode_errors = capture.decode_errors;
    summary.skip_errors = capture.skip_errors;
    if let Some((sync, _)) = &filter {
        summary.filter = sync.stats();
    }
    if let Some(tls) = tls {
        summary.tls = tls.stats();
        tls.shutdown();
    }
    drop(capture);
    result.and(written).map(|()| summary)
}

/// Hooks the TLS code of every process once, and says what it found (`podtap check --tls`).
///
/// # Errors
/// Loading the programs fails.
pub fn check_tls(
    config: &EbpfConfig,
    proc_root: &Path,
) -> Result<Vec<crate::tls::ReportRow>, AppError> {
    let mut capture = EbpfCapture::start(config)?;
    let mut tls = TlsHooks::new(ProcFs::new(proc_root));
    tls.scan_all(&mut capture);
    let report = tls.report();
    tls.shutdown();
    Ok(report)
}

/// What a kernel event asks of the TLS hooks (taken out of the poll, which holds the capture).
enum TlsWork {
    Exec(u32),
    Exit(u32),
    SocketUsed(u32),
}

impl TlsWork {
    fn of(event: &Event<'_>) -> Option<Self> {
        match event {
            Event::Process(ProcessChange::Exec(pid)) => Some(TlsWork::Exec(*pid)),
            Event::Process(ProcessChange::Exit(pid)) => Some(TlsWork::Exit(*pid)),
            Event::Owner(owner) => Some(TlsWork::SocketUsed(owner.pid)),
            Event::Packet(_) => None,
        }
    }
}

/// Rebuilds the calls of a capture file.
///
/// # Errors
/// The file cannot be read, or the output breaks.
pub fn replay(
    path: &Path,
    flow_config: FlowConfig,
    sink: &mut dyn Sink,
) -> Result<Summary, AppError> {
    let file = std::fs::File::open(path).map_err(|source| PcapReadError::Open {
        path: path.to_owned(),
        source,
    })?;
    replay_from(path, file, flow_config, sink, &mut |_| {})
}

/// Rebuilds the calls of a capture read from `input` (`path` names it in errors). `inspect` sees the
/// flow table after every event (the fuzz targets check its bounds there).
///
/// # Errors
/// The input is not a readable capture, or the output breaks.
pub fn replay_from(
    path: &Path,
    input: impl std::io::Read,
    flow_config: FlowConfig,
    sink: &mut dyn Sink,
    inspect: &mut dyn FnMut(&FlowTable),
) -> Result<Summary, AppError> {
    let mut flow = FlowTable::new(flow_config);
    let mut calls = Vec::new();
    let mut skips = Vec::new();
    let mut summary = Summary::default();
    let mut output: Result<(), AppError> = Ok(());
    let mut cgroups = NoCgroups;
    let mut latest: u64 = 0;
    summary.pcap = pcap::read_from(path, input, |event| {
        if let crate::capture::Event::Packet(packet) = event {
            // Idle connections close on the file's own clock.
            if packet.ts >= latest.saturating_add(1_000_000_000) {
                latest = packet.ts;
                flow.tick(packet.ts, &mut calls, &mut skips);
            }
        }
        flow.handle(event, &mut calls, &mut skips);
        skips.clear();
        inspect(&flow);
        if output.is_ok() {
            output = write_calls(
                &mut calls,
                &mut cgroups,
                None,
                sink,
                &mut summary.calls_written,
            );
        }
    })?;
    output?;
    flow.finish(&mut calls, &mut skips);
    inspect(&flow);
    write_calls(
        &mut calls,
        &mut cgroups,
        None,
        sink,
        &mut summary.calls_written,
    )?;
    sink.flush().map_err(AppError::Output)?;
    summary.flow = flow.stats();
    Ok(summary)
}

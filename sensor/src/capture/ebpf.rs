//! The live source: loads podtap's kernel programs, attaches them, and reads their ring buffer.
//!
//! Hooks (minimum kernel): `cgroup_skb` ingress and egress on the cgroup v2 root (4.10; ring buffer
//! 5.8), `tp_btf` on `sock_send_length` / `sock_recv_length` (6.3); for TLS, the tracepoints
//! `sched_process_exec` / `sched_process_exit` and uprobes with attach cookies (5.15), attached file by
//! file as `tls::TlsHooks` finds TLS code. Nothing is pinned: the programs are detached when the
//! `EbpfCapture` is dropped, the uprobes when their `UprobeLink`s are (`detach_all`).

use std::{fs::File, os::fd::AsRawFd, path::PathBuf, time::Duration};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope},
        BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, TracePoint, UProbe,
    },
    Btf, Ebpf, EbpfLoader,
};
use podtap_common::{
    names, SkipKey, SkipValue, COUNTER_COUNT, MAX_PAYLOAD_LIMIT, SKIP_ALL, SKIP_UNTIL_SEQ,
};

use super::{
    decode,
    filter::{FilterMap, FilterMapError},
    Event,
};
use crate::flow::{SkipKind, SkipRequest};
use crate::k8s::filter::FilterMode;
use crate::model::Direction;

/// The kernel object built by `sensor/build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/podtap"));

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("--max-payload {0} is out of range (0..={MAX_PAYLOAD_LIMIT})")]
    MaxPayload(u32),
    #[error("loading podtap's eBPF object: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("eBPF program {name} is missing from the object")]
    MissingProgram { name: &'static str },
    #[error("eBPF map {name} is missing from the object")]
    MissingMap { name: &'static str },
    #[error("eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("opening the cgroup v2 root {path}: {source}")]
    CgroupRoot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the kernel BTF (/sys/kernel/btf/vmlinux): {0}")]
    Btf(#[source] aya::BtfError),
    #[error("waiting on the ring buffer: {0}")]
    Poll(#[source] std::io::Error),
    #[error("TLS capture is off (--no-tls)")]
    TlsOff,
    #[error("attaching {program} to {path} at offset {offset:#x}: {source}")]
    Uprobe {
        program: &'static str,
        path: Box<std::path::Path>,
        offset: u64,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
}

/// The uprobe programs of TLS capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsProgram {
    /// OpenSSL function entry (uprobe).
    SslEntry,
    /// OpenSSL function return (uretprobe).
    SslReturn,
    /// Go `crypto/tls` function entry.
    GoEntry,
    /// A RET instruction of the same.
    GoReturn,
}

impl TlsProgram {
    const ALL: [TlsProgram; 4] = [
        TlsProgram::SslEntry,
        TlsProgram::SslReturn,
        TlsProgram::GoEntry,
        TlsProgram::GoReturn,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            TlsProgram::SslEntry => names::PROG_SSL_ENTRY,
            TlsProgram::SslReturn => names::PROG_SSL_RETURN,
            TlsProgram::GoEntry => names::PROG_GO_TLS_ENTRY,
            TlsProgram::GoReturn => names::PROG_GO_TLS_RETURN,
        }
    }
}

/// One attached uprobe, owned: dropping it detaches it. Detaching costs the kernel a grace period
/// (about 0.3 s measured here, per probe, in the closing thread), so many are detached at once with
/// `detach_all`, never one by one on the capture thread.
#[derive(Debug)]
pub struct UprobeLink(#[allow(dead_code)] aya::programs::uprobe::UProbeLink);

/// Most threads `detach_all` closes probes on: the grace periods they wait for overlap.
const DETACH_THREADS: usize = 64;

/// Detaches `links`, in parallel; returns when all are gone.
pub fn detach_all(links: Vec<UprobeLink>) {
    if links.is_empty() {
        return;
    }
    let threads = links.len().min(DETACH_THREADS);
    let mut shares: Vec<Vec<UprobeLink>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, link) in links.into_iter().enumerate() {
        shares[i % threads].push(link);
    }
    std::thread::scope(|scope| {
        for share in shares {
            scope.spawn(move || drop(share));
        }
    });
}

/// How to load the programs.
#[derive(Clone, Debug)]
pub struct EbpfConfig {
    /// Mount point of the cgroup v2 hierarchy (its root is where the capture programs attach).
    pub cgroup_root: PathBuf,
    /// Payload bytes copied per segment.
    pub max_payload: u32,
    /// Ring buffer size in bytes (a power of two multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// Load the TLS programs (uprobes are attached later, by `tls::TlsHooks`).
    pub tls: bool,
    /// How the programs apply the capture filter map (`Off`: they do not look at it).
    pub filter: FilterMode,
}

/// Kernel-side counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub packets: u64,
    pub ring_buffer_full: u64,
    pub payload_truncated: u64,
    pub bytes_skipped: u64,
    pub bytes_not_parsed: u64,
    pub owner_ring_buffer_full: u64,
    pub tls_records: u64,
    pub tls_ring_buffer_full: u64,
    pub tls_unbound: u64,
    pub process_ring_buffer_full: u64,
    /// Records the capture filter kept in the kernel.
    pub filtered: u64,
}

/// The loaded and attached programs with their ring buffer.
pub struct EbpfCapture {
    ring: RingBuf<MapData>,
    /// Process exec/exit records (TLS capture only).
    process_ring: Option<RingBuf<MapData>>,
    skip: BpfHashMap<MapData, SkipKey, SkipValue>,
    counters: PerCpuArray<MapData, u64>,
    /// The capture filter's pod cgroups (only with a filter).
    filter_cgroups: Option<BpfHashMap<MapData, u64, u8>>,
    clock_offset: i64,
    /// Records that did not decode.
    pub decode_errors: u64,
    /// Kernel skip-map updates that failed.
    pub skip_errors: u64,
    tls: bool,
    // Declared last: dropped last, after the maps above, detaching every program.
    _ebpf: Ebpf,
}

impl EbpfCapture {
    /// Loads and attaches everything.
    ///
    /// # Errors
    /// Any load or attach failure, with the program or map it concerns.
    pub fn start(config: &EbpfConfig) -> Result<Self, CaptureError> {
        if config.max_payload as usize > MAX_PAYLOAD_LIMIT {
            return Err(CaptureError::MaxPayload(config.max_payload));
        }
        let self_tgid = std::process::id();
        // Wake the reader once a quarter of the ring is waiting; otherwise it polls on a timer.
        let wakeup_bytes = u64::from(config.ring_buffer_bytes / 4);
        // Without it only stack-ABI Go (< 1.17) cannot be followed; everything else works.
        let fsbase_offset = if config.tls {
            crate::tls::kernel_offsets::task_fsbase(std::path::Path::new(
                crate::tls::kernel_offsets::VMLINUX_BTF,
            ))
            .unwrap_or_else(|error| {
                log::warn!("TLS of Go < 1.17 cannot be followed: {error}");
                0
            })
        } else {
            0
        };
        let filter_mode = match config.filter {
            FilterMode::Off => podtap_common::FILTER_MODE_OFF,
            FilterMode::Include => podtap_common::FILTER_MODE_INCLUDE,
            FilterMode::Exclude => podtap_common::FILTER_MODE_EXCLUDE,
        };
        let mut ebpf = EbpfLoader::new()
            .override_global(names::GLOBAL_TASK_FSBASE_OFFSET, &fsbase_offset, true)
            .override_global(names::GLOBAL_MAX_PAYLOAD, &config.max_payload, true)
            .override_global(names::GLOBAL_SELF_TGID, &self_tgid, true)
            .override_global(names::GLOBAL_WAKEUP_BYTES, &wakeup_bytes, true)
            .override_global(names::GLOBAL_FILTER_MODE, &filter_mode, true)
            .map_max_entries(names::MAP_EVENTS, config.ring_buffer_bytes)
            .load(OBJECT)
            .map_err(CaptureError::Load)?;

        let btf = Btf::from_sys_fs().map_err(CaptureError::Btf)?;
        for (name, tracepoint) in [
            (names::PROG_SEND, "sock_send_length"),
            (names::PROG_RECV, "sock_recv_length"),
        ] {
            let program: &mut BtfTracePoint = program(&mut ebpf, name)?;
            program
                .load(tracepoint, &btf)
                .map_err(|source| CaptureError::Program { name, source })?;
            program
                .attach()
                .map_err(|source| CaptureError::Program { name, source })?;
        }

        if config.tls {
            for tls_program in TlsProgram::ALL {
                let name = tls_program.name();
                let program: &mut UProbe = program(&mut ebpf, name)?;
                program
                    .load()
                    .map_err(|source| CaptureError::Program { name, source })?;
            }
            for (name, tracepoint) in [
                (names::PROG_EXEC, "sched_process_exec"),
                (names::PROG_EXIT, "sched_process_exit"),
            ] {
                let program: &mut TracePoint = program(&mut ebpf, name)?;
                program
                    .load()
                    .map_err(|source| CaptureError::Program { name, source })?;
                program
                    .attach("sched", tracepoint)
                    .map_err(|source| CaptureError::Program { name, source })?;
            }
        }

        let cgroup =
            File::open(&config.cgroup_root).map_err(|source| CaptureError::CgroupRoot {
                path: config.cgroup_root.clone(),
                source,
            })?;
        for (name, attach) in [
            (names::PROG_EGRESS, CgroupSkbAttachType::Egress),
            (names::PROG_INGRESS, CgroupSkbAttachType::Ingress),
        ] {
            let program: &mut CgroupSkb = program(&mut ebpf, name)?;
            program
                .load()
                .map_err(|source| CaptureError::Program { name, source })?;
            program
                .attach(&cgroup, attach, CgroupAttachMode::default())
                .map_err(|source| CaptureError::Program { name, source })?;
        }

        let ring =
            RingBuf::try_from(take_map(&mut ebpf, names::MAP_EVENTS)?).map_err(|source| {
                CaptureError::Map {
                    name: names::MAP_EVENTS,
                    source,
                }
            })?;
        let process_ring = if config.tls {
            Some(
                RingBuf::try_from(take_map(&mut ebpf, names::MAP_PROCESS_EVENTS)?).map_err(
                    |source| CaptureError::Map {
                        name: names::MAP_PROCESS_EVENTS,
                        source,
                    },
                )?,
            )
        } else {
            None
        };
        let skip =
            BpfHashMap::try_from(take_map(&mut ebpf, names::MAP_SKIP)?).map_err(|source| {
                CaptureError::Map {
                    name: names::MAP_SKIP,
                    source,
                }
            })?;
        let counters =
            PerCpuArray::try_from(take_map(&mut ebpf, names::MAP_COUNTERS)?).map_err(|source| {
                CaptureError::Map {
                    name: names::MAP_COUNTERS,
                    source,
                }
            })?;
        let filter_cgroups = if config.filter == FilterMode::Off {
            None
        } else {
            Some(
                BpfHashMap::try_from(take_map(&mut ebpf, names::MAP_FILTER_CGROUPS)?).map_err(
                    |source| CaptureError::Map {
                        name: names::MAP_FILTER_CGROUPS,
                        source,
                    },
                )?,
            )
        };
        Ok(Self {
            ring,
            process_ring,
            skip,
            counters,
            filter_cgroups,
            clock_offset: clock_offset(),
            decode_errors: 0,
            skip_errors: 0,
            tls: config.tls,
            _ebpf: ebpf,
        })
    }

    /// Waits up to `timeout` for records, then hands every available record to `handler`.
    ///
    /// # Errors
    /// Only when waiting itself fails; undecodable records are counted in `decode_errors`.
    pub fn poll(
        &mut self,
        timeout: Duration,
        mut handler: impl FnMut(&Event<'_>),
    ) -> Result<usize, CaptureError> {
        let pollfd = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = [pollfd(self.ring.as_raw_fd()), pollfd(-1)];
        if let Some(process_ring) = &self.process_ring {
            fds[1] = pollfd(process_ring.as_raw_fd());
        }
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: two valid pollfds (a negative fd is ignored) for the duration of the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, millis) };
        if ready < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(CaptureError::Poll(error));
            }
        }
        // Process news first: a new program is looked at before its traffic is.
        let mut handled = 0;
        if let Some(process_ring) = &mut self.process_ring {
            handled += drain(
                process_ring,
                self.clock_offset,
                &mut self.decode_errors,
                &mut handler,
            );
        }
        handled += drain(
            &mut self.ring,
            self.clock_offset,
            &mut self.decode_errors,
            &mut handler,
        );
        Ok(handled)
    }

    /// Applies the flow table's requests to the kernel's skip map.
    pub fn apply_skips(&mut self, requests: &[SkipRequest]) {
        for request in requests {
            let key = SkipKey {
                cookie: request.cookie,
                direction: u32::from(match request.direction {
                    Direction::Egress => podtap_common::DIR_EGRESS,
                    Direction::Ingress => podtap_common::DIR_INGRESS,
                }),
                layer: if request.tls {
                    podtap_common::LAYER_TLS
                } else {
                    podtap_common::LAYER_PACKETS
                },
            };
            let result = match request.kind {
                SkipKind::UntilSeq(seq) => self.skip.insert(
                    key,
                    SkipValue {
                        mode: SKIP_UNTIL_SEQ,
                        until_seq: seq,
                    },
                    0,
                ),
                SkipKind::All => self.skip.insert(
                    key,
                    SkipValue {
                        mode: SKIP_ALL,
                        until_seq: 0,
                    },
                    0,
                ),
                SkipKind::Forget => match self.skip.remove(&key) {
                    Err(aya::maps::MapError::KeyNotFound) => Ok(()),
                    other => other,
                },
            };
            if result.is_err() {
                self.skip_errors += 1;
            }
        }
    }

    /// The kernel's counters, summed over CPUs.
    #[must_use]
    pub fn counters(&self) -> KernelCounters {
        let mut sums = [0u64; COUNTER_COUNT as usize];
        for (index, sum) in (0..COUNTER_COUNT).zip(sums.iter_mut()) {
            if let Ok(values) = self.counters.get(&index, 0) {
                *sum = values.iter().sum();
            }
        }
        KernelCounters {
            packets: sums[podtap_common::COUNTER_PACKETS as usize],
            ring_buffer_full: sums[podtap_common::COUNTER_RINGBUF_FULL as usize],
            payload_truncated: sums[podtap_common::COUNTER_PAYLOAD_TRUNCATED as usize],
            bytes_skipped: sums[podtap_common::COUNTER_BYTES_SKIPPED as usize],
            bytes_not_parsed: sums[podtap_common::COUNTER_NOT_PARSED as usize],
            owner_ring_buffer_full: sums[podtap_common::COUNTER_OWNER_RINGBUF_FULL as usize],
            tls_records: sums[podtap_common::COUNTER_TLS_RECORDS as usize],
            tls_ring_buffer_full: sums[podtap_common::COUNTER_TLS_RINGBUF_FULL as usize],
            tls_unbound: sums[podtap_common::COUNTER_TLS_UNBOUND as usize],
            process_ring_buffer_full: sums[podtap_common::COUNTER_PROCESS_RINGBUF_FULL as usize],
            filtered: sums[podtap_common::COUNTER_FILTERED as usize],
        }
    }

    /// Attaches a TLS program at file offset `offset` of `target` for every process that maps the
    /// file; its probes see `cookie` (`TLS_OP_*` and flags).
    ///
    /// # Errors
    /// TLS capture is off, or the kernel refuses the probe (a path it cannot resolve, an offset
    /// outside the file).
    pub fn attach_uprobe(
        &mut self,
        tls_program: TlsProgram,
        target: &std::path::Path,
        offset: u64,
        cookie: u64,
    ) -> Result<UprobeLink, CaptureError> {
        if !self.tls {
            return Err(CaptureError::TlsOff);
        }
        let name = tls_program.name();
        let program: &mut UProbe = program(&mut self._ebpf, name)?;
        let point = UProbeAttachPoint {
            location: UProbeAttachLocation::AbsoluteOffset(offset),
            cookie: Some(cookie),
        };
        let id = program
            .attach(point, target, UProbeScope::AllProcesses)
            .map_err(|source| CaptureError::Uprobe {
                program: name,
                path: target.into(),
                offset,
                source: Box::new(source),
            })?;
        let link = program
            .take_link(id)
            .map_err(|source| CaptureError::Program { name, source })?;
        Ok(UprobeLink(link))
    }
}

impl FilterMap for EbpfCapture {
    fn insert(&mut self, cgroup_id: u64) -> Result<(), FilterMapError> {
        let map = self
            .filter_cgroups
            .as_mut()
            .ok_or_else(|| FilterMapError::Other("loaded without a capture filter".into()))?;
        map.insert(cgroup_id, 1, 0).map_err(|error| match &error {
            // A hash map at max_entries refuses new keys with E2BIG.
            aya::maps::MapError::SyscallError(e)
                if e.io_error.raw_os_error() == Some(libc::E2BIG) =>
            {
                FilterMapError::Full
            }
            _ => FilterMapError::Other(error.to_string()),
        })
    }

    fn remove(&mut self, cgroup_id: u64) -> Result<(), FilterMapError> {
        let map = self
            .filter_cgroups
            .as_mut()
            .ok_or_else(|| FilterMapError::Other("loaded without a capture filter".into()))?;
        match map.remove(&cgroup_id) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            Err(error) => Err(FilterMapError::Other(error.to_string())),
        }
    }
}

/// Hands every record waiting in `ring` to `handler`; counts the ones that do not decode.
fn drain(
    ring: &mut RingBuf<MapData>,
    clock_offset: i64,
    decode_errors: &mut u64,
    handler: &mut impl FnMut(&Event<'_>),
) -> usize {
    let mut handled = 0;
    while let Some(record) = ring.next() {
        match decode(&record, clock_offset) {
            Ok(event) => handler(&event),
            Err(error) => {
                log::debug!("undecodable ring buffer record: {error}");
                *decode_errors += 1;
            }
        }
        handled += 1;
    }
    handled
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, CaptureError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or(CaptureError::MissingProgram { name })?;
    program
        .try_into()
        .map_err(|source| CaptureError::Program { name, source })
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, CaptureError> {
    ebpf.take_map(name).ok_or(CaptureError::MissingMap { name })
}

/// Unix time minus monotonic time, in nanoseconds: added to `bpf_ktime_get_ns()` values.
fn clock_offset() -> i64 {
    let now = |clock| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid timespec out-pointer.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    };
    now(libc::CLOCK_REALTIME) - now(libc::CLOCK_MONOTONIC)
}

//! The live source: loads podtap's kernel programs, attaches them, and reads their ring buffer.
//!
//! Hooks (minimum kernel): `cgroup_skb` ingress and egress on the cgroup v2 root (4.10; ring buffer
//! 5.8), `tp_btf` on `sock_send_length` / `sock_recv_length` (6.3). Everything is detached when the
//! `EbpfCapture` is dropped (links are owned by it, nothing is pinned).

use std::{fs::File, os::fd::AsRawFd, path::PathBuf, time::Duration};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType},
    Btf, Ebpf, EbpfLoader,
};
use podtap_common::{
    names, SkipKey, SkipValue, COUNTER_COUNT, MAX_PAYLOAD_LIMIT, SKIP_ALL, SKIP_UNTIL_SEQ,
};

use super::{decode, Event};
use crate::flow::{SkipKind, SkipRequest};
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
}

/// The loaded and attached programs with their ring buffer.
pub struct EbpfCapture {
    ring: RingBuf<MapData>,
    skip: BpfHashMap<MapData, SkipKey, SkipValue>,
    counters: PerCpuArray<MapData, u64>,
    clock_offset: i64,
    /// Records that did not decode.
    pub decode_errors: u64,
    /// Kernel skip-map updates that failed.
    pub skip_errors: u64,
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
        let mut ebpf = EbpfLoader::new()
            .override_global(names::GLOBAL_MAX_PAYLOAD, &config.max_payload, true)
            .override_global(names::GLOBAL_SELF_TGID, &self_tgid, true)
            .override_global(names::GLOBAL_WAKEUP_BYTES, &wakeup_bytes, true)
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
        Ok(Self {
            ring,
            skip,
            counters,
            clock_offset: clock_offset(),
            decode_errors: 0,
            skip_errors: 0,
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
        let mut fds = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut fds, 1, millis) };
        if ready < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(CaptureError::Poll(error));
            }
        }
        let mut handled = 0;
        while let Some(record) = self.ring.next() {
            match decode(&record, self.clock_offset) {
                Ok(event) => handler(&event),
                Err(error) => {
                    log::debug!("undecodable ring buffer record: {error}");
                    self.decode_errors += 1;
                }
            }
            handled += 1;
        }
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
                layer: podtap_common::LAYER_PACKETS,
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
        }
    }
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

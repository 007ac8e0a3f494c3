//! podtap's kernel programs.
//!
//! - `podtap_egress` / `podtap_ingress` (`cgroup_skb`, attached to the cgroup v2 root; kernel >= 4.10,
//!   ring buffer >= 5.8): every TCP segment of every socket on the node that carries payload or
//!   SYN/FIN/RST, and every non-empty UDP datagram, becomes one `PacketHeader` record with a capped
//!   payload prefix. Bodies userspace asked to skip (the `SKIP` map) are not copied; sockets it gave up
//!   on send no payload (UDP: nothing at all).
//! - `podtap_sock_send` / `podtap_sock_recv` (`tp_btf` on `sock_send_length` / `sock_recv_length`,
//!   kernel >= 6.3): in the context of the process that sends or receives, tie the socket cookie to
//!   that process (`SockOwnerEvent`), once per socket and owner. Inside a hooked TLS call they also tie
//!   the call's TLS object to the socket (`TLS_CONNS`): that is how plaintext finds its connection
//!   without kprobes.
//! - `podtap_ssl_entry` / `podtap_ssl_return` (uprobe / uretprobe on OpenSSL's `SSL_write`, `SSL_read`,
//!   `SSL_write_ex`, `SSL_read_ex`) and `podtap_go_tls_entry` / `podtap_go_tls_return` (uprobes on Go's
//!   `crypto/tls.(*Conn).Write/Read` and on each of their RET instructions: uretprobes break Go's
//!   moving stacks): the plaintext each call passed, as a `PacketHeader` record of kind
//!   `EVENT_TLS_DATA` on the socket the call used.
//! - `podtap_exec` / `podtap_exit` (tracepoints `sched_process_exec` / `sched_process_exit`): new
//!   programs to look at for TLS libraries, and processes whose state can go.
//!
//! Capture filter (`--namespace`, `--pod`, ...): with `FILTER_MODE` set at load time, the packet, TLS
//! and owner programs look up the cgroup of the socket or process and its ancestors (up to
//! `FILTER_MAX_LEVEL`) in `FILTER_CGROUPS`, which userspace fills with pod cgroups; records of pods
//! left out are counted (`COUNTER_FILTERED`) and never reach the ring buffer. Listing the pod's
//! cgroup, not its containers', covers containers that start later. Without a filter the check is a
//! constant the verifier prunes.
//!
//! The programs only produce events; every decision about protocols is userspace's.
#![no_std]
#![no_main]

use core::{ffi::c_void, mem::size_of, ptr::addr_of_mut};

mod tls;

use aya_ebpf::{
    bindings::__sk_buff,
    helpers::generated::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_comm,
        bpf_get_current_pid_tgid, bpf_get_socket_cookie, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_skb_ancestor_cgroup_id, bpf_skb_cgroup_id, bpf_skb_load_bytes,
    },
    macros::{btf_tracepoint, cgroup_skb, map},
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, SkBuffContext},
};
use podtap_common::{
    PacketHeader, SkipKey, SkipValue, SockOwnerEvent, COUNTER_BYTES_SKIPPED, COUNTER_COUNT,
    COUNTER_FILTERED, COUNTER_NOT_PARSED, COUNTER_OWNER_RINGBUF_FULL, COUNTER_PACKETS,
    COUNTER_PAYLOAD_TRUNCATED, COUNTER_RINGBUF_FULL, DEFAULT_MAX_PAYLOAD, DIR_EGRESS, DIR_INGRESS,
    EVENT_PACKET, EVENT_SOCK_OWNER, FILTER_MAX_ENTRIES, FILTER_MAX_LEVEL, FILTER_MODE_INCLUDE,
    FILTER_MODE_OFF, LAYER_PACKETS, MAX_PAYLOAD_LIMIT, PROTO_TCP, PROTO_UDP, SKIP_ALL,
    SKIP_UNTIL_SEQ, TCP_FIN, TCP_RST, TCP_SYN,
};

/// Capped payload prefix copied per segment; set by the loader from `--max-payload`.
#[unsafe(no_mangle)]
static MAX_PAYLOAD: u32 = DEFAULT_MAX_PAYLOAD;

/// Unread ring buffer bytes above which a record wakes userspace; below it, userspace finds the
/// records on its next timed poll. Waking on every record costs more than the capture itself at high
/// rates. Set by the loader from the ring size.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 1024 * 1024;

/// podtap's own process id: its sockets are never captured.
#[unsafe(no_mangle)]
static SELF_TGID: u32 = 0;

/// Capture filter mode (`FILTER_MODE_*`), set by the loader.
#[unsafe(no_mangle)]
static FILTER_MODE: u32 = FILTER_MODE_OFF;

/// Pod cgroup ids listed by the capture filter (userspace keeps it in step with the pods).
#[map]
static FILTER_CGROUPS: HashMap<u64, u8> = HashMap::with_max_entries(FILTER_MAX_ENTRIES, 0);

/// Whether the capture filter leaves out a socket or process whose cgroup's ancestor at each level
/// (0 = root) `ancestor` gives; 0 past the cgroup's own level.
#[inline(always)]
pub(crate) fn filtered_out(ancestor: impl Fn(i32) -> u64) -> bool {
    // SAFETY: a global the loader may rewrite before load.
    let mode = unsafe { core::ptr::read_volatile(&FILTER_MODE) };
    if mode == FILTER_MODE_OFF {
        return false;
    }
    let mut listed = false;
    // Level 0 is the root, never a pod.
    let mut level: i32 = 1;
    while level <= FILTER_MAX_LEVEL as i32 {
        let id = ancestor(level);
        if id == 0 {
            break;
        }
        // SAFETY: plain map lookup.
        if unsafe { FILTER_CGROUPS.get(&id) }.is_some() {
            listed = true;
            break;
        }
        level += 1;
    }
    if mode == FILTER_MODE_INCLUDE {
        !listed
    } else {
        listed
    }
}

/// All records for userspace. The loader sets the size (`--ring-buffer-bytes`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Per-direction payload skipping requested by userspace.
#[map]
static SKIP: LruHashMap<SkipKey, SkipValue> = LruHashMap::with_max_entries(65_536, 0);

/// Sockets that belong to podtap itself.
#[map]
static EXCLUDED: LruHashMap<u64, u8> = LruHashMap::with_max_entries(4096, 0);

/// Last owner reported per socket cookie, so that an owner is reported once, not on every send.
#[map]
static OWNERS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(65_536, 0);

/// Drop and volume counters (`COUNTER_*`), summed by userspace.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

#[repr(C)]
struct Scratch {
    header: PacketHeader,
    payload: [u8; MAX_PAYLOAD_LIMIT],
}

/// A record is built here (it is too big for the 512-byte stack), then copied into the ring buffer
/// with its real length. One slot per kind of program that may interrupt another on the same CPU
/// (`SCRATCH_*`): an ingress packet's softirq can run in the middle of an egress program or a uprobe.
#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(3, 0);

const SCRATCH_EGRESS: u32 = 0;
const SCRATCH_INGRESS: u32 = 1;
const SCRATCH_TLS: u32 = 2;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = PROTO_TCP;
const IPPROTO_UDP: u8 = PROTO_UDP;
const UDP_HEADER_LEN: u32 = 8;
/// IPv4 "more fragments" flag and fragment offset mask in the flags/offset field.
const IP_MF: u16 = 0x2000;
const IP_OFFSET: u16 = 0x1fff;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
/// `offsetof(struct sock_common, skc_family)`: unchanged since Linux 4.x.
const SKC_FAMILY_OFFSET: usize = 16;

const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// Ring buffer output flags: wake the reader only once enough is waiting.
#[inline(always)]
fn wakeup_flags() -> u64 {
    // SAFETY: a global the loader may rewrite before load.
    let threshold = unsafe { core::ptr::read_volatile(&WAKEUP_BYTES) };
    if EVENTS.query(BPF_RB_AVAIL_DATA) >= threshold {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

#[inline(always)]
fn count(index: u32, by: u64) {
    if let Some(counter) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, this program is not preempted on it.
        unsafe { *counter += by };
    }
}

/// How many payload bytes at the start of a segment (or TLS call) userspace asked not to get, from
/// the `SKIP` map; `None` when the record is not worth sending at all. `control`: the segment carries
/// SYN/FIN/RST (always reported); `sequenced`: `seq` is meaningful (TCP, TLS), so skips by sequence
/// number apply.
#[inline(always)]
fn skipped_prefix(
    cookie: u64,
    direction: u8,
    layer: u32,
    sequenced: bool,
    seq: u32,
    payload_len: u32,
    control: u8,
) -> Option<u32> {
    let key = SkipKey {
        cookie,
        direction: u32::from(direction),
        layer,
    };
    // SAFETY: plain map lookup; the value is copied out at once.
    let Some(skip) = (unsafe { SKIP.get(&key) }) else {
        return Some(0);
    };
    let skip: SkipValue = *skip;
    if skip.mode == SKIP_ALL {
        count(COUNTER_NOT_PARSED, u64::from(payload_len));
        if control == 0 {
            return None; // userspace only wants to know when it ends
        }
        return Some(payload_len);
    }
    if skip.mode != SKIP_UNTIL_SEQ || !sequenced {
        return Some(0);
    }
    // Serial-number arithmetic: how far the skip end lies past this segment's first byte.
    let ahead = skip.until_seq.wrapping_sub(seq) as i32;
    if ahead <= 0 {
        return Some(0);
    }
    let ahead = ahead as u32;
    if ahead > payload_len && control == 0 {
        // Wholly inside a skipped body: nothing to report, not even timing.
        count(COUNTER_BYTES_SKIPPED, u64::from(payload_len));
        return None;
    }
    let skipped = if ahead < payload_len {
        ahead
    } else {
        payload_len
    };
    count(COUNTER_BYTES_SKIPPED, u64::from(skipped));
    Some(skipped)
}

/// How many of `available` bytes a record carries: capped by `--max-payload` and the scratch size.
/// Counts the cut.
#[inline(always)]
fn capped(available: u32) -> u32 {
    // SAFETY: a global the loader may rewrite before load; read it as such.
    let cap = unsafe { core::ptr::read_volatile(&MAX_PAYLOAD) };
    let mut want = available;
    if want > cap {
        want = cap;
    }
    if want > MAX_PAYLOAD_LIMIT as u32 {
        want = MAX_PAYLOAD_LIMIT as u32;
    }
    if want < available {
        count(COUNTER_PAYLOAD_TRUNCATED, 1);
    }
    want
}

/// `want` - 1 masked into [0, MAX_PAYLOAD_LIMIT) and + 1: a length the verifier sees in
/// [1, MAX_PAYLOAD_LIMIT] on the very register passed to a copy helper (a copy checked for zero
/// elsewhere does not count). `want` must be non-zero; MAX_PAYLOAD_LIMIT is a power of two.
#[inline(always)]
fn verifier_len(want: u32) -> u32 {
    ((want - 1) & (MAX_PAYLOAD_LIMIT as u32 - 1)) + 1
}

#[cgroup_skb(egress)]
pub fn podtap_egress(ctx: SkBuffContext) -> i32 {
    let _ = try_capture(&ctx, DIR_EGRESS);
    1
}

#[cgroup_skb(ingress)]
pub fn podtap_ingress(ctx: SkBuffContext) -> i32 {
    let _ = try_capture(&ctx, DIR_INGRESS);
    1
}

#[inline(always)]
fn try_capture(ctx: &SkBuffContext, direction: u8) -> Result<(), i64> {
    let skb: *mut __sk_buff = ctx.skb.skb;
    // `skb->protocol` holds the big-endian ethertype in the low 16 bits.
    let ethertype = u16::from_be(ctx.skb.protocol() as u16);
    let slot = if direction == DIR_EGRESS {
        SCRATCH_EGRESS
    } else {
        SCRATCH_INGRESS
    };
    let scratch = SCRATCH.get_ptr_mut(slot).ok_or(0i64)?;
    // SAFETY: the per-CPU scratch slot is ours for the duration of this program run.
    let header: &mut PacketHeader = unsafe { &mut (*scratch).header };

    let (ip_header_len, family, protocol) = match ethertype {
        ETH_P_IP => {
            let version_ihl: u8 = ctx.load(0)?;
            let protocol: u8 = ctx.load(9)?;
            if protocol != IPPROTO_TCP && protocol != IPPROTO_UDP {
                return Ok(());
            }
            // A fragment other than a whole datagram carries no (or no whole) transport payload. The
            // socket hooks see datagrams before fragmentation and after reassembly, so this is defensive.
            let fragment: [u8; 2] = ctx.load(6)?;
            if u16::from_be_bytes(fragment) & (IP_MF | IP_OFFSET) != 0 {
                return Ok(());
            }
            let saddr: [u8; 4] = ctx.load(12)?;
            let daddr: [u8; 4] = ctx.load(16)?;
            header.saddr = [0; 16];
            header.daddr = [0; 16];
            header.saddr[..4].copy_from_slice(&saddr);
            header.daddr[..4].copy_from_slice(&daddr);
            (u32::from(version_ihl & 0x0f) * 4, 4u8, protocol)
        }
        ETH_P_IPV6 => {
            let next_header: u8 = ctx.load(6)?;
            if next_header != IPPROTO_TCP && next_header != IPPROTO_UDP {
                return Ok(());
            }
            header.saddr = ctx.load(8)?;
            header.daddr = ctx.load(24)?;
            (40, 6u8, next_header)
        }
        _ => return Ok(()),
    };
    if ip_header_len < 20 {
        return Ok(());
    }
    let l4 = ip_header_len as usize;
    let ports: [u8; 4] = ctx.load(l4)?;
    let skb_len = ctx.len();
    let (seq, payload_offset, tcp_flags) = if protocol == IPPROTO_TCP {
        let seq: [u8; 4] = ctx.load(l4 + 4)?;
        let data_offset: u8 = ctx.load(l4 + 12)?;
        let tcp_flags: u8 = ctx.load(l4 + 13)?;
        (
            u32::from_be_bytes(seq),
            ip_header_len + u32::from(data_offset >> 4) * 4,
            tcp_flags,
        )
    } else {
        // UDP: an 8-byte header; the datagram's payload is the rest of the packet.
        (0, ip_header_len + UDP_HEADER_LEN, 0)
    };
    let payload_len = skb_len.saturating_sub(payload_offset);
    let control = tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST);
    if payload_len == 0 && control == 0 {
        return Ok(()); // a pure ACK, or an empty datagram, tells userspace nothing
    }
    count(COUNTER_PACKETS, 1);

    // SAFETY: skb is the program's context pointer.
    let cookie = unsafe { bpf_get_socket_cookie(skb.cast::<c_void>()) };
    // SAFETY: plain map lookup.
    if unsafe { EXCLUDED.get(&cookie) }.is_some() {
        return Ok(());
    }
    // SAFETY: skb is the program's context pointer.
    if filtered_out(|level| unsafe { bpf_skb_ancestor_cgroup_id(skb, level) }) {
        count(COUNTER_FILTERED, 1);
        return Ok(());
    }

    // How much of the payload userspace does not want.
    let tcp = protocol == IPPROTO_TCP;
    let Some(skipped) = skipped_prefix(
        cookie,
        direction,
        LAYER_PACKETS,
        tcp,
        seq,
        payload_len,
        control,
    ) else {
        return Ok(());
    };

    header.kind = EVENT_PACKET;
    // SAFETY: helper on the program's own context / clock.
    header.ts_ns = unsafe { bpf_ktime_get_ns() };
    header.cookie = cookie;
    header.cgroup_id = unsafe { bpf_skb_cgroup_id(skb) };
    header.seq = seq;
    header.payload_len = payload_len;
    header.skipped = skipped;
    header.pid = 0;
    header.sport = u16::from_be_bytes([ports[0], ports[1]]);
    header.dport = u16::from_be_bytes([ports[2], ports[3]]);
    header.family = family;
    header.direction = direction;
    header.tcp_flags = tcp_flags;
    header.protocol = protocol;
    header._pad2 = 0;

    let want = capped(payload_len - skipped);
    let mut captured: u32 = 0;
    if want > 0 {
        // SAFETY: scratch is a valid per-CPU slot with MAX_PAYLOAD_LIMIT bytes of room; `want` is
        // bounded by it above and non-zero (the verifier rejects a possibly-zero length).
        let payload: *mut [u8; MAX_PAYLOAD_LIMIT] = unsafe { addr_of_mut!((*scratch).payload) };
        let len = verifier_len(want);
        let ret = unsafe {
            bpf_skb_load_bytes(
                skb.cast::<c_void>(),
                payload_offset + skipped,
                payload.cast::<c_void>(),
                len,
            )
        };
        if ret == 0 {
            captured = want;
        }
    }
    if !output_record(scratch, captured) {
        count(COUNTER_RINGBUF_FULL, 1);
    }
    Ok(())
}

/// Sends the record built in `scratch` (its header filled in, `captured` payload bytes after it) to
/// the ring buffer. `false`: the ring buffer was full.
#[inline(always)]
fn output_record(scratch: *mut Scratch, captured: u32) -> bool {
    // SAFETY: the per-CPU scratch slot is ours for the duration of this program run.
    unsafe { (*scratch).header.captured = captured };
    let total = size_of::<PacketHeader>() + captured as usize;
    // SAFETY: `total` never exceeds the size of the scratch slot (`captured` <= MAX_PAYLOAD_LIMIT).
    let record = unsafe { core::slice::from_raw_parts(scratch.cast::<u8>(), total) };
    EVENTS.output::<[u8]>(record, wakeup_flags()).is_ok()
}

#[btf_tracepoint(function = "sock_send_length")]
pub fn podtap_sock_send(ctx: BtfTracePointContext) -> i32 {
    let _ = try_owner(&ctx);
    0
}

#[btf_tracepoint(function = "sock_recv_length")]
pub fn podtap_sock_recv(ctx: BtfTracePointContext) -> i32 {
    let _ = try_owner(&ctx);
    0
}

#[inline(always)]
fn try_owner(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let sk: *mut c_void = ctx.arg(0);
    // SAFETY: reads one field of a kernel `struct sock` the tracepoint hands us.
    let family: u16 =
        unsafe { bpf_probe_read_kernel_u16(sk.cast::<u8>().wrapping_add(SKC_FAMILY_OFFSET)) }?;
    if family != AF_INET && family != AF_INET6 {
        return Ok(());
    }
    // SAFETY: `sk` is a BTF-typed socket pointer, which is what this helper takes in tracing programs.
    let cookie = unsafe { bpf_get_socket_cookie(sk) };
    // SAFETY: helper without arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: a global the loader may rewrite before load.
    let self_tgid = unsafe { core::ptr::read_volatile(&SELF_TGID) };
    if tgid == self_tgid {
        let _ = EXCLUDED.insert(&cookie, &1u8, 0);
        return Ok(());
    }
    tls::bind_socket(sk, family, cookie, pid_tgid);
    // SAFETY: plain map lookup, value copied.
    if let Some(known) = unsafe { OWNERS.get(&cookie) } {
        if *known == tgid {
            return Ok(());
        }
    }
    let _ = OWNERS.insert(&cookie, &tgid, 0);
    // After the insert: a socket of a pod left out is looked at once per owner, not on every send.
    // SAFETY: helper with a plain integer argument.
    if filtered_out(|level| unsafe { bpf_get_current_ancestor_cgroup_id(level) }) {
        return Ok(());
    }
    let mut event = SockOwnerEvent {
        kind: EVENT_SOCK_OWNER,
        tgid,
        cookie,
        // SAFETY: helper without arguments.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        comm: [0; 16],
    };
    // SAFETY: `comm` is a 16-byte buffer.
    unsafe { bpf_get_current_comm(event.comm.as_mut_ptr().cast::<c_void>(), 16) };
    if EVENTS
        .output::<SockOwnerEvent>(&event, wakeup_flags())
        .is_err()
    {
        count(COUNTER_OWNER_RINGBUF_FULL, 1);
    }
    Ok(())
}

#[inline(always)]
unsafe fn bpf_probe_read_kernel_u16(src: *const u8) -> Result<u16, i64> {
    // SAFETY: forwarded.
    unsafe { read_kernel::<u16>(src) }
}

/// Reads a `T` from kernel memory (the helper checks the address).
#[inline(always)]
unsafe fn read_kernel<T: Copy + Default>(src: *const u8) -> Result<T, i64> {
    let mut value = T::default();
    // SAFETY: the helper checks the source address itself; the destination is a local of size T.
    let ret = unsafe {
        bpf_probe_read_kernel(
            core::ptr::from_mut(&mut value).cast::<c_void>(),
            size_of::<T>() as u32,
            src.cast::<c_void>(),
        )
    };
    if ret < 0 {
        Err(ret)
    } else {
        Ok(value)
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

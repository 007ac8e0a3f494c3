//! Types and constants shared by podtap's kernel programs (`podtap-ebpf`) and its userspace (`podtap`).
//!
//! Everything here crosses the kernel/user boundary through a ring buffer or a map, so every struct is
//! `#[repr(C)]`, has no bools and no implicit padding, and is defined once, here.
#![no_std]

/// Largest payload prefix one packet event may carry. The per-CPU scratch buffer is sized from it, so it
/// bounds `--max-payload` (a per-CPU array value must stay under 32 KiB).
pub const MAX_PAYLOAD_LIMIT: usize = 16 * 1024;

/// Default payload prefix copied per packet: enough for the headers of almost every request and response.
pub const DEFAULT_MAX_PAYLOAD: u32 = 4096;

/// Event kinds, the first `u32` of every ring buffer record.
pub const EVENT_PACKET: u32 = 1;
pub const EVENT_SOCK_OWNER: u32 = 2;
/// Plaintext a process passed to or got from a TLS library (`PacketHeader` layout, `pid` set).
pub const EVENT_TLS_DATA: u32 = 3;
/// A process started a new program or exited (`ProcessEvent`).
pub const EVENT_PROCESS: u32 = 4;

/// Packet direction relative to the socket that owns it.
pub const DIR_EGRESS: u8 = 0;
pub const DIR_INGRESS: u8 = 1;

/// Transports in `PacketHeader::protocol`: the IP protocol numbers.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// TCP header flags as they appear in the flags byte.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// Indices of the per-CPU counters in the `COUNTERS` map.
pub const COUNTER_PACKETS: u32 = 0;
pub const COUNTER_RINGBUF_FULL: u32 = 1;
pub const COUNTER_PAYLOAD_TRUNCATED: u32 = 2;
pub const COUNTER_BYTES_SKIPPED: u32 = 3;
pub const COUNTER_NOT_PARSED: u32 = 4;
pub const COUNTER_OWNER_RINGBUF_FULL: u32 = 5;
/// TLS plaintext records written to the ring buffer.
pub const COUNTER_TLS_RECORDS: u32 = 6;
/// TLS plaintext records lost because the ring buffer was full.
pub const COUNTER_TLS_RINGBUF_FULL: u32 = 7;
/// TLS reads/writes whose connection's socket was never seen (no socket operation inside a hooked
/// call yet): their plaintext cannot be put on a connection and is dropped.
pub const COUNTER_TLS_UNBOUND: u32 = 8;
/// Process exec/exit records lost because the ring buffer was full.
pub const COUNTER_PROCESS_RINGBUF_FULL: u32 = 9;
/// Packet and TLS records not sent because the capture filter leaves their pod out.
pub const COUNTER_FILTERED: u32 = 10;
pub const COUNTER_COUNT: u32 = 11;

/// Capture filter modes (`FILTER_MODE` global, set at load time).
/// No filter: the programs do not look at cgroups.
pub const FILTER_MODE_OFF: u32 = 0;
/// Only sockets and processes inside a cgroup listed in `FILTER_CGROUPS` (or below one) are captured.
pub const FILTER_MODE_INCLUDE: u32 = 1;
/// Sockets and processes inside a listed cgroup (or below one) are not captured.
pub const FILTER_MODE_EXCLUDE: u32 = 2;
/// Size of the `FILTER_CGROUPS` map: pod cgroups listed at once.
pub const FILTER_MAX_ENTRIES: u32 = 16_384;
/// Deepest cgroup level (the root is 0) whose id the programs look up in `FILTER_CGROUPS`; kubelet
/// pod cgroups sit at level 2 or 3 (deeper under nested runtimes).
pub const FILTER_MAX_LEVEL: u32 = 8;

/// Header of one captured TCP segment or UDP datagram; `captured` payload bytes follow it in the same
/// record.
///
/// The payload bytes are the TCP or UDP payload from offset `skipped` on: a prefix the userspace asked to
/// skip (a body it does not parse) is not copied.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PacketHeader {
    /// `EVENT_PACKET`.
    pub kind: u32,
    /// Payload bytes that follow this header.
    pub captured: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ts_ns: u64,
    /// Socket cookie: the connection's id, equal on both directions.
    pub cookie: u64,
    /// cgroup v2 id (the inode of the cgroup directory) of the socket's owner.
    pub cgroup_id: u64,
    /// TCP sequence number of the first payload byte of the segment (0 for UDP).
    pub seq: u32,
    /// Payload length of the whole segment or datagram (a GSO/GRO segment can be up to 64 KiB or more).
    /// `EVENT_TLS_DATA`: the bytes one `SSL_write`/`SSL_read` (or Go `Write`/`Read`) call passed, and
    /// `seq` counts plaintext bytes per direction from 0 (the first call seen on the connection).
    pub payload_len: u32,
    /// Payload bytes at the start of the segment that were not copied (skipped on request).
    pub skipped: u32,
    /// `EVENT_TLS_DATA`: the process that read or wrote the plaintext (0 for packets).
    pub pid: u32,
    /// Source and destination address: IPv4 in the first 4 bytes, IPv6 in all 16, network order.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// Ports in host order.
    pub sport: u16,
    pub dport: u16,
    /// 4 or 6.
    pub family: u8,
    /// `DIR_EGRESS` or `DIR_INGRESS`.
    pub direction: u8,
    /// TCP flags (`TCP_*`; 0 for UDP).
    pub tcp_flags: u8,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub protocol: u8,
    pub _pad2: u32,
}

/// The process that sent or received on a socket: emitted when a socket is first used by a process
/// (and again when another process uses it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SockOwnerEvent {
    /// `EVENT_SOCK_OWNER`.
    pub kind: u32,
    /// Process id (thread group id).
    pub tgid: u32,
    pub cookie: u64,
    /// cgroup v2 id of the process.
    pub cgroup_id: u64,
    /// Thread name of the caller, NUL padded.
    pub comm: [u8; 16],
}

/// Process lifecycle kinds in `ProcessEvent::what`.
pub const PROCESS_EXEC: u32 = 1;
pub const PROCESS_EXIT: u32 = 2;

/// A process ran `execve` (a new program: its libraries and executable may need TLS hooks) or exited
/// (its state can go).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEvent {
    /// `EVENT_PROCESS`.
    pub kind: u32,
    /// `PROCESS_EXEC` or `PROCESS_EXIT`.
    pub what: u32,
    /// Process id (thread group id).
    pub tgid: u32,
    pub _pad: u32,
}

/// Layers in `SkipKey::layer`: the socket's packets, or the TLS plaintext carried by them.
pub const LAYER_PACKETS: u32 = 0;
pub const LAYER_TLS: u32 = 1;

/// Key of the `SKIP` map: one direction of one socket, at one layer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SkipKey {
    pub cookie: u64,
    pub direction: u32,
    /// `LAYER_PACKETS` or `LAYER_TLS` (whose `SKIP_UNTIL_SEQ` counts plaintext bytes).
    pub layer: u32,
}

/// TLS hook operations, the low bits of a uprobe's attach cookie.
pub const TLS_OP_WRITE: u64 = 0;
pub const TLS_OP_READ: u64 = 1;
/// Attach-cookie flag of OpenSSL hooks: the `_ex` variant (`SSL_write_ex`/`SSL_read_ex`), whose byte
/// count comes back through a pointer argument.
pub const TLS_FLAG_EX: u64 = 2;
/// Attach-cookie flag of Go hooks: the binary uses the stack calling convention (Go < 1.17).
pub const TLS_FLAG_GO_STACK_ABI: u64 = 4;

/// Skip modes in `SkipValue::mode`.
/// Copy no payload before sequence number `until_seq` (a body userspace does not need; TCP only).
pub const SKIP_UNTIL_SEQ: u32 = 1;
/// Copy no payload at all on this direction (a connection or UDP socket no parser recognised). TCP
/// segments with SYN/FIN/RST are still reported, without payload; UDP datagrams are not reported.
pub const SKIP_ALL: u32 = 2;

/// Value of the `SKIP` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SkipValue {
    pub mode: u32,
    pub until_seq: u32,
}

/// Names of the maps and programs, shared so that loader and programs cannot drift apart.
pub mod names {
    pub const MAP_EVENTS: &str = "EVENTS";
    pub const MAP_PROCESS_EVENTS: &str = "PROCESS_EVENTS";
    pub const MAP_SKIP: &str = "SKIP";
    pub const MAP_COUNTERS: &str = "COUNTERS";
    pub const MAP_EXCLUDED: &str = "EXCLUDED";
    pub const MAP_FILTER_CGROUPS: &str = "FILTER_CGROUPS";
    pub const PROG_EGRESS: &str = "podtap_egress";
    pub const PROG_INGRESS: &str = "podtap_ingress";
    pub const PROG_SEND: &str = "podtap_sock_send";
    pub const PROG_RECV: &str = "podtap_sock_recv";
    pub const PROG_SSL_ENTRY: &str = "podtap_ssl_entry";
    pub const PROG_SSL_RETURN: &str = "podtap_ssl_return";
    pub const PROG_GO_TLS_ENTRY: &str = "podtap_go_tls_entry";
    pub const PROG_GO_TLS_RETURN: &str = "podtap_go_tls_return";
    pub const PROG_EXEC: &str = "podtap_exec";
    pub const PROG_EXIT: &str = "podtap_exit";
    /// Offset of the thread's FS base (`task_struct.thread.fsbase`), from the kernel's BTF: where Go
    /// keeps the running goroutine (at FS base - 8).
    pub const GLOBAL_TASK_FSBASE_OFFSET: &str = "TASK_FSBASE_OFFSET";
    pub const GLOBAL_MAX_PAYLOAD: &str = "MAX_PAYLOAD";
    pub const GLOBAL_SELF_TGID: &str = "SELF_TGID";
    pub const GLOBAL_WAKEUP_BYTES: &str = "WAKEUP_BYTES";
    /// `FILTER_MODE_*`.
    pub const GLOBAL_FILTER_MODE: &str = "FILTER_MODE";
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain old data, `#[repr(C)]`, every field an integer or an integer array, no implicit padding.
    unsafe impl aya::Pod for super::SkipKey {}
    unsafe impl aya::Pod for super::SkipValue {}
}

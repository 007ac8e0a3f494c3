//! Capture sources: the kernel programs (`ebpf`) and capture files (`pcap`). A source only produces
//! `Event`s; it never looks at protocols. `filter` keeps the kernel's capture-filter map in step with
//! the pods.

pub mod ebpf;
pub mod filter;
pub mod pcap;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use podtap_common::{
    PacketHeader, ProcessEvent, SockOwnerEvent, DIR_EGRESS, EVENT_PACKET, EVENT_PROCESS,
    EVENT_SOCK_OWNER, EVENT_TLS_DATA, PROCESS_EXEC, PROCESS_EXIT, PROTO_TCP, PROTO_UDP, TCP_ACK,
    TCP_FIN, TCP_RST, TCP_SYN,
};

use crate::model::{Direction, Transport, UnixNanos};

/// TCP control flags of a segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

impl TcpFlags {
    #[must_use]
    pub fn from_bits(bits: u8) -> Self {
        Self {
            syn: bits & TCP_SYN != 0,
            ack: bits & TCP_ACK != 0,
            fin: bits & TCP_FIN != 0,
            rst: bits & TCP_RST != 0,
        }
    }
}

/// One TCP segment or UDP datagram as a socket saw it, or (`tls`) the plaintext of one TLS read or
/// write on a socket.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// The socket's id (socket cookie, or a synthetic id for capture files).
    pub cookie: u64,
    pub transport: Transport,
    /// cgroup v2 id of the socket (0 when unknown).
    pub cgroup_id: u64,
    pub direction: Direction,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// TCP sequence number of the first payload byte (0 for UDP).
    pub seq: u32,
    /// Payload length of the whole segment or datagram (more than `payload` when cut short).
    pub payload_len: u32,
    /// Payload bytes at the start that were not copied.
    pub skipped: u32,
    pub payload: &'a [u8],
    /// TCP flags (all unset for UDP and TLS plaintext).
    pub flags: TcpFlags,
    pub ts: UnixNanos,
    /// TLS plaintext: `seq` counts plaintext bytes of this direction from 0, the first TLS call seen.
    pub tls: bool,
}

impl Packet<'_> {
    /// (local, remote): the socket's own address first.
    #[must_use]
    pub fn local_remote(&self) -> (SocketAddr, SocketAddr) {
        match self.direction {
            Direction::Egress => (self.src, self.dst),
            Direction::Ingress => (self.dst, self.src),
        }
    }
}

/// The process that used a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub cookie: u64,
    pub pid: u32,
    pub comm: String,
    pub cgroup_id: u64,
}

/// A process started a new program or exited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessChange {
    Exec(u32),
    Exit(u32),
}

#[derive(Clone, Debug)]
pub enum Event<'a> {
    Packet(Packet<'a>),
    Owner(Owner),
    Process(ProcessChange),
}

/// A ring buffer record that does not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than its header")]
    Short { len: usize },
    #[error("unknown record kind {kind}")]
    UnknownKind { kind: u32 },
    #[error("record claims {claimed} payload bytes but carries {carried}")]
    PayloadLength { claimed: u32, carried: usize },
    #[error("unknown address family {family}")]
    Family { family: u8 },
    #[error("unknown transport protocol {protocol}")]
    Protocol { protocol: u8 },
    #[error("unknown process event {what}")]
    ProcessChange { what: u32 },
}

fn read<T: Copy>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() < std::mem::size_of::<T>() {
        return Err(DecodeError::Short { len: bytes.len() });
    }
    // SAFETY: length checked above; `T` is a plain `#[repr(C)]` integer struct from podtap-common, valid
    // for any bit pattern; the read is unaligned-safe.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

fn address(family: u8, raw: [u8; 16], port: u16) -> Result<SocketAddr, DecodeError> {
    let ip = match family {
        4 => IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])),
        // A dual-stack socket talking IPv4 has v4-mapped addresses, but its packets are IPv4: name the
        // connection the way its packets do.
        6 => Ipv6Addr::from(raw)
            .to_ipv4_mapped()
            .map_or(IpAddr::V6(Ipv6Addr::from(raw)), IpAddr::V4),
        family => return Err(DecodeError::Family { family }),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Decodes one kernel record. `clock_offset` turns the kernel's monotonic nanoseconds into Unix time.
pub fn decode(record: &[u8], clock_offset: i64) -> Result<Event<'_>, DecodeError> {
    let kind: u32 = read(record)?;
    match kind {
        EVENT_PACKET | EVENT_TLS_DATA => {
            let header: PacketHeader = read(record)?;
            let payload = &record[std::mem::size_of::<PacketHeader>()..];
            let payload =
                payload
                    .get(..header.captured as usize)
                    .ok_or(DecodeError::PayloadLength {
                        claimed: header.captured,
                        carried: payload.len(),
                    })?;
            let transport = match header.protocol {
                PROTO_TCP => Transport::Tcp,
                PROTO_UDP => Transport::Udp,
                protocol => return Err(DecodeError::Protocol { protocol }),
            };
            Ok(Event::Packet(Packet {
                cookie: header.cookie,
                transport,
                cgroup_id: header.cgroup_id,
                direction: if header.direction == DIR_EGRESS {
                    Direction::Egress
                } else {
                    Direction::Ingress
                },
                src: address(header.family, header.saddr, header.sport)?,
                dst: address(header.family, header.daddr, header.dport)?,
                seq: header.seq,
                payload_len: header.payload_len,
                skipped: header.skipped,
                payload,
                flags: TcpFlags::from_bits(header.tcp_flags),
                ts: header.ts_ns.saturating_add_signed(clock_offset),
                tls: kind == EVENT_TLS_DATA,
            }))
        }
        EVENT_PROCESS => {
            let event: ProcessEvent = read(record)?;
            Ok(Event::Process(match event.what {
                PROCESS_EXEC => ProcessChange::Exec(event.tgid),
                PROCESS_EXIT => ProcessChange::Exit(event.tgid),
                what => return Err(DecodeError::ProcessChange { what }),
            }))
        }
        EVENT_SOCK_OWNER => {
            let event: SockOwnerEvent = read(record)?;
            let end = event
                .comm
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(event.comm.len());
            Ok(Event::Owner(Owner {
                cookie: event.cookie,
                pid: event.tgid,
                comm: String::from_utf8_lossy(&event.comm[..end]).into_owned(),
                cgroup_id: event.cgroup_id,
            }))
        }
        kind => Err(DecodeError::UnknownKind { kind }),
    }
}

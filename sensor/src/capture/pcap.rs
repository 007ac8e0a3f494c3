//! The capture-file source: pcap and pcapng, read with `pcap-parser`, frames decoded with `etherparse`.
//!
//! In: a file (Ethernet with VLAN tags, Linux cooked SLL and SLL2, raw IP, BSD loopback/null; IPv4 and
//! IPv6). Out: the same `Event`s as the live source, so replay runs the same flow table and parsers.
//! A file has no sockets: each TCP connection gets a synthetic id, and its "local" end is the one that
//! sent the SYN (or, without one, the first packet); each UDP 5-tuple gets one too, its "local" end the
//! first sender. Frames that are neither TCP nor UDP, and IP fragments, are counted and passed over; a
//! corrupt file is an error naming the offset.

use std::{
    collections::HashMap,
    fs::File,
    io::Read,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TcpSlice, UdpSlice};
use pcap_parser::{PcapBlockOwned, PcapError};

use super::{Event, Packet, TcpFlags};
use crate::model::{Direction, Transport, UnixNanos};

#[derive(Debug, thiserror::Error)]
pub enum PcapReadError {
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a pcap or pcapng file ({reason})")]
    Format { path: PathBuf, reason: String },
    #[error("{path}: corrupt capture at byte offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

/// What the reader passed over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcapStats {
    pub frames: u64,
    pub tcp_segments: u64,
    pub udp_datagrams: u64,
    /// Frames that are neither TCP nor UDP (or carry no IP at all).
    pub not_tcp_udp: u64,
    /// IP fragments: reassembly is not done, so they are passed over.
    pub ip_fragments: u64,
    pub undecodable: u64,
    pub unsupported_link: u64,
}

/// Link types this reader decodes (numbers from the tcpdump link-type registry).
const LINKTYPE_NULL: i32 = 0;
const LINKTYPE_ETHERNET: i32 = 1;
const LINKTYPE_RAW: i32 = 101;
const LINKTYPE_LOOP: i32 = 108;
const LINKTYPE_LINUX_SLL: i32 = 113;
const LINKTYPE_IPV4: i32 = 228;
const LINKTYPE_IPV6: i32 = 229;
const LINKTYPE_LINUX_SLL2: i32 = 276;

/// One interface of a pcapng file (or the single one of a pcap file).
#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: i32,
    /// Timestamp units per second.
    resolution: u64,
    offset: i64,
}

/// Gives each TCP connection and UDP 5-tuple of a file a synthetic socket id and a local end.
#[derive(Default)]
struct Connections {
    ids: HashMap<(SocketAddr, SocketAddr), (u64, SocketAddr)>,
    udp: HashMap<(SocketAddr, SocketAddr), (u64, SocketAddr)>,
    next_id: u64,
}

impl Connections {
    /// The connection id and direction of a segment from `src` to `dst`.
    fn classify(&mut self, src: SocketAddr, dst: SocketAddr, flags: TcpFlags) -> (u64, Direction) {
        let key = unordered(src, dst);
        let fresh_syn = flags.syn && !flags.ack;
        let entry = self.ids.get(&key).copied();
        let (id, local) = match entry {
            Some(known) if !fresh_syn => known,
            _ => {
                self.next_id += 1;
                let known = (self.next_id, src);
                self.ids.insert(key, known);
                known
            }
        };
        (id, direction(src, local))
    }

    /// The socket id and direction of a UDP datagram from `src` to `dst`: the first sender of a
    /// 5-tuple is its local end.
    fn classify_udp(&mut self, src: SocketAddr, dst: SocketAddr) -> (u64, Direction) {
        let key = unordered(src, dst);
        let next_id = &mut self.next_id;
        let (id, local) = *self.udp.entry(key).or_insert_with(|| {
            *next_id += 1;
            (*next_id, src)
        });
        (id, direction(src, local))
    }
}

/// Both ends in a fixed order: the same key for both directions.
fn unordered(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

fn direction(src: SocketAddr, local: SocketAddr) -> Direction {
    if src == local {
        Direction::Egress
    } else {
        Direction::Ingress
    }
}

/// Reads `path` and hands every TCP segment and UDP datagram to `handler` as an `Event`.
///
/// # Errors
/// The file cannot be opened, is not a capture, or is corrupt (with the byte offset).
pub fn read_file(
    path: &Path,
    mut handler: impl FnMut(&Event<'_>),
) -> Result<PcapStats, PcapReadError> {
    let file = File::open(path).map_err(|source| PcapReadError::Open {
        path: path.to_owned(),
        source,
    })?;
    read(path, file, &mut handler)
}

fn read(
    path: &Path,
    input: impl Read,
    handler: &mut dyn FnMut(&Event<'_>),
) -> Result<PcapStats, PcapReadError> {
    let mut reader =
        pcap_parser::create_reader(1 << 20, input).map_err(|e| PcapReadError::Format {
            path: path.to_owned(),
            reason: format!("{e:?}"),
        })?;
    let mut stats = PcapStats::default();
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut connections = Connections::default();
    let mut offset: u64 = 0;
    loop {
        match reader.next() {
            Ok((consumed, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(header) => {
                        let resolution = if header.is_nanosecond_precision() {
                            1_000_000_000
                        } else {
                            1_000_000
                        };
                        interfaces = vec![Interface {
                            linktype: header.network.0,
                            resolution,
                            offset: 0,
                        }];
                    }
                    PcapBlockOwned::Legacy(block) => {
                        let iface = interfaces.first().copied().unwrap_or(Interface {
                            linktype: LINKTYPE_ETHERNET,
                            resolution: 1_000_000,
                            offset: 0,
                        });
                        let ts = u64::from(block.ts_sec) * 1_000_000_000
                            + u64::from(block.ts_usec) * (1_000_000_000 / iface.resolution);
                        let cut = block.origlen.saturating_sub(block.caplen);
                        frame(
                            iface.linktype,
                            block.data,
                            cut,
                            ts,
                            &mut connections,
                            &mut stats,
                            handler,
                        );
                    }
                    PcapBlockOwned::NG(pcap_parser::Block::SectionHeader(_)) => interfaces.clear(),
                    PcapBlockOwned::NG(pcap_parser::Block::InterfaceDescription(idb)) => {
                        interfaces.push(Interface {
                            linktype: idb.linktype.0,
                            resolution: idb.ts_resolution().unwrap_or(1_000_000),
                            offset: idb.ts_offset(),
                        });
                    }
                    PcapBlockOwned::NG(pcap_parser::Block::EnhancedPacket(epb)) => match interfaces
                        .get(epb.if_id as usize)
                        .copied()
                    {
                        Some(iface) => {
                            let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            let ts = units_to_nanos(units, iface.resolution)
                                .saturating_add_signed(iface.offset.saturating_mul(1_000_000_000));
                            let cut = epb.origlen.saturating_sub(epb.caplen);
                            frame(
                                iface.linktype,
                                epb.data,
                                cut,
                                ts,
                                &mut connections,
                                &mut stats,
                                handler,
                            );
                        }
                        None => stats.undecodable += 1,
                    },
                    PcapBlockOwned::NG(pcap_parser::Block::SimplePacket(spb)) => {
                        match interfaces.first().copied() {
                            Some(iface) => frame(
                                iface.linktype,
                                spb.data,
                                0,
                                0,
                                &mut connections,
                                &mut stats,
                                handler,
                            ),
                            None => stats.undecodable += 1,
                        }
                    }
                    PcapBlockOwned::NG(_) => {}
                }
                offset += consumed as u64;
                reader.consume(consumed);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                if reader.refill().is_err() {
                    return Err(PcapReadError::Corrupt {
                        path: path.to_owned(),
                        offset,
                        reason: "cannot read further".into(),
                    });
                }
                // A refill that brings nothing new at the end of the file: a truncated last block.
                if reader.reader_exhausted() {
                    match reader.next() {
                        // Every block was read: the normal end of the file.
                        Err(PcapError::Eof) => break,
                        Err(PcapError::Incomplete(_) | PcapError::UnexpectedEof) => {
                            return Err(PcapReadError::Corrupt {
                                path: path.to_owned(),
                                offset,
                                reason: "file ends inside a block".into(),
                            });
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => {
                return Err(PcapReadError::Corrupt {
                    path: path.to_owned(),
                    offset,
                    reason: format!("{e:?}"),
                });
            }
        }
    }
    Ok(stats)
}

fn units_to_nanos(units: u64, resolution: u64) -> u64 {
    if resolution == 0 {
        return 0;
    }
    let seconds = units / resolution;
    let fraction = units % resolution;
    seconds * 1_000_000_000 + (u128::from(fraction) * 1_000_000_000 / u128::from(resolution)) as u64
}

/// Decodes one frame; `cut` is how many bytes of the frame the capture did not keep.
fn frame(
    linktype: i32,
    data: &[u8],
    cut: u32,
    ts: UnixNanos,
    connections: &mut Connections,
    stats: &mut PcapStats,
    handler: &mut dyn FnMut(&Event<'_>),
) {
    stats.frames += 1;
    let sliced = match linktype {
        LINKTYPE_ETHERNET => LaxSlicedPacket::from_ethernet(data).ok(),
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => LaxSlicedPacket::from_ip(data).ok(),
        LINKTYPE_NULL | LINKTYPE_LOOP => data
            .get(4..)
            .and_then(|ip| LaxSlicedPacket::from_ip(ip).ok()),
        LINKTYPE_LINUX_SLL => data.get(16..).zip(data.get(14..16)).map(|(rest, proto)| {
            LaxSlicedPacket::from_ether_type(
                EtherType(u16::from_be_bytes([proto[0], proto[1]])),
                rest,
            )
        }),
        LINKTYPE_LINUX_SLL2 => data.get(20..).zip(data.get(0..2)).map(|(rest, proto)| {
            LaxSlicedPacket::from_ether_type(
                EtherType(u16::from_be_bytes([proto[0], proto[1]])),
                rest,
            )
        }),
        _ => {
            stats.unsupported_link += 1;
            return;
        }
    };
    let Some(sliced) = sliced else {
        stats.undecodable += 1;
        return;
    };
    let (src_ip, dst_ip) = match &sliced.net {
        Some(LaxNetSlice::Ipv4(ip)) => (
            IpAddr::V4(ip.header().source_addr()),
            IpAddr::V4(ip.header().destination_addr()),
        ),
        Some(LaxNetSlice::Ipv6(ip)) => (
            IpAddr::V6(ip.header().source_addr()),
            IpAddr::V6(ip.header().destination_addr()),
        ),
        None => {
            stats.not_tcp_udp += 1;
            return;
        }
    };
    let Some(ip_payload) = sliced.ip_payload() else {
        stats.not_tcp_udp += 1;
        return;
    };
    if ip_payload.fragmented {
        stats.ip_fragments += 1;
        return;
    }
    if ip_payload.ip_number == etherparse::IpNumber::UDP {
        let Ok(udp) = UdpSlice::from_slice_lax(ip_payload.payload) else {
            stats.undecodable += 1;
            return;
        };
        stats.udp_datagrams += 1;
        let payload = udp.payload();
        // The header's length tells the datagram's real size when the capture cut the frame short.
        let payload_len = match usize::from(udp.length()).checked_sub(8) {
            Some(len) if ip_payload.incomplete && len > payload.len() => len as u32,
            _ => payload.len() as u32,
        };
        if payload_len == 0 {
            return; // an empty datagram tells nothing (the kernel drops them too)
        }
        let src = SocketAddr::new(src_ip, udp.source_port());
        let dst = SocketAddr::new(dst_ip, udp.destination_port());
        let (cookie, direction) = connections.classify_udp(src, dst);
        handler(&Event::Packet(Packet {
            cookie,
            transport: Transport::Udp,
            cgroup_id: 0,
            direction,
            src,
            dst,
            seq: 0,
            payload_len,
            skipped: 0,
            payload,
            flags: TcpFlags::default(),
            ts,
        }));
        return;
    }
    if ip_payload.ip_number != etherparse::IpNumber::TCP {
        stats.not_tcp_udp += 1;
        return;
    }
    let Ok(tcp) = TcpSlice::from_slice(ip_payload.payload) else {
        stats.undecodable += 1;
        return;
    };
    stats.tcp_segments += 1;
    let payload = tcp.payload();
    let payload_len = if ip_payload.incomplete {
        payload.len() as u32 + cut
    } else {
        payload.len() as u32
    };
    let flags = TcpFlags {
        syn: tcp.syn(),
        ack: tcp.ack(),
        fin: tcp.fin(),
        rst: tcp.rst(),
    };
    let src = SocketAddr::new(src_ip, tcp.source_port());
    let dst = SocketAddr::new(dst_ip, tcp.destination_port());
    let (cookie, direction) = connections.classify(src, dst, flags);
    handler(&Event::Packet(Packet {
        cookie,
        transport: Transport::Tcp,
        cgroup_id: 0,
        direction,
        src,
        dst,
        seq: tcp.sequence_number(),
        payload_len,
        skipped: 0,
        payload,
        flags,
        ts,
    }));
}

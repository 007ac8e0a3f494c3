//! The capture-file source: pcap and pcapng, read here (records parsed in place from one buffer), frames
//! decoded with `etherparse`. Why not `pcap-parser`: its streaming reader looped forever on a block larger
//! than its buffer and its errors carried neither a reason nor the byte offset that users need to find
//! a corrupt record; the two container formats are small and fully specified, the frames are not.
//!
//! In: a file (Ethernet with any number of VLAN tags, Linux cooked SLL and SLL2, raw IP, BSD
//! loopback/null; IPv4 and IPv6). Out: the same `Event`s as the live source, so replay runs the same flow
//! table and parsers. A file has no sockets: each TCP connection gets a synthetic id, and its "local" end
//! is the one that sent the SYN (or, without one, the first packet); each UDP 5-tuple gets one too, its
//! "local" end the first sender. Frames that are neither TCP nor UDP, IP fragments, frames that do not
//! decode and those whose link type is unknown are counted and passed over; bytes the snapshot length cut off
//! are reported as not copied (a gap); bare ACKs are dropped, as the live source drops them. A file that
//! is not a capture or is corrupt is an error naming the byte offset.

use std::{
    fs::File,
    io::Read,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TcpSlice, UdpSlice};
use lru::LruCache;

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
    #[error("{path}: not a pcap or pcapng file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path}: corrupt capture at byte offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{path}: reading at byte offset {offset}: {source}")]
    Read {
        path: PathBuf,
        offset: u64,
        #[source]
        source: std::io::Error,
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
    /// Frames whose link, IP or TCP header does not decode (or that name an undefined interface).
    pub undecodable: u64,
    pub unsupported_link: u64,
    /// TCP segments whose payload the capture's snapshot length cut short: the missing bytes are a gap
    /// in the stream (unless they lie inside a body being skipped).
    pub snaplen_cut: u64,
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
    /// Bytes kept of each packet (0: unlimited).
    snaplen: u32,
}

/// Connections tracked at once; the least recently seen is forgotten beyond it (a later segment of it
/// starts a new connection, as the flow table's own bound would).
const MAX_TRACKED: usize = 1 << 17;

/// Gives each TCP connection of a file a synthetic socket id and a local end.
struct Connections {
    /// (lower, higher address) -> (id, local end, FIN seen from local / from remote as bits 0 / 1).
    ids: LruCache<(SocketAddr, SocketAddr), (u64, SocketAddr, u8), foldhash::fast::RandomState>,
    /// UDP 5-tuples: (lower, higher address) -> (id, first sender).
    udp: LruCache<(SocketAddr, SocketAddr), (u64, SocketAddr), foldhash::fast::RandomState>,
    next_id: u64,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            // Grown as needed (a capacity would be allocated up front), bounded in `classify`.
            ids: LruCache::unbounded_with_hasher(foldhash::fast::RandomState::default()),
            udp: LruCache::unbounded_with_hasher(foldhash::fast::RandomState::default()),
            next_id: 0,
        }
    }
}

impl Connections {
    /// The connection id and direction of a segment from `src` to `dst`. A connection is forgotten
    /// once both ends sent a FIN, or at a RST.
    fn classify(&mut self, src: SocketAddr, dst: SocketAddr, flags: TcpFlags) -> (u64, Direction) {
        let key = if src <= dst { (src, dst) } else { (dst, src) };
        let fresh_syn = flags.syn && !flags.ack;
        if fresh_syn {
            self.ids.pop(&key);
        }
        if self.ids.len() >= MAX_TRACKED && !self.ids.contains(&key) {
            self.ids.pop_lru();
        }
        let next_id = &mut self.next_id;
        let (id, local, fins) = self.ids.get_or_insert_mut(key, || {
            *next_id += 1;
            (*next_id, src, 0)
        });
        let (id, local) = (*id, *local);
        if flags.fin {
            *fins |= if src == local { 1 } else { 2 };
        }
        if flags.rst || *fins == 3 {
            self.ids.pop(&key);
        }
        (id, direction(src, local))
    }

    /// The socket id and direction of a UDP datagram from `src` to `dst`: the first sender of a
    /// 5-tuple is its local end.
    fn classify_udp(&mut self, src: SocketAddr, dst: SocketAddr) -> (u64, Direction) {
        let key = if src <= dst { (src, dst) } else { (dst, src) };
        if self.udp.len() >= MAX_TRACKED && !self.udp.contains(&key) {
            self.udp.pop_lru();
        }
        let next_id = &mut self.next_id;
        let &mut (id, local) = self.udp.get_or_insert_mut(key, || {
            *next_id += 1;
            (*next_id, src)
        });
        (id, direction(src, local))
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

/// Reads a capture from `input` (`path` names it in errors) and hands every TCP segment to `handler`.
///
/// # Errors
/// The input is not a capture, is corrupt (with the byte offset), or cannot be read.
pub fn read_from(
    path: &Path,
    input: impl Read,
    mut handler: impl FnMut(&Event<'_>),
) -> Result<PcapStats, PcapReadError> {
    read(path, input, &mut handler)
}

/// The longest packet a pcap record may hold (libpcap's limit for every link type it knows).
const MAX_RECORD: u32 = 262_144;
/// The longest pcapng block (Wireshark's limit).
const MAX_BLOCK: u32 = 16 * 1024 * 1024;
/// Read size: records are parsed in place from this buffer; it starts small (most captures in tests
/// are small) and grows up to `BUFFER` as the file goes on, or further for a longer block.
const BUFFER_START: usize = 64 * 1024;
const BUFFER: usize = 1 << 20;

/// Buffered input that keeps each record contiguous and knows the file offset of its first byte.
struct Input<R> {
    reader: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[start]`.
    offset: u64,
    eof: bool,
}

impl<R: Read> Input<R> {
    fn new(reader: R) -> Self {
        Self {
            reader,
            buf: vec![0; BUFFER_START],
            start: 0,
            end: 0,
            offset: 0,
            eof: false,
        }
    }

    /// Makes `n` bytes available at the current position; `false`: the input ends before that.
    fn fill(&mut self, n: usize) -> std::io::Result<bool> {
        while self.end - self.start < n {
            if self.eof {
                return Ok(false);
            }
            if self.start + n > self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                let size = n.max((self.buf.len() * 2).min(BUFFER));
                if size > self.buf.len() {
                    self.buf.resize(size, 0);
                }
            }
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(read) => self.end += read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn available(&self) -> usize {
        self.end - self.start
    }

    /// The next `n` bytes (after a successful `fill(n)`).
    fn peek(&self, n: usize) -> &[u8] {
        &self.buf[self.start..self.start + n]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }
}

/// Byte order of the file (or of the pcapng section) being read.
#[derive(Clone, Copy)]
struct Order {
    big: bool,
}

impl Order {
    fn u16(self, b: &[u8], at: usize) -> u16 {
        let bytes = [b[at], b[at + 1]];
        if self.big {
            u16::from_be_bytes(bytes)
        } else {
            u16::from_le_bytes(bytes)
        }
    }

    fn u32(self, b: &[u8], at: usize) -> u32 {
        let bytes = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.big {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        }
    }
}

/// Everything the frames of a file share while it is read.
struct Frames<'h> {
    connections: Connections,
    stats: PcapStats,
    handler: &'h mut dyn FnMut(&Event<'_>),
}

impl Frames<'_> {
    fn frame(&mut self, linktype: i32, data: &[u8], cut: u32, ts: UnixNanos) {
        frame(
            linktype,
            data,
            cut,
            ts,
            &mut self.connections,
            &mut self.stats,
            self.handler,
        );
    }
}

fn read(
    path: &Path,
    input: impl Read,
    handler: &mut dyn FnMut(&Event<'_>),
) -> Result<PcapStats, PcapReadError> {
    let mut input = Input::new(input);
    let mut frames = Frames {
        connections: Connections::default(),
        stats: PcapStats::default(),
        handler,
    };
    let result = read_input(&mut input, &mut frames);
    result.map_err(|error| match error {
        ReadError::Format(reason) => PcapReadError::Format {
            path: path.to_owned(),
            reason,
        },
        ReadError::Corrupt(offset, reason) => PcapReadError::Corrupt {
            path: path.to_owned(),
            offset,
            reason,
        },
        ReadError::Io(source) => PcapReadError::Read {
            path: path.to_owned(),
            offset: input.offset + input.available() as u64,
            source,
        },
    })?;
    Ok(frames.stats)
}

enum ReadError {
    Format(String),
    Corrupt(u64, String),
    Io(std::io::Error),
}

impl From<std::io::Error> for ReadError {
    fn from(error: std::io::Error) -> Self {
        ReadError::Io(error)
    }
}

fn read_input<R: Read>(input: &mut Input<R>, frames: &mut Frames<'_>) -> Result<(), ReadError> {
    if !input.fill(4)? {
        return Err(ReadError::Format(match input.available() {
            0 => "the file is empty".to_owned(),
            n => format!("the file has only {n} bytes"),
        }));
    }
    let magic = input.peek(4);
    let legacy = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => Some((false, 1_000_000, 16)),
        [0xa1, 0xb2, 0xc3, 0xd4] => Some((true, 1_000_000, 16)),
        [0x4d, 0x3c, 0xb2, 0xa1] => Some((false, 1_000_000_000, 16)),
        [0xa1, 0xb2, 0x3c, 0x4d] => Some((true, 1_000_000_000, 16)),
        // Alexey Kuznetzov's modified format: 8 more bytes per record header.
        [0x34, 0xcd, 0xb2, 0xa1] => Some((false, 1_000_000, 24)),
        [0xa1, 0xb2, 0xcd, 0x34] => Some((true, 1_000_000, 24)),
        _ => None,
    };
    if let Some((big, resolution, record_header)) = legacy {
        return read_pcap(input, frames, Order { big }, resolution, record_header);
    }
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        return read_pcapng(input, frames);
    }
    Err(ReadError::Format(format!(
        "unknown magic number {:02x}{:02x}{:02x}{:02x} at byte offset 0 (pcap starts with a1b2c3d4 \
         or a1b23c4d in either byte order, pcapng with 0a0d0d0a)",
        magic[0], magic[1], magic[2], magic[3]
    )))
}

fn read_pcap<R: Read>(
    input: &mut Input<R>,
    frames: &mut Frames<'_>,
    order: Order,
    resolution: u64,
    record_header: usize,
) -> Result<(), ReadError> {
    if !input.fill(24)? {
        return Err(ReadError::Corrupt(
            input.available() as u64,
            "the file ends inside the 24-byte pcap file header".into(),
        ));
    }
    let header = input.peek(24);
    let (major, minor) = (order.u16(header, 4), order.u16(header, 6));
    if major != 2 {
        return Err(ReadError::Corrupt(
            4,
            format!("unsupported pcap version {major}.{minor} (2.x expected)"),
        ));
    }
    // The upper bits hold the FCS length, not the link type.
    let linktype = (order.u32(header, 20) & 0x03ff_ffff) as i32;
    input.consume(24);
    loop {
        let at = input.offset;
        if !input.fill(record_header)? {
            if input.available() == 0 {
                return Ok(());
            }
            return Err(ReadError::Corrupt(
                at,
                format!(
                    "the file ends inside a record header ({} of {record_header} bytes)",
                    input.available()
                ),
            ));
        }
        let head = input.peek(record_header);
        let (seconds, fraction) = (order.u32(head, 0), order.u32(head, 4));
        let (caplen, origlen) = (order.u32(head, 8), order.u32(head, 12));
        if caplen > MAX_RECORD {
            return Err(ReadError::Corrupt(
                at,
                format!("a record claims {caplen} captured bytes (at most {MAX_RECORD})"),
            ));
        }
        let len = record_header + caplen as usize;
        if !input.fill(len)? {
            return Err(ReadError::Corrupt(
                at,
                format!(
                    "the file ends inside the last record ({caplen} captured bytes announced, {} present)",
                    input.available() - record_header
                ),
            ));
        }
        let ts =
            u64::from(seconds) * 1_000_000_000 + u64::from(fraction) * (1_000_000_000 / resolution);
        let cut = origlen.saturating_sub(caplen);
        let data = &input.buf[input.start + record_header..input.start + len];
        frames.frame(linktype, data, cut, ts);
        input.consume(len);
    }
}

/// pcapng block types this reader uses.
const BLOCK_SECTION_HEADER: u32 = 0x0a0d_0d0a;
const BLOCK_INTERFACE: u32 = 1;
const BLOCK_PACKET_OBSOLETE: u32 = 2;
const BLOCK_SIMPLE_PACKET: u32 = 3;
const BLOCK_ENHANCED_PACKET: u32 = 6;

fn read_pcapng<R: Read>(input: &mut Input<R>, frames: &mut Frames<'_>) -> Result<(), ReadError> {
    let mut order = Order { big: false };
    let mut interfaces: Vec<Interface> = Vec::new();
    loop {
        let at = input.offset;
        if !input.fill(12)? {
            if input.available() == 0 {
                return Ok(());
            }
            return Err(ReadError::Corrupt(
                at,
                format!(
                    "the file ends inside a block header ({} of 12 bytes)",
                    input.available()
                ),
            ));
        }
        let head = input.peek(12);
        let kind = order.u32(head, 0);
        if kind == BLOCK_SECTION_HEADER {
            order = match head[8..12] {
                [0x1a, 0x2b, 0x3c, 0x4d] => Order { big: true },
                [0x4d, 0x3c, 0x2b, 0x1a] => Order { big: false },
                _ => {
                    return Err(ReadError::Corrupt(
                        at + 8,
                        "section header block without the byte-order magic 1a2b3c4d".into(),
                    ))
                }
            };
        }
        let block_len = order.u32(head, 4);
        if block_len < 12 || !block_len.is_multiple_of(4) || block_len > MAX_BLOCK {
            return Err(ReadError::Corrupt(
                at,
                format!(
                    "block of type {kind:#x} has length {block_len} (a multiple of 4 from 12 to {MAX_BLOCK} expected)"
                ),
            ));
        }
        let len = block_len as usize;
        if !input.fill(len)? {
            return Err(ReadError::Corrupt(
                at,
                format!(
                    "the file ends inside the last block ({block_len} bytes announced, {} present)",
                    input.available()
                ),
            ));
        }
        let block = input.peek(len);
        let trailer = order.u32(block, len - 4);
        if trailer != block_len {
            return Err(ReadError::Corrupt(
                at,
                format!("block of type {kind:#x} has length {block_len} at its start but {trailer} at its end"),
            ));
        }
        let body = &block[8..len - 4];
        let corrupt = |what: &str| {
            ReadError::Corrupt(
                at,
                format!("{what} block of {block_len} bytes is too short"),
            )
        };
        match kind {
            BLOCK_SECTION_HEADER => {
                if body.len() < 16 {
                    return Err(corrupt("section header"));
                }
                let major = order.u16(body, 4);
                if major != 1 {
                    return Err(ReadError::Corrupt(
                        at,
                        format!(
                            "unsupported pcapng version {major}.{} (1.x expected)",
                            order.u16(body, 6)
                        ),
                    ));
                }
                interfaces.clear();
            }
            BLOCK_INTERFACE => {
                if body.len() < 8 {
                    return Err(corrupt("interface description"));
                }
                let mut iface = Interface {
                    linktype: i32::from(order.u16(body, 0)),
                    resolution: 1_000_000,
                    offset: 0,
                    snaplen: order.u32(body, 4),
                };
                for (code, value) in options(order, &body[8..]) {
                    match (code, value) {
                        // if_tsresol: 10^-n, or 2^-n when the top bit is set.
                        (9, [exponent, ..]) => {
                            let resolution = if exponent & 0x80 == 0 {
                                10u64.checked_pow(u32::from(*exponent))
                            } else {
                                1u64.checked_shl(u32::from(exponent & 0x7f))
                            };
                            iface.resolution = resolution.ok_or_else(|| {
                                ReadError::Corrupt(
                                    at,
                                    format!(
                                        "interface {} has an impossible timestamp resolution {exponent:#04x}",
                                        interfaces.len()
                                    ),
                                )
                            })?;
                        }
                        // if_tsoffset: seconds added to every timestamp.
                        (14, [a, b, c, d, e, f, g, h, ..]) => {
                            let bytes = [*a, *b, *c, *d, *e, *f, *g, *h];
                            iface.offset = if order.big {
                                i64::from_be_bytes(bytes)
                            } else {
                                i64::from_le_bytes(bytes)
                            };
                        }
                        _ => {}
                    }
                }
                interfaces.push(iface);
            }
            BLOCK_ENHANCED_PACKET | BLOCK_PACKET_OBSOLETE => {
                if body.len() < 20 {
                    return Err(corrupt("packet"));
                }
                let (if_id, ts_high, ts_low) = if kind == BLOCK_ENHANCED_PACKET {
                    (order.u32(body, 0), order.u32(body, 4), order.u32(body, 8))
                } else {
                    (
                        u32::from(order.u16(body, 0)),
                        order.u32(body, 4),
                        order.u32(body, 8),
                    )
                };
                let (caplen, origlen) = (order.u32(body, 12), order.u32(body, 16));
                let Some(data) = body[20..].get(..caplen as usize) else {
                    return Err(ReadError::Corrupt(
                        at,
                        format!(
                            "packet block claims {caplen} captured bytes but holds {}",
                            body.len() - 20
                        ),
                    ));
                };
                match interfaces.get(if_id as usize) {
                    Some(iface) => {
                        let units = (u64::from(ts_high) << 32) | u64::from(ts_low);
                        let ts = units_to_nanos(units, iface.resolution)
                            .saturating_add_signed(iface.offset.saturating_mul(1_000_000_000));
                        frames.frame(iface.linktype, data, origlen.saturating_sub(caplen), ts);
                    }
                    None => {
                        frames.stats.frames += 1;
                        frames.stats.undecodable += 1;
                    }
                }
            }
            BLOCK_SIMPLE_PACKET => {
                if body.len() < 4 {
                    return Err(corrupt("simple packet"));
                }
                let origlen = order.u32(body, 0);
                match interfaces.first() {
                    Some(iface) => {
                        // The captured length is implied: the packet, cut at the snapshot length.
                        let mut captured = body.len() - 4;
                        captured = captured.min(origlen as usize);
                        if iface.snaplen != 0 {
                            captured = captured.min(iface.snaplen as usize);
                        }
                        let cut = origlen.saturating_sub(captured as u32);
                        frames.frame(iface.linktype, &body[4..4 + captured], cut, 0);
                    }
                    None => {
                        frames.stats.frames += 1;
                        frames.stats.undecodable += 1;
                    }
                }
            }
            // Name resolution, statistics, secrets, custom blocks: nothing to decode.
            _ => {}
        }
        input.consume(len);
    }
}

/// The options of a pcapng block as (code, value) pairs, up to `opt_endofopt` or a malformed option.
fn options(order: Order, mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let (code, len) = (order.u16(data, 0), usize::from(order.u16(data, 2)));
        let padded = (len + 3) & !3;
        if code == 0 || data.len() < 4 + padded {
            return None;
        }
        let value = &data[4..4 + len];
        data = &data[4 + padded..];
        Some((code, value))
    })
}

fn units_to_nanos(units: u64, resolution: u64) -> u64 {
    if resolution == 0 {
        return 0;
    }
    let seconds = units / resolution;
    let fraction = units % resolution;
    seconds
        .saturating_mul(1_000_000_000)
        .saturating_add((u128::from(fraction) * 1_000_000_000 / u128::from(resolution)) as u64)
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
        LINKTYPE_ETHERNET => ethernet_payload(data)
            .map(|(ether_type, rest)| LaxSlicedPacket::from_ether_type(ether_type, rest)),
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
        None if sliced.stop_err.is_some() => {
            stats.undecodable += 1;
            return;
        }
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
            tls: false,
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
    // Bytes of the segment the capture did not keep: a gap for the stream, never invented bytes.
    let missing = if ip_payload.incomplete {
        ip_missing(&sliced.net, data).unwrap_or(cut)
    } else {
        0
    };
    if missing > 0 {
        stats.snaplen_cut += 1;
    }
    let payload_len = payload.len() as u32 + missing;
    let flags = TcpFlags {
        syn: tcp.syn(),
        ack: tcp.ack(),
        fin: tcp.fin(),
        rst: tcp.rst(),
    };
    if payload_len == 0 && !(flags.syn || flags.fin || flags.rst) {
        // A bare ACK: the live source never reports one, and it tells the flow table nothing.
        return;
    }
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
        tls: false,
    }));
}

/// The EtherType and payload of an Ethernet II frame, after any number of VLAN tags (802.1Q, 802.1ad
/// and the older QinQ types).
fn ethernet_payload(data: &[u8]) -> Option<(EtherType, &[u8])> {
    let mut at = 12;
    loop {
        let ether_type = u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]);
        match ether_type {
            0x8100 | 0x88a8 | 0x9100 | 0x9200 | 0x9300 => at += 4,
            _ => return Some((EtherType(ether_type), data.get(at + 2..)?)),
        }
    }
}

/// How many bytes of an IP packet the capture cut off, from the IP header's own length.
fn ip_missing(net: &Option<LaxNetSlice<'_>>, frame: &[u8]) -> Option<u32> {
    let (start, claimed) = match net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let header = ip.header();
            (header.slice().as_ptr(), usize::from(header.total_len()))
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let header = ip.header();
            let payload = usize::from(header.payload_length());
            if payload == 0 {
                return None; // a jumbogram: the length is elsewhere
            }
            (header.slice().as_ptr(), 40 + payload)
        }
        None => return None,
    };
    let captured = (frame.as_ptr() as usize + frame.len()).checked_sub(start as usize)?;
    u32::try_from(claimed.checked_sub(captured)?).ok()
}

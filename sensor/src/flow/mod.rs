//! The connection table: one entry per TCP socket (the kernel's socket cookie, or a synthetic id for
//! capture files), two `Stream`s each, the protocol detection, and the parser; and one entry per UDP
//! flow, a socket and one remote address (`udp`).
//!
//! In: `capture::Event`s. Out: `FlowCall`s (a parsed call with both ends' addresses and, for ends that
//! are sockets on this node, their cookie, cgroup and owning process) and `SkipRequest`s for the kernel.
//! Bounded: connections and flows (least recently used evicted), bytes per direction, pending requests;
//! idle connections are closed by `tick` (UDP flows after a shorter idle time). When both ends of a
//! connection are sockets on this node, the call is reported once, from the client's socket. At a
//! close, segments still waiting for missing bytes are delivered after a gap (the missing bytes will not
//! come), before the parser's `close`.

mod reorder;
pub mod stream;
mod udp;

use std::{collections::HashMap, net::SocketAddr, num::NonZeroUsize};

use lru::LruCache;

use crate::{
    capture::{Event, Owner, Packet},
    model::{Direction, ParsedCall, Side, Transport, UnixNanos},
    protocols::{
        detect::{detect, Detection, Hints},
        Parser, ParserStats,
    },
};
use stream::{Segment, Stream, StreamLimits, StreamStats, Target};

/// Limits and timeouts of the connection table.
#[derive(Clone, Copy, Debug)]
pub struct FlowConfig {
    pub max_connections: usize,
    pub stream: StreamLimits,
    /// A connection with no packet for this long is closed (pending requests become `no_response`).
    pub idle_timeout_ns: u64,
    /// The same for UDP flows, which have no end of their own; it is also how long a UDP request
    /// waits for its response before it is `no_response`.
    pub udp_idle_timeout_ns: u64,
    /// Skips longer than this are handed to the kernel, so that it stops copying the bytes.
    pub kernel_skip_threshold: u64,
    /// Bytes of a direction's start examined before a connection is declared not a known protocol.
    pub detect_limit: usize,
    /// Segments whose start matched no protocol before a connection is declared unrecognised.
    pub detect_segments: u32,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            max_connections: 65_536,
            stream: StreamLimits::default(),
            idle_timeout_ns: 120 * 1_000_000_000,
            udp_idle_timeout_ns: 10 * 1_000_000_000,
            kernel_skip_threshold: 8 * 1024,
            detect_limit: 64,
            detect_segments: 4,
        }
    }
}

/// Lately closed sockets remembered, so that a peer finishing later still finds them.
pub const CLOSED_REMEMBERED: usize = 4096;

/// How long a server's TLS call waits for the client's side to show up when the client's socket is on
/// this node too. The probes of two processes report in no fixed order (a server may read a request
/// before the client's write returns), unlike the packets of one connection.
const TLS_PEER_WAIT_NS: u64 = 500_000_000;
/// Server TLS calls waiting so at most; beyond, the oldest go out at once.
const MAX_DEFERRED: usize = 4096;

/// Which held TLS records `FlowTable::release_tls` hands on.
#[derive(Clone, Copy)]
enum Release {
    /// Those whose reorder wait is over by this time (or by the latest time seen).
    Due(UnixNanos),
    /// Those stamped at this time or before.
    Until(UnixNanos),
    All,
}

/// Calls of a server's TLS session held back until its client's side may have shown up.
struct Deferred {
    due: UnixNanos,
    cookie: u64,
    tuple: Tuple,
    calls: Vec<FlowCall>,
}

/// A socket on this node: what the kernel told us about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalSocket {
    pub cookie: u64,
    pub cgroup_id: u64,
    pub owner: Option<Owner>,
}

/// One end of a call as the flow layer knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowEnd {
    pub addr: SocketAddr,
    /// Set when this end is a socket on this node.
    pub local: Option<LocalSocket>,
}

/// A parsed call with its two ends.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowCall {
    pub parsed: ParsedCall,
    pub transport: Transport,
    /// Rebuilt from TLS plaintext.
    pub tls: bool,
    pub client: FlowEnd,
    pub server: FlowEnd,
    /// Bytes the client sent on the connection since the previous call (TCP: stream positions, so
    /// bodies the kernel skipped count).
    pub request_bytes: u64,
    /// Bytes the server sent since the previous call.
    pub response_bytes: u64,
}

/// A request for the kernel: stop copying payload of one direction of one socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkipRequest {
    pub cookie: u64,
    pub direction: Direction,
    /// The socket's TLS plaintext rather than its packets.
    pub tls: bool,
    pub kind: SkipKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipKind {
    /// Until this sequence number.
    UntilSeq(u32),
    /// For good: no parser wants this connection.
    All,
    /// The connection is gone: forget the entry.
    Forget,
}

/// What the table counts, for podtap's own metrics and the exit summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// TCP connections and UDP flows.
    pub connections_opened: u64,
    pub connections_evicted: u64,
    pub connections_idle_closed: u64,
    pub connections_unrecognised: u64,
    /// Server sockets (UDP: flows) whose client socket is on this node too (TCP: their payload is not
    /// copied).
    pub connections_mirrored: u64,
    /// UDP sockets whose first datagrams were no known protocol (the kernel stops copying them).
    pub udp_sockets_unrecognised: u64,
    pub calls: u64,
    pub calls_seen_twice: u64,
    pub streams: StreamStats,
    pub parsers: ParserStats,
    /// `parsers.malformed` per protocol, in `protocol_index` order (http, grpc, dns, redis, kafka, amqp).
    pub malformed_by_protocol: [u64; 6],
}

/// The index of a protocol in per-protocol counters.
#[must_use]
pub fn protocol_index(protocol: crate::model::Protocol) -> usize {
    use crate::model::Protocol as P;
    match protocol {
        P::Http => 0,
        P::Grpc => 1,
        P::Dns => 2,
        P::Redis => 3,
        P::Kafka => 4,
        P::Amqp => 5,
    }
}

/// What a `FlowTable` holds at one moment (`FlowTable::sizes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableSizes {
    pub connections: usize,
    /// Entries of the (local, remote) -> socket index.
    pub tuples: usize,
    pub owners: usize,
    /// Lately closed sockets remembered for their peers.
    pub closed: usize,
    /// The most bytes any one direction holds unparsed.
    pub max_buffered: usize,
    /// The most out-of-order segments any one direction holds.
    pub max_out_of_order: usize,
    /// The most items any one parser holds (`Parser::held`).
    pub max_parser_held: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

enum Protocol {
    Detecting,
    Parsing(Box<dyn Parser>),
    Unrecognised,
    /// The server's socket of a connection whose client socket is on this node too: the client's
    /// socket reports the calls, this one needs no payload.
    Mirrored,
}

impl Protocol {
    /// Whether this connection's payload is of no use (the kernel may stop copying it).
    fn payload_unwanted(&self) -> bool {
        matches!(self, Protocol::Unrecognised | Protocol::Mirrored)
    }
}

/// A TCP connection: its socket. A UDP flow: its socket and the remote address (an unconnected socket
/// talks to many). The TLS plaintext of a TCP connection is a connection of its own, on the same
/// socket: its bytes are not the packets' bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    cookie: u64,
    /// `None` for TCP.
    remote: Option<SocketAddr>,
    tls: bool,
}

impl FlowKey {
    fn tcp(cookie: u64, tls: bool) -> Self {
        Self {
            cookie,
            remote: None,
            tls,
        }
    }

    fn udp(cookie: u64, remote: SocketAddr) -> Self {
        Self {
            cookie,
            remote: Some(remote),
            tls: false,
        }
    }
}

/// A connection or flow as its socket sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Tuple {
    transport: Transport,
    tls: bool,
    local: SocketAddr,
    remote: SocketAddr,
}

impl Tuple {
    /// The same connection as the socket at the other end sees it.
    fn mirror(self) -> Self {
        Self {
            local: self.remote,
            remote: self.local,
            ..self
        }
    }
}

struct Connection {
    transport: Transport,
    local: SocketAddr,
    remote: SocketAddr,
    cgroup_id: u64,
    role: Option<Role>,
    streams: [Stream; 2],
    protocol: Protocol,
    fin: [bool; 2],
    /// Segments that did not start a known protocol, while detecting.
    detect_misses: u32,
    /// The connection's SYN was seen: its first bytes are the protocol's first bytes.
    saw_syn: bool,
    last_seen: UnixNanos,
    /// Kernel skip already requested up to this sequence number, per direction.
    kernel_skip: [Option<u32>; 2],
    /// Bytes sent per direction as of the last calls emitted (the next calls' bytes start there).
    counted: [u64; 2],
    /// UDP: payload bytes per direction (TCP counts by stream position).
    udp_sent: [u64; 2],
}

impl Connection {
    /// Bytes sent so far in direction `dir`, skipped bodies included.
    fn sent(&self, dir: usize) -> u64 {
        match self.transport {
            Transport::Tcp => self.streams[dir].position(),
            Transport::Udp => self.udp_sent[dir],
        }
    }

    /// Request and response bytes since the last calls were emitted; starts counting afresh.
    fn take_bytes(&mut self) -> (u64, u64) {
        let sent = [self.sent(0), self.sent(1)];
        let delta = [
            sent[0].saturating_sub(self.counted[0]),
            sent[1].saturating_sub(self.counted[1]),
        ];
        self.counted = sent;
        // Egress is the local socket's: the client's bytes unless this socket is the server.
        if self.role == Some(Role::Server) {
            (delta[1], delta[0])
        } else {
            (delta[0], delta[1])
        }
    }

    fn tuple(&self, tls: bool) -> Tuple {
        Tuple {
            transport: self.transport,
            tls,
            local: self.local,
            remote: self.remote,
        }
    }

    fn side(&self, direction: Direction) -> Side {
        let local = match self.role {
            Some(Role::Server) => Side::Server,
            _ => Side::Client,
        };
        match direction {
            Direction::Egress => local,
            Direction::Ingress => local.other(),
        }
    }

    /// What detection knows of the bytes going in `direction` besides the bytes.
    fn hints(&self, direction: Direction) -> Hints {
        let (sender, receiver) = match direction {
            Direction::Egress => (self.local, self.remote),
            Direction::Ingress => (self.remote, self.local),
        };
        Hints {
            transport: self.transport,
            sender_port: sender.port(),
            receiver_port: receiver.port(),
        }
    }

    /// Takes the role detection found: bytes going in `direction` were sent by `sender`.
    fn set_role(&mut self, direction: Direction, sender: Side) {
        let local_sent = direction == Direction::Egress;
        let local_is_client = (sender == Side::Client) == local_sent;
        self.role = Some(if local_is_client {
            Role::Client
        } else {
            Role::Server
        });
    }
}

/// Keys are socket cookies and addresses, looked up several times per packet: a fast non-cryptographic
/// hash, seeded per process.
type Hasher = foldhash::fast::RandomState;

/// The table.
pub struct FlowTable {
    config: FlowConfig,
    connections: LruCache<FlowKey, Connection, Hasher>,
    /// (transport, local, remote) -> connection, to find the other end's socket when both ends are on
    /// this node.
    by_tuple: HashMap<Tuple, FlowKey, Hasher>,
    owners: LruCache<u64, Owner, Hasher>,
    /// Sockets closed lately, by (transport, local, remote): the other end of a call may finish after
    /// this one closed (the server's socket often closes before the client has read the last byte).
    closed: LruCache<Tuple, (LocalSocket, Option<Role>), Hasher>,
    /// What each UDP socket's datagrams turned out to be.
    udp_sockets: LruCache<u64, udp::UdpSocket, Hasher>,
    stats: FlowStats,
    parsed: Vec<ParsedCall>,
    deferred: std::collections::VecDeque<Deferred>,
    tls_reorder: reorder::TlsReorder,
}

impl FlowTable {
    #[must_use]
    pub fn new(config: FlowConfig) -> Self {
        let capacity =
            NonZeroUsize::new(config.max_connections.max(1)).unwrap_or(NonZeroUsize::MIN);
        Self {
            config,
            connections: LruCache::with_hasher(capacity, Hasher::default()),
            by_tuple: HashMap::with_hasher(Hasher::default()),
            owners: LruCache::with_hasher(capacity, Hasher::default()),
            closed: LruCache::with_hasher(
                NonZeroUsize::new(CLOSED_REMEMBERED).unwrap_or(NonZeroUsize::MIN),
                Hasher::default(),
            ),
            udp_sockets: LruCache::with_hasher(capacity, Hasher::default()),
            stats: FlowStats::default(),
            parsed: Vec::new(),
            deferred: std::collections::VecDeque::new(),
            tls_reorder: reorder::TlsReorder::default(),
        }
    }

    #[must_use]
    pub fn stats(&self) -> FlowStats {
        self.stats
    }

    #[must_use]
    pub fn connections(&self) -> usize {
        self.connections.len()
    }

    /// What the table holds now, to check it against its bounds (the fuzz targets do, after every event).
    #[must_use]
    pub fn sizes(&self) -> TableSizes {
        let mut sizes = TableSizes {
            connections: self.connections.len(),
            tuples: self.by_tuple.len(),
            owners: self.owners.len(),
            closed: self.closed.len(),
            ..TableSizes::default()
        };
        for (_, conn) in self.connections.iter() {
            for stream in &conn.streams {
                sizes.max_buffered = sizes.max_buffered.max(stream.buffered().len());
                sizes.max_out_of_order = sizes.max_out_of_order.max(stream.held_segments());
            }
            if let Protocol::Parsing(parser) = &conn.protocol {
                sizes.max_parser_held = sizes.max_parser_held.max(parser.held());
            }
        }
        sizes
    }

    /// Takes one capture event; completed calls go to `calls`, kernel requests to `skips`.
    pub fn handle(
        &mut self,
        event: &Event<'_>,
        calls: &mut Vec<FlowCall>,
        skips: &mut Vec<SkipRequest>,
    ) {
        match event {
            Event::Owner(owner) => {
                self.owners.put(owner.cookie, owner.clone());
            }
            Event::Process(_) => {}
            Event::Packet(packet) => {
                self.release_deferred(packet.ts, calls);
                self.tls_reorder.seen(packet.ts);
                if packet.tls {
                    if let Some((early, payload)) = self.tls_reorder.push(packet) {
                        self.tls_packet(early, &payload, calls, skips);
                    }
                    self.release_tls(Release::Due(0), calls, skips);
                    return;
                }
                if packet.flags.fin || packet.flags.rst {
                    // The plaintext a connection carried (stamped no later than its end) comes
                    // before its end; other connections' records keep their wait.
                    self.release_tls(Release::Until(packet.ts), calls, skips);
                }
                self.release_tls(Release::Due(0), calls, skips);
                match packet.transport {
                    Transport::Tcp => self.packet(packet, calls, skips),
                    Transport::Udp => self.datagram(packet, calls, skips),
                }
            }
        }
    }

    /// Hands held TLS records to the table, in time order: those `which` says.
    fn release_tls(
        &mut self,
        which: Release,
        calls: &mut Vec<FlowCall>,
        skips: &mut Vec<SkipRequest>,
    ) {
        loop {
            let next = match which {
                Release::Due(now) => self.tls_reorder.pop_due(now),
                Release::Until(ts) => self.tls_reorder.pop_until(ts),
                Release::All => self.tls_reorder.pop(),
            };
            let Some((packet, payload)) = next else {
                break;
            };
            self.tls_packet(packet, &payload, calls, skips);
        }
    }

    fn tls_packet(
        &mut self,
        packet: Packet<'_>,
        payload: &[u8],
        calls: &mut Vec<FlowCall>,
        skips: &mut Vec<SkipRequest>,
    ) {
        let packet = Packet { payload, ..packet };
        self.packet(&packet, calls, skips);
    }

    fn packet(
        &mut self,
        packet: &Packet<'_>,
        calls: &mut Vec<FlowCall>,
        skips: &mut Vec<SkipRequest>,
    ) {
        let (local, remote) = packet.local_remote();
        let key = FlowKey::tcp(packet.cookie, packet.tls);
        if packet.flags.rst || packet.flags.fin {
            // The TLS session ends with its connection.
            self.end_tls(packet, calls, skips);
        }
        if !self.connections.contains(&key) {
            if packet.flags.rst || (packet.flags.fin && packet.payload_len == 0) {
                return; // the end of something we never saw
            }
            let tuple = Tuple {
                transport: Transport::Tcp,
                tls: packet.tls,
                local,
                remote,
            };
            self.open(key, tuple, packet.cgroup_id, calls, skips);
            if packet.tls && packet.seq == 0 {
                // The first plaintext byte of the session: its protocol's first bytes.
                if let Some(conn) = self.connections.get_mut(&key) {
                    conn.saw_syn = true;
                }
            }
        }
        let Some(conn) = self.connections.get_mut(&key) else {
            return;
        };
        conn.last_seen = conn.last_seen.max(packet.ts);
        let dir = packet.direction.index();
        if packet.flags.syn {
            conn.saw_syn = true;
            conn.streams[dir].syn(packet.seq);
            if conn.role.is_none() {
                // The SYN without ACK comes from the client; the SYN-ACK from the server.
                let sender_is_client = !packet.flags.ack;
                let local_sent = packet.direction == Direction::Egress;
                conn.role = Some(if sender_is_client == local_sent {
                    Role::Client
                } else {
                    Role::Server
                });
            }
        }
        if packet.payload_len > 0 {
            let segment = Segment {
                seq: if packet.flags.syn {
                    packet.seq.wrapping_add(1)
                } else {
                    packet.seq
                },
                payload_len: packet.payload_len,
                skipped: packet.skipped,
                data: packet.payload,
                ts: packet.ts,
            };
            self.parsed.clear();
            let mut parsed = std::mem::take(&mut self.parsed);
            Self::segment(
                &self.config,
                conn,
                packet.direction,
                &segment,
                &mut parsed,
                &mut self.stats,
            );
            Self::kernel_skip(&self.config, key, conn, packet.direction, skips);
            let mirrored =
                Self::check_mirrored(&self.by_tuple, &self.connections, key, &mut self.stats);
            let Some(conn) = self.connections.get_mut(&key) else {
                return;
            };
            if mirrored {
                conn.protocol = Protocol::Mirrored;
            }
            if conn.protocol.payload_unwanted() && conn.kernel_skip[0].is_none() {
                conn.kernel_skip = [Some(0), Some(0)];
                for direction in [Direction::Egress, Direction::Ingress] {
                    skips.push(SkipRequest {
                        cookie: packet.cookie,
                        direction,
                        tls: packet.tls,
                        kind: SkipKind::All,
                    });
                }
            }
            self.emit(key, &mut parsed, calls);
            self.parsed = parsed;
        }
        if packet.flags.rst || packet.flags.fin {
            let conn = self.connections.get_mut(&key);
            if let Some(conn) = conn {
                conn.fin[dir] = true;
                if packet.flags.rst || conn.fin == [true, true] {
                    self.close(key, packet.ts, calls, skips);
                }
            }
        }
    }

    fn open(
        &mut self,
        key: FlowKey,
        tuple: Tuple,
        cgroup_id: u64,
        calls: &mut Vec<FlowCall>,
        skips: &mut Vec<SkipRequest>,
    ) {
        let Tuple {
            transport,
            local,
            remote,
            ..
        } = tuple;
        if self.connections.len() >= self.config.max_connections {
            if let Some((&oldest, conn)) = self.connections.peek_lru() {
                let ts = conn.last_seen;
                self.stats.connections_evicted += 1;
                self.close(oldest, ts, calls, skips);
            }
        }
        self.stats.connections_opened += 1;
        log::trace!("open {key:?} local {local} remote {remote} cgroup {cgroup_id}");
        let limits = self.config.stream;
        self.connections.put(
            key,
            Connection {
                transport,
                local,
                remote,
                cgroup_id,
                role: None,
                streams: [Stream::new(limits), Stream::new(limits)],
                protocol: Protocol::Detecting,
                fin: [false; 2],
                detect_misses: 0,
                saw_syn: false,
                last_seen: 0,
                kernel_skip: [None; 2],
                counted: [0; 2],
                udp_sent: [0; 2],
            },
        );
        self.by_tuple.insert(tuple, key);
    }

    fn segment(
        config: &FlowConfig,
        conn: &mut Connection,
        direction: Direction,
        segment: &Segment<'_>,
        parsed: &mut Vec<ParsedCall>,
        stats: &mut FlowStats,
    ) {
        let dir = direction.index();
        let side = conn.side(direction);
        match &mut conn.protocol {
            Protocol::Unrecognised | Protocol::Mirrored => {}
            Protocol::Parsing(parser) => {
                let mut target = Target {
                    parser: Some(parser.as_mut()),
                    side,
                    calls: parsed,
                };
                conn.streams[dir].segment(segment, &mut target);
            }
            Protocol::Detecting => {
                let mut target = Target {
                    parser: None,
                    side,
                    calls: parsed,
                };
                conn.streams[dir].segment(segment, &mut target);
                let hints = conn.hints(direction);
                match detect(conn.streams[dir].buffered(), &hints) {
                    Detection::Match { protocol, sender } => {
                        conn.set_role(direction, sender);
                        let mut parser = protocol.parser(hints.transport);
                        // Whatever both sides sent before detection, client first.
                        let mut order = [Direction::Egress, Direction::Ingress];
                        if conn.side(Direction::Egress) == Side::Server {
                            order.reverse();
                        }
                        for direction in order {
                            let side = conn.side(direction);
                            let mut target = Target {
                                parser: Some(parser.as_mut()),
                                side,
                                calls: parsed,
                            };
                            conn.streams[direction.index()].flush(segment.ts, &mut target);
                        }
                        conn.protocol = Protocol::Parsing(parser);
                    }
                    Detection::NeedMore
                        if conn.streams[dir].buffered().len() < config.detect_limit => {}
                    Detection::NeedMore | Detection::NoMatch => {
                        if conn.streams[dir].buffered().is_empty() {
                            return;
                        }
                        // A connection open before capture started (no SYN seen) may be caught inside a body: look
                        // again at the start of the next few segments before giving up on it.
                        conn.detect_misses += 1;
                        if !conn.saw_syn && conn.detect_misses < config.detect_segments {
                            conn.streams[dir].clear_buffer();
                            return;
                        }
                        stats.connections_unrecognised += 1;
                        conn.protocol = Protocol::Unrecognised;
                        for stream in &mut conn.streams {
                            stream.discard();
                        }
                    }
                }
            }
        }
    }

    fn kernel_skip(
        config: &FlowConfig,
        key: FlowKey,
        conn: &mut Connection,
        direction: Direction,
        skips: &mut Vec<SkipRequest>,
    ) {
        let dir = direction.index();
        let stream = &conn.streams[dir];
        let pending = stream.pending_skip();
        if pending <= config.kernel_skip_threshold || conn.protocol.payload_unwanted() {
            return;
        }
        let Some(next) = stream.next_seq() else {
            return;
        };
        // Serial-number arithmetic only reaches half the sequence space; longer skips are renewed.
        let until = next.wrapping_add(pending.min(1 << 30) as u32);
        if conn.kernel_skip[dir] != Some(until) {
            conn.kernel_skip[dir] = Some(until);
            skips.push(SkipRequest {
                cookie: key.cookie,
                direction,
                tls: key.tls,
                kind: SkipKind::UntilSeq(until),
            });
        }
    }

    /// A server socket whose client socket is open on this node becomes `Mirrored`.
    fn check_mirrored(
        by_tuple: &HashMap<Tuple, FlowKey, Hasher>,
        connections: &LruCache<FlowKey, Connection, Hasher>,
        key: FlowKey,
        stats: &mut FlowStats,
    ) -> bool {
        let Some(conn) = connections.peek(&key) else {
            return false;
        };
        if conn.role != Some(Role::Server) || !matches!(conn.protocol, Protocol::Parsing(_)) {
            return false;
        }
        let client_here = by_tuple
            .get(&conn.tuple(key.tls).mirror())
            .filter(|&&peer| peer.cookie != key.cookie)
            .and_then(|peer| connections.peek(peer))
            .is_some_and(|peer| {
                peer.role == Some(Role::Client) && matches!(peer.protocol, Protocol::Parsing(_))
            });
        if client_here {
            stats.connections_mirrored += 1;
        }
        client_here
    }

    /// Turns parsed calls of connection `key` into `FlowCall`s with both ends.
    fn emit(&mut self, key: FlowKey, parsed: &mut Vec<ParsedCall>, calls: &mut Vec<FlowCall>) {
        if parsed.is_empty() {
            return;
        }
        let Some(conn) = self.connections.peek_mut(&key) else {
            return;
        };
        let (request_bytes, response_bytes) = conn.take_bytes();
        let conn = &*conn;
        let tuple = conn.tuple(key.tls);
        let (transport, local, remote) = (conn.transport, conn.local, conn.remote);
        let (role, cgroup_id) = (conn.role, conn.cgroup_id);
        let cookie = key.cookie;
        let peer = self.peer(cookie, tuple);
        // TLS: an end whose own TLS is not seen is still a socket on this node, known by its packets.
        let packet_peer = if key.tls && peer.is_none() {
            self.peer(
                cookie,
                Tuple {
                    tls: false,
                    ..tuple
                },
            )
        } else {
            None
        };
        log::trace!(
            "emit {} calls from {key:?} role {role:?} peer {peer:?}",
            parsed.len()
        );
        if role == Some(Role::Server)
            && peer
                .as_ref()
                .is_some_and(|(_, role)| *role == Some(Role::Client))
        {
            // The client's socket is on this node too and reports the same calls.
            self.stats.calls_seen_twice += parsed.len() as u64;
            parsed.clear();
            return;
        }
        let this = FlowEnd {
            addr: local,
            local: Some(LocalSocket {
                cookie,
                cgroup_id,
                owner: self.owners.peek(&cookie).cloned(),
            }),
        };
        let defer = role == Some(Role::Server) && packet_peer.is_some();
        let other = FlowEnd {
            addr: remote,
            local: peer.or(packet_peer).map(|(socket, _)| socket),
        };
        let (client, server) = if role == Some(Role::Server) {
            (other, this)
        } else {
            (this, other)
        };
        let latest = parsed.iter().map(|p| p.end).max().unwrap_or(0);
        // Several calls at once (pipelining): the bytes are shared out, the first takes the rest.
        let n = parsed.len() as u64;
        let built = parsed.drain(..).enumerate().map(|(i, parsed)| {
            let share = |total: u64| total / n + if i == 0 { total % n } else { 0 };
            FlowCall {
                parsed,
                transport,
                tls: key.tls,
                client: client.clone(),
                server: server.clone(),
                request_bytes: share(request_bytes),
                response_bytes: share(response_bytes),
            }
        });
        if defer {
            if self.deferred.len() >= MAX_DEFERRED {
                if let Some(oldest) = self.deferred.pop_front() {
                    self.stats.calls += oldest.calls.len() as u64;
                    calls.extend(oldest.calls);
                }
            }
            self.deferred.push_back(Deferred {
                due: latest.saturating_add(TLS_PEER_WAIT_NS),
                cookie,
                tuple,
                calls: built.collect(),
            });
            return;
        }
        let before = calls.len();
        calls.extend(built);
        self.stats.calls += (calls.len() - before) as u64;
    }

    /// Server TLS calls whose wait is over by `now` (or all, with `UnixNanos::MAX`): dropped when the
    /// client's side showed up and reports them, written otherwise.
    fn release_deferred(&mut self, now: UnixNanos, calls: &mut Vec<FlowCall>) {
        while self.deferred.front().is_some_and(|d| d.due <= now) {
            let Some(deferred) = self.deferred.pop_front() else {
                break;
            };
            let client_reports = self
                .peer(deferred.cookie, deferred.tuple)
                .is_some_and(|(_, role)| role == Some(Role::Client));
            let n = deferred.calls.len() as u64;
            if client_reports {
                self.stats.calls_seen_twice += n;
            } else {
                self.stats.calls += n;
                calls.extend(deferred.calls);
            }
        }
    }

    /// The socket on this node at the other end of socket `cookie`'s connection `tuple`, open or
    /// lately closed.
    fn peer(&self, cookie: u64, tuple: Tuple) -> Option<(LocalSocket, Option<Role>)> {
        let mirror = tuple.mirror();
        let open = self
            .by_tuple
            .get(&mirror)
            .copied()
            .filter(|peer| peer.cookie != cookie)
            .and_then(|peer| {
                let conn = self.connections.peek(&peer)?;
                let socket = LocalSocket {
                    cookie: peer.cookie,
                    cgroup_id: conn.cgroup_id,
                    owner: self.owners.peek(&peer.cookie).cloned(),
                };
                Some((socket, conn.role))
            });
        open.or_else(|| self.closed.peek(&mirror).cloned())
    }

    fn close(
        &mut self,
        key: FlowKey,
        ts: UnixNanos,
        calls: &mut Vec<FlowCall>,
        skips: &mut Vec<SkipRequest>,
    ) {
        let mut parsed = std::mem::take(&mut self.parsed);
        parsed.clear();
        if let Some(conn) = self.connections.peek_mut(&key) {
            let sides = [conn.side(Direction::Egress), conn.side(Direction::Ingress)];
            if let Protocol::Parsing(parser) = &mut conn.protocol {
                // Segments still waiting for missing bytes: those bytes are not coming.
                for (stream, side) in conn.streams.iter_mut().zip(sides) {
                    let mut target = Target {
                        parser: Some(parser.as_mut()),
                        side,
                        calls: &mut parsed,
                    };
                    stream.finish(ts, &mut target);
                }
                parser.close(ts, &mut parsed);
            }
        }
        self.emit(key, &mut parsed, calls);
        self.parsed = parsed;
        log::trace!("close {key:?}");
        let cookie = key.cookie;
        if let Some(conn) = self.connections.pop(&key) {
            let tuple = conn.tuple(key.tls);
            if self.by_tuple.get(&tuple) == Some(&key) {
                self.by_tuple.remove(&tuple);
            }
            self.account(&conn);
            if conn.role.is_some() {
                let owner = self.owners.peek(&cookie).cloned();
                let socket = LocalSocket {
                    cookie,
                    cgroup_id: conn.cgroup_id,
                    owner,
                };
                self.closed.put(tuple, (socket, conn.role));
            }
            if conn.transport == Transport::Udp {
                // The socket may have other flows, and the kernel reports its owner only once.
                return;
            }
            for (dir, requested) in conn.kernel_skip.iter().enumerate() {
                if requested.is_some() {
                    let direction = if dir == 0 {
                        Direction::Egress
                    } else {
                        Direction::Ingress
                    };
                    skips.push(SkipRequest {
                        cookie,
                        direction,
                        tls: key.tls,
                        kind: SkipKind::Forget,
                    });
                }
            }
            if key.tls {
                return; // the socket's packets may still come, and need its owner
            }
        }
        self.owners.pop(&cookie);
    }

    /// A FIN or RST of a TCP socket whose TLS plaintext is a connection too: that one ends with it (a
    /// TLS session has no end the probes see).
    fn end_tls(
        &mut self,
        packet: &Packet<'_>,
        calls: &mut Vec<FlowCall>,
        skips: &mut Vec<SkipRequest>,
    ) {
        if packet.tls {
            return;
        }
        let key = FlowKey::tcp(packet.cookie, true);
        let Some(conn) = self.connections.get_mut(&key) else {
            return;
        };
        conn.fin[packet.direction.index()] = true;
        if packet.flags.rst || conn.fin == [true, true] {
            self.close(key, packet.ts, calls, skips);
        }
    }

    fn account(&mut self, conn: &Connection) {
        for stream in &conn.streams {
            let s = stream.stats;
            let t = &mut self.stats.streams;
            t.retransmitted_segments += s.retransmitted_segments;
            t.out_of_order_segments += s.out_of_order_segments;
            t.gaps += s.gaps;
            t.gap_bytes += s.gap_bytes;
            t.overflow_drops += s.overflow_drops;
        }
        if let Protocol::Parsing(parser) = &conn.protocol {
            let p = parser.stats();
            self.stats.parsers.malformed += p.malformed;
            self.stats.parsers.pending_overflow += p.pending_overflow;
            self.stats.parsers.unmatched_responses += p.unmatched_responses;
            self.stats.malformed_by_protocol[protocol_index(parser.protocol())] += p.malformed;
        }
    }

    /// Closes connections idle since before `now - idle_timeout` (UDP flows: `udp_idle_timeout`).
    pub fn tick(
        &mut self,
        now: UnixNanos,
        calls: &mut Vec<FlowCall>,
        skips: &mut Vec<SkipRequest>,
    ) {
        self.release_tls(Release::Due(now), calls, skips);
        let tcp_deadline = now.saturating_sub(self.config.idle_timeout_ns);
        let udp_deadline = now.saturating_sub(self.config.udp_idle_timeout_ns);
        // Least recently used first; past the later deadline nothing is idle under either timeout.
        let scan_until = tcp_deadline.max(udp_deadline);
        let idle: Vec<(FlowKey, UnixNanos)> = self
            .connections
            .iter()
            .rev()
            .take_while(|(_, conn)| conn.last_seen < scan_until)
            .filter(|(_, conn)| {
                conn.last_seen
                    < match conn.transport {
                        Transport::Tcp => tcp_deadline,
                        Transport::Udp => udp_deadline,
                    }
            })
            .map(|(&key, conn)| (key, conn.last_seen))
            .collect();
        for (key, ts) in idle {
            self.stats.connections_idle_closed += 1;
            self.close(key, ts, calls, skips);
        }
        self.release_deferred(now, calls);
    }

    /// Closes every connection (end of capture): pending requests are reported as `no_response`.
    pub fn finish(&mut self, calls: &mut Vec<FlowCall>, skips: &mut Vec<SkipRequest>) {
        self.release_tls(Release::All, calls, skips);
        while let Some((&key, conn)) = self.connections.peek_lru() {
            let ts = conn.last_seen;
            self.close(key, ts, calls, skips);
        }
        self.release_deferred(UnixNanos::MAX, calls);
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tls_tests;

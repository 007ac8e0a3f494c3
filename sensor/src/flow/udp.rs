//! UDP flows: a socket and one remote address, since an unconnected server socket talks to many
//! clients. A datagram is a whole message: it is fed to the parser as it came (no reassembly, no
//! `Stream`), one `feed` per datagram.
//!
//! Detection runs per flow, but what a socket carries is decided per socket: a socket whose first
//! `detect_segments` datagrams match no protocol is unrecognised, and the kernel stops copying its
//! datagrams; once one flow of a socket matched, other flows that never match are left alone. Flows
//! have no end: they close after `udp_idle_timeout` without datagrams, and requests waiting longer than
//! that are `no_response` (`Parser::expire`) even while the flow stays busy. The server's flow of a call
//! whose client socket is on this node too is `Mirrored`, as for TCP; the kernel keeps copying it (its
//! socket serves other clients).

use std::net::SocketAddr;

use super::{
    FlowCall, FlowKey, FlowTable, Protocol, Role, SkipKind, SkipRequest, Transport, Tuple,
};
use crate::{
    capture::Packet,
    model::{Direction, ParsedCall},
    protocols::detect::{detect, Detection},
};

/// What one UDP socket's datagrams turned out to be, across its flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct UdpSocket {
    state: SocketState,
    /// The remote of the flow where this socket last sent a request as a client. A reply from an
    /// address it never sent to belongs there: the request was translated on its way (a Kubernetes
    /// Service address rewritten to a pod's by DNAT; the kernel shows the request after the rewrite
    /// and the reply after the reverse one).
    last_request_to: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SocketState {
    /// Datagrams that matched no protocol so far.
    Detecting { misses: u32 },
    /// A flow of this socket matched a protocol.
    Known,
    /// Its first datagrams matched nothing: the kernel was asked to stop copying them.
    Unrecognised,
}

impl Default for SocketState {
    fn default() -> Self {
        SocketState::Detecting { misses: 0 }
    }
}

impl FlowTable {
    /// Takes one UDP datagram.
    pub(super) fn datagram(
        &mut self,
        packet: &Packet<'_>,
        calls: &mut Vec<FlowCall>,
        skips: &mut Vec<SkipRequest>,
    ) {
        let cookie = packet.cookie;
        let socket = self.udp_socket(cookie, skips);
        if socket.state == SocketState::Unrecognised {
            return; // copied before the kernel heard it is not wanted
        }
        let (local, remote) = packet.local_remote();
        let mut key = FlowKey::udp(cookie, remote);
        if packet.direction == Direction::Ingress && !self.connections.contains(&key) {
            if let Some(to) = socket.last_request_to {
                let requested = FlowKey::udp(cookie, to);
                if self.connections.contains(&requested) {
                    key = requested;
                }
            }
        }
        if !self.connections.contains(&key) {
            self.open(
                key,
                Tuple {
                    transport: Transport::Udp,
                    tls: false,
                    local,
                    remote,
                },
                packet.cgroup_id,
                calls,
                skips,
            );
        }
        let mut parsed = std::mem::take(&mut self.parsed);
        parsed.clear();
        self.feed_datagram(key, packet, &mut parsed, skips);
        let mirrored =
            Self::check_mirrored(&self.by_tuple, &self.connections, key, &mut self.stats);
        if mirrored {
            if let Some(conn) = self.connections.get_mut(&key) {
                conn.protocol = Protocol::Mirrored;
            }
        }
        self.emit(key, &mut parsed, calls);
        self.parsed = parsed;
    }

    /// Detects or parses one datagram of flow `key`.
    fn feed_datagram(
        &mut self,
        key: FlowKey,
        packet: &Packet<'_>,
        parsed: &mut Vec<ParsedCall>,
        skips: &mut Vec<SkipRequest>,
    ) {
        let Some(conn) = self.connections.get_mut(&key) else {
            return;
        };
        conn.last_seen = conn.last_seen.max(packet.ts);
        let dir = packet.direction.index();
        conn.udp_sent[dir] += u64::from(packet.payload_len);
        let cut = u64::from(packet.payload_len).saturating_sub(packet.payload.len() as u64);
        if cut > 0 {
            // Cut short by the per-packet cap: the parser gets what there is.
            conn.streams[dir].stats.gaps += 1;
            conn.streams[dir].stats.gap_bytes += cut;
        }
        let before = packet.ts.saturating_sub(self.config.udp_idle_timeout_ns);
        let side = conn.side(packet.direction);
        match &mut conn.protocol {
            Protocol::Unrecognised | Protocol::Mirrored => {}
            Protocol::Parsing(parser) => {
                parser.expire(before, parsed);
                parser.feed(side, packet.payload, packet.ts, parsed);
            }
            Protocol::Detecting => {
                match detect(packet.payload, &conn.hints(packet.direction)) {
                    Detection::Match { protocol, sender } => {
                        conn.set_role(packet.direction, sender);
                        let mut parser = protocol.parser(Transport::Udp);
                        let side = conn.side(packet.direction);
                        parser.feed(side, packet.payload, packet.ts, parsed);
                        conn.protocol = Protocol::Parsing(parser);
                        if let Some(socket) = self.udp_sockets.get_mut(&key.cookie) {
                            socket.state = SocketState::Known;
                        }
                    }
                    // A datagram is all there is: nothing more will come to complete it.
                    Detection::NeedMore | Detection::NoMatch => {
                        conn.detect_misses += 1;
                        let mut give_up = conn.detect_misses >= self.config.detect_segments;
                        if let Some(socket) = self.udp_sockets.get_mut(&key.cookie) {
                            if let SocketState::Detecting { misses } = &mut socket.state {
                                *misses += 1;
                                if *misses >= self.config.detect_segments {
                                    // The socket's first datagrams matched nothing.
                                    socket.state = SocketState::Unrecognised;
                                    self.stats.udp_sockets_unrecognised += 1;
                                    for direction in [Direction::Egress, Direction::Ingress] {
                                        skips.push(SkipRequest {
                                            cookie: key.cookie,
                                            direction,
                                            tls: false,
                                            kind: SkipKind::All,
                                        });
                                    }
                                    give_up = true;
                                }
                            }
                        }
                        if give_up {
                            self.stats.connections_unrecognised += 1;
                            conn.protocol = Protocol::Unrecognised;
                        }
                    }
                }
            }
        }
        if packet.direction == Direction::Egress && conn.role == Some(Role::Client) {
            if let Some(socket) = self.udp_sockets.get_mut(&key.cookie) {
                socket.last_request_to = key.remote;
            }
        }
    }

    /// The socket's state, a fresh one for a socket not seen before. The least recently used socket
    /// is forgotten when there are too many; if the kernel was told to skip it, it is told to forget.
    fn udp_socket(&mut self, cookie: u64, skips: &mut Vec<SkipRequest>) -> UdpSocket {
        if let Some(socket) = self.udp_sockets.get(&cookie) {
            return *socket;
        }
        let fresh = UdpSocket::default();
        if let Some((old, evicted)) = self.udp_sockets.push(cookie, fresh) {
            if old != cookie && evicted.state == SocketState::Unrecognised {
                for direction in [Direction::Egress, Direction::Ingress] {
                    skips.push(SkipRequest {
                        cookie: old,
                        direction,
                        tls: false,
                        kind: SkipKind::Forget,
                    });
                }
            }
        }
        fresh
    }
}

#[cfg(test)]
mod tests;

//! The connection table through `FlowTable::handle`, with synthetic capture events.

use super::*;
use crate::capture::TcpFlags;
use crate::model::{CallStatus, Request, Response};

const CLIENT: &str = "10.0.0.1:40000";
const SERVER: &str = "10.0.0.2:80";

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

const SYN: TcpFlags = TcpFlags {
    syn: true,
    ack: false,
    fin: false,
    rst: false,
};
const SYN_ACK: TcpFlags = TcpFlags {
    syn: true,
    ack: true,
    fin: false,
    rst: false,
};
const ACK: TcpFlags = TcpFlags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
};
const FIN: TcpFlags = TcpFlags {
    syn: false,
    ack: true,
    fin: true,
    rst: false,
};

/// One socket's view of a segment from `src` to `dst`.
#[allow(clippy::too_many_arguments)]
fn packet<'a>(
    cookie: u64,
    direction: Direction,
    src: &str,
    dst: &str,
    seq: u32,
    flags: TcpFlags,
    payload: &'a [u8],
    ts: UnixNanos,
) -> Event<'a> {
    Event::Packet(Packet {
        cookie,
        transport: Transport::Tcp,
        cgroup_id: cookie * 100,
        direction,
        src: addr(src),
        dst: addr(dst),
        seq,
        payload_len: u32::try_from(payload.len()).expect("fits"),
        skipped: 0,
        payload,
        flags,
        ts,
        tls: false,
    })
}

/// A flow table and what it has put out (shared with the UDP tests).
pub(super) struct Table {
    pub table: FlowTable,
    pub calls: Vec<FlowCall>,
    pub skips: Vec<SkipRequest>,
}

impl Table {
    pub fn new(config: FlowConfig) -> Self {
        Self {
            table: FlowTable::new(config),
            calls: Vec::new(),
            skips: Vec::new(),
        }
    }

    pub fn handle(&mut self, event: &Event<'_>) {
        self.table.handle(event, &mut self.calls, &mut self.skips);
    }

    pub fn tick(&mut self, now: UnixNanos) {
        self.table.tick(now, &mut self.calls, &mut self.skips);
    }
}

const REQUEST: &[u8] = b"GET /items?id=1 HTTP/1.1\r\nHost: svc\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

fn path_and_status(call: &FlowCall) -> (String, Option<u16>, CallStatus) {
    let Request::Http(request) = &call.parsed.request else {
        panic!("not an HTTP request")
    };
    (
        request.path.clone(),
        call.parsed.response.as_ref().map(|r| match r {
            Response::Http(r) => r.status,
            other => panic!("not an HTTP response: {other:?}"),
        }),
        call.parsed.status,
    )
}

#[test]
fn both_sockets_on_this_node_report_each_call_once_with_both_ends() {
    use Direction::{Egress, Ingress};
    let mut t = Table::new(FlowConfig::default());
    let (c, s) = (1, 2); // client socket, server socket
    let client_seq = 1000;
    let server_seq = 9000;
    t.handle(&Event::Owner(Owner {
        cookie: c,
        pid: 11,
        comm: "curl".into(),
        cgroup_id: 100,
    }));
    t.handle(&Event::Owner(Owner {
        cookie: s,
        pid: 22,
        comm: "nginx".into(),
        cgroup_id: 200,
    }));
    // Handshake, each segment seen by both sockets: the sender's egress, then the receiver's ingress.
    t.handle(&packet(c, Egress, CLIENT, SERVER, client_seq, SYN, &[], 1));
    t.handle(&packet(s, Ingress, CLIENT, SERVER, client_seq, SYN, &[], 1));
    t.handle(&packet(
        s,
        Egress,
        SERVER,
        CLIENT,
        server_seq,
        SYN_ACK,
        &[],
        2,
    ));
    t.handle(&packet(
        c,
        Ingress,
        SERVER,
        CLIENT,
        server_seq,
        SYN_ACK,
        &[],
        2,
    ));
    for round in 0..2u32 {
        let cs = client_seq + 1 + round * REQUEST.len() as u32;
        let ss = server_seq + 1 + round * RESPONSE.len() as u32;
        let ts = 10 + u64::from(round) * 10;
        t.handle(&packet(c, Egress, CLIENT, SERVER, cs, ACK, REQUEST, ts));
        t.handle(&packet(s, Ingress, CLIENT, SERVER, cs, ACK, REQUEST, ts));
        t.handle(&packet(
            s,
            Egress,
            SERVER,
            CLIENT,
            ss,
            ACK,
            RESPONSE,
            ts + 5,
        ));
        t.handle(&packet(
            c,
            Ingress,
            SERVER,
            CLIENT,
            ss,
            ACK,
            RESPONSE,
            ts + 5,
        ));
    }
    assert_eq!(t.calls.len(), 2, "{:?}", t.calls);
    for call in &t.calls {
        assert_eq!(
            path_and_status(call),
            ("/items".into(), Some(200), CallStatus::Ok)
        );
        assert_eq!(call.client.addr, addr(CLIENT));
        assert_eq!(call.server.addr, addr(SERVER));
        let client = call.client.local.as_ref().expect("client socket");
        let server = call.server.local.as_ref().expect("server socket");
        assert_eq!((client.cookie, client.cgroup_id), (c, 100));
        assert_eq!((server.cookie, server.cgroup_id), (s, 200));
        let client_owner = client.owner.as_ref().expect("client owner");
        let server_owner = server.owner.as_ref().expect("server owner");
        assert_eq!((client_owner.pid, client_owner.comm.as_str()), (11, "curl"));
        assert_eq!(
            (server_owner.pid, server_owner.comm.as_str()),
            (22, "nginx")
        );
    }
    // The server's socket is recognised as the mirror of the client's as soon as both parse: its
    // payload is no longer wanted (the kernel is asked to stop copying it), so it reports nothing twice.
    let stats = t.table.stats();
    assert_eq!(stats.connections_mirrored, 1);
    assert_eq!(stats.calls_seen_twice, 0);
    for direction in [Egress, Ingress] {
        assert!(
            t.skips.contains(&SkipRequest {
                cookie: s,
                direction,
                tls: false,
                kind: SkipKind::All
            }),
            "{:?}",
            t.skips
        );
    }
    // Closing both sockets reports nothing more.
    let cs = client_seq + 1 + 2 * REQUEST.len() as u32;
    let ss = server_seq + 1 + 2 * RESPONSE.len() as u32;
    t.handle(&packet(c, Egress, CLIENT, SERVER, cs, FIN, &[], 50));
    t.handle(&packet(s, Ingress, CLIENT, SERVER, cs, FIN, &[], 50));
    t.handle(&packet(s, Egress, SERVER, CLIENT, ss, FIN, &[], 51));
    t.handle(&packet(c, Ingress, SERVER, CLIENT, ss, FIN, &[], 51));
    assert_eq!(t.calls.len(), 2);
    assert_eq!(t.table.connections(), 0);
}

#[test]
fn server_socket_alone_role_from_syn() {
    use Direction::{Egress, Ingress};
    let mut t = Table::new(FlowConfig::default());
    t.handle(&Event::Owner(Owner {
        cookie: 7,
        pid: 70,
        comm: "server".into(),
        cgroup_id: 700,
    }));
    t.handle(&packet(7, Ingress, CLIENT, SERVER, 100, SYN, &[], 1));
    t.handle(&packet(7, Egress, SERVER, CLIENT, 500, SYN_ACK, &[], 2));
    t.handle(&packet(7, Ingress, CLIENT, SERVER, 101, ACK, REQUEST, 3));
    t.handle(&packet(7, Egress, SERVER, CLIENT, 501, ACK, RESPONSE, 4));
    assert_eq!(t.calls.len(), 1);
    let call = &t.calls[0];
    assert_eq!(call.client.addr, addr(CLIENT));
    assert_eq!(call.client.local, None);
    assert_eq!(call.server.addr, addr(SERVER));
    let server = call.server.local.as_ref().expect("this socket");
    assert_eq!(server.cookie, 7);
    assert_eq!(server.owner.as_ref().map(|o| o.pid), Some(70));
    assert_eq!((call.parsed.start, call.parsed.end), (3, 4));
}

#[test]
fn role_from_content_without_syn() {
    use Direction::{Egress, Ingress};
    // A connection opened before the capture started: no SYN. This socket receives the request, so
    // it is the server.
    let mut t = Table::new(FlowConfig::default());
    t.handle(&packet(3, Ingress, CLIENT, SERVER, 77_777, ACK, REQUEST, 1));
    t.handle(&packet(
        3,
        Egress,
        SERVER,
        CLIENT,
        4_000_000_000,
        ACK,
        RESPONSE,
        2,
    ));
    assert_eq!(t.calls.len(), 1);
    assert_eq!(t.calls[0].server.local.as_ref().map(|l| l.cookie), Some(3));
    assert_eq!(t.calls[0].client.addr, addr(CLIENT));
    // And the other way round: the socket that sends the request is the client.
    let mut t = Table::new(FlowConfig::default());
    t.handle(&packet(4, Egress, CLIENT, SERVER, 5, ACK, REQUEST, 1));
    t.handle(&packet(4, Ingress, SERVER, CLIENT, 9, ACK, RESPONSE, 2));
    assert_eq!(t.calls.len(), 1);
    assert_eq!(t.calls[0].client.local.as_ref().map(|l| l.cookie), Some(4));
    assert_eq!(t.calls[0].server.addr, addr(SERVER));
}

#[test]
fn response_seen_first_then_request_from_the_other_side() {
    use Direction::{Egress, Ingress};
    // Joined mid-stream: the first bytes are a response (to a request never seen). The server is
    // still identified, and the next exchange is a call.
    let mut t = Table::new(FlowConfig::default());
    t.handle(&packet(5, Egress, SERVER, CLIENT, 100, ACK, RESPONSE, 1));
    t.handle(&packet(5, Ingress, CLIENT, SERVER, 900, ACK, REQUEST, 2));
    t.handle(&packet(
        5,
        Egress,
        SERVER,
        CLIENT,
        100 + RESPONSE.len() as u32,
        ACK,
        RESPONSE,
        3,
    ));
    assert_eq!(t.calls.len(), 1);
    assert_eq!(t.calls[0].server.local.as_ref().map(|l| l.cookie), Some(5));
}

#[test]
fn unrecognised_protocol_skips_both_directions_and_yields_nothing() {
    use Direction::{Egress, Ingress};
    let mut t = Table::new(FlowConfig::default());
    t.handle(&packet(9, Egress, CLIENT, SERVER, 1, SYN, &[], 1));
    // A TLS ClientHello.
    let hello = [
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    t.handle(&packet(9, Egress, CLIENT, SERVER, 2, ACK, &hello, 2));
    t.handle(&packet(9, Ingress, SERVER, CLIENT, 50, ACK, RESPONSE, 3));
    assert!(t.calls.is_empty());
    assert_eq!(
        t.skips,
        vec![
            SkipRequest {
                cookie: 9,
                direction: Egress,
                tls: false,
                kind: SkipKind::All
            },
            SkipRequest {
                cookie: 9,
                direction: Ingress,
                tls: false,
                kind: SkipKind::All
            },
        ]
    );
    assert_eq!(t.table.stats().connections_unrecognised, 1);
    t.table.finish(&mut t.calls, &mut t.skips);
    assert!(t.calls.is_empty());
}

#[test]
fn large_content_length_body_becomes_a_kernel_skip() {
    use Direction::{Egress, Ingress};
    let mut t = Table::new(FlowConfig::default());
    t.handle(&packet(1, Egress, CLIENT, SERVER, 10, SYN, &[], 1));
    t.handle(&packet(1, Ingress, SERVER, CLIENT, 20_000, SYN_ACK, &[], 2));
    t.handle(&packet(1, Egress, CLIENT, SERVER, 11, ACK, REQUEST, 3));
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
    let first = [&head[..], &[b'x'; 1000][..]].concat();
    t.handle(&packet(1, Ingress, SERVER, CLIENT, 20_001, ACK, &first, 4));
    let body_start = 20_001 + head.len() as u32;
    assert_eq!(
        t.skips,
        vec![SkipRequest {
            cookie: 1,
            direction: Ingress,
            tls: false,
            kind: SkipKind::UntilSeq(body_start + 100_000),
        }]
    );
    assert!(t.calls.is_empty());
    // The kernel then reports nothing until the segment holding the body's end, with the skipped
    // part not copied.
    let last_seq = body_start + 100_000 - 500;
    t.handle(&Event::Packet(Packet {
        cookie: 1,
        transport: Transport::Tcp,
        cgroup_id: 100,
        direction: Ingress,
        src: addr(SERVER),
        dst: addr(CLIENT),
        seq: last_seq,
        payload_len: 500,
        skipped: 500,
        payload: &[],
        flags: ACK,
        ts: 5,
        tls: false,
    }));
    assert_eq!(t.calls.len(), 1, "the call completes at the body's end");
    assert_eq!(
        path_and_status(&t.calls[0]),
        ("/items".into(), Some(200), CallStatus::Ok)
    );
    assert_eq!(t.calls[0].parsed.end, 5);
    assert_eq!(t.table.stats().streams.gaps, 0);
}

#[test]
fn first_segment_cut_by_the_copy_limit_is_detected_and_its_body_skipped() {
    use Direction::{Egress, Ingress};
    let mut t = Table::new(FlowConfig::default());
    t.handle(&packet(1, Egress, CLIENT, SERVER, 10, SYN, &[], 1));
    t.handle(&packet(1, Ingress, SERVER, CLIENT, 20_000, SYN_ACK, &[], 2));
    // An upload whose head and body start share one 60 kB segment, of which 4 kB were copied.
    let head = b"POST /upload HTTP/1.1\r\nHost: svc\r\nContent-Length: 100000\r\n\r\n";
    let copied = [&head[..], &[b'x'; 4096 - 64][..]].concat();
    t.handle(&Event::Packet(Packet {
        cookie: 1,
        cgroup_id: 100,
        direction: Egress,
        src: addr(CLIENT),
        dst: addr(SERVER),
        seq: 11,
        payload_len: 60_000,
        skipped: 0,
        payload: &copied,
        flags: ACK,
        ts: 3,
        transport: Transport::Tcp,
        tls: false,
    }));
    let body_end = 11 + head.len() as u32 + 100_000;
    assert_eq!(
        t.skips,
        vec![SkipRequest {
            cookie: 1,
            direction: Egress,
            tls: false,
            kind: SkipKind::UntilSeq(body_end),
        }]
    );
    t.handle(&packet(
        1, Ingress, SERVER, CLIENT, 20_001, ACK, RESPONSE, 4,
    ));
    assert_eq!(
        t.calls.iter().map(path_and_status).collect::<Vec<_>>(),
        [("/upload".into(), Some(200), CallStatus::Ok)]
    );
    assert_eq!(t.table.stats().streams.gaps, 0);
}

#[test]
fn idle_connection_with_a_pending_request_closes_as_no_response() {
    use Direction::Egress;
    let config = FlowConfig::default();
    let mut t = Table::new(config);
    t.handle(&packet(1, Egress, CLIENT, SERVER, 1, ACK, REQUEST, 1_000));
    t.table
        .tick(1_000 + config.idle_timeout_ns, &mut t.calls, &mut t.skips);
    assert!(t.calls.is_empty(), "not idle yet");
    t.table
        .tick(1_001 + config.idle_timeout_ns, &mut t.calls, &mut t.skips);
    assert_eq!(t.calls.len(), 1);
    assert_eq!(
        path_and_status(&t.calls[0]),
        ("/items".into(), None, CallStatus::NoResponse)
    );
    assert_eq!(t.calls[0].parsed.end, 1_000);
    assert_eq!(t.table.connections(), 0);
    assert_eq!(t.table.stats().connections_idle_closed, 1);
}

#[test]
fn max_connections_evicts_the_least_recently_used() {
    use Direction::Egress;
    let mut t = Table::new(FlowConfig {
        max_connections: 2,
        ..FlowConfig::default()
    });
    let second = b"GET /second HTTP/1.1\r\n\r\n";
    t.handle(&packet(1, Egress, CLIENT, SERVER, 1, ACK, REQUEST, 1));
    t.handle(&packet(
        2,
        Egress,
        "10.0.0.1:40001",
        SERVER,
        1,
        ACK,
        second,
        2,
    ));
    // Connection 1 is used again: 2 is now the least recently used.
    t.handle(&packet(
        1,
        Egress,
        CLIENT,
        SERVER,
        1 + REQUEST.len() as u32,
        ACK,
        REQUEST,
        3,
    ));
    t.handle(&packet(
        3,
        Egress,
        "10.0.0.1:40002",
        SERVER,
        1,
        ACK,
        REQUEST,
        4,
    ));
    assert_eq!(t.table.connections(), 2);
    assert_eq!(t.table.stats().connections_evicted, 1);
    assert_eq!(t.calls.len(), 1);
    assert_eq!(
        path_and_status(&t.calls[0]),
        ("/second".into(), None, CallStatus::NoResponse)
    );
    assert_eq!(t.calls[0].client.local.as_ref().map(|l| l.cookie), Some(2));
}

#[test]
fn rst_closes_and_flushes() {
    use Direction::{Egress, Ingress};
    let mut t = Table::new(FlowConfig::default());
    t.handle(&packet(1, Egress, CLIENT, SERVER, 1, ACK, REQUEST, 1));
    let rst = TcpFlags { rst: true, ..ACK };
    t.handle(&packet(1, Ingress, SERVER, CLIENT, 9, rst, &[], 2));
    assert_eq!(t.calls.len(), 1);
    assert_eq!(t.calls[0].parsed.status, CallStatus::NoResponse);
    assert_eq!(t.table.connections(), 0);
}

//! TLS plaintext as a layer of its socket: calls with `tls`, nothing from the ciphertext, the session
//! ending with its connection, and one report when both ends are on this node.

use super::tests::{addr, Table};
use super::*;
use crate::capture::TcpFlags;

const CLIENT: &str = "10.0.0.1:40000";
const SERVER: &str = "10.0.0.2:443";
const REQUEST: &[u8] = b"GET /secret HTTP/1.1\r\nHost: api\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
/// The start of a TLS ClientHello record, as the packets carry it.
const CLIENT_HELLO: &[u8] =
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcdefghijklmnopqrstuvwxyz012345";

#[allow(clippy::too_many_arguments)]
fn event<'a>(
    tls: bool,
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
        tls,
    })
}

const ACK: TcpFlags = TcpFlags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
};
const SYN: TcpFlags = TcpFlags {
    syn: true,
    ack: false,
    fin: false,
    rst: false,
};
const FIN: TcpFlags = TcpFlags {
    syn: false,
    ack: true,
    fin: true,
    rst: false,
};
const NONE: TcpFlags = TcpFlags {
    syn: false,
    ack: false,
    fin: false,
    rst: false,
};
const MS: u64 = 1_000_000;

#[test]
fn plaintext_makes_a_tls_call_and_ciphertext_none() {
    use Direction::{Egress, Ingress};
    let mut t = Table::new(FlowConfig::default());
    let c = 7;
    // The client socket's packets: SYN, ClientHello and more ciphertext (no protocol).
    t.handle(&event(false, c, Egress, CLIENT, SERVER, 100, SYN, &[], MS));
    t.handle(&event(
        false,
        c,
        Egress,
        CLIENT,
        SERVER,
        101,
        ACK,
        CLIENT_HELLO,
        2 * MS,
    ));
    // The plaintext the client's SSL_write / SSL_read calls passed, on the same socket.
    t.handle(&event(
        true,
        c,
        Egress,
        CLIENT,
        SERVER,
        0,
        NONE,
        REQUEST,
        3 * MS,
    ));
    t.handle(&event(
        true,
        c,
        Ingress,
        SERVER,
        CLIENT,
        0,
        NONE,
        RESPONSE,
        4 * MS,
    ));
    assert_eq!(t.calls.len(), 1, "one call from the plaintext");
    let call = &t.calls[0];
    assert!(call.tls);
    assert_eq!(call.client.addr, addr(CLIENT));
    assert_eq!(call.server.addr, addr(SERVER));
    assert_eq!(call.client.local.as_ref().map(|l| l.cookie), Some(c));
    // The ciphertext layer gave up on its own, and the kernel is told to stop copying it, not the
    // plaintext.
    t.handle(&event(
        false,
        c,
        Egress,
        CLIENT,
        SERVER,
        101 + CLIENT_HELLO.len() as u32,
        ACK,
        &[0x17; 64],
        5 * MS,
    ));
    t.handle(&event(
        false,
        c,
        Egress,
        CLIENT,
        SERVER,
        101 + CLIENT_HELLO.len() as u32 + 64,
        ACK,
        &[0x17; 64],
        6 * MS,
    ));
    assert!(t.skips.iter().all(|s| !s.tls), "{:?}", t.skips);
    assert_eq!(t.calls.len(), 1, "no call from ciphertext");
}

#[test]
fn the_session_ends_with_its_connection() {
    use Direction::{Egress, Ingress};
    let mut t = Table::new(FlowConfig::default());
    let c = 7;
    t.handle(&event(false, c, Egress, CLIENT, SERVER, 100, SYN, &[], MS));
    // A request whose response never comes.
    t.handle(&event(
        true,
        c,
        Egress,
        CLIENT,
        SERVER,
        0,
        NONE,
        REQUEST,
        2 * MS,
    ));
    assert!(t.calls.is_empty());
    t.handle(&event(
        false,
        c,
        Egress,
        CLIENT,
        SERVER,
        101,
        FIN,
        &[],
        3 * MS,
    ));
    t.handle(&event(
        false,
        c,
        Ingress,
        SERVER,
        CLIENT,
        500,
        FIN,
        &[],
        4 * MS,
    ));
    assert_eq!(t.calls.len(), 1, "the pending request ends as no_response");
    assert!(t.calls[0].tls);
    assert_eq!(
        t.calls[0].parsed.status,
        crate::model::CallStatus::NoResponse
    );
    assert_eq!(t.table.connections(), 0, "both layers closed");
}

#[test]
fn a_server_call_waits_for_its_client_side_and_is_reported_once() {
    use Direction::{Egress, Ingress};
    let mut t = Table::new(FlowConfig::default());
    let (c, s) = (1, 2);
    // Both sockets' packets are seen (both ends on this node).
    t.handle(&event(false, c, Egress, CLIENT, SERVER, 100, SYN, &[], MS));
    t.handle(&event(false, s, Ingress, CLIENT, SERVER, 100, SYN, &[], MS));
    // The server's probes report first: it read the request before the client's SSL_write returned.
    t.handle(&event(
        true,
        s,
        Ingress,
        CLIENT,
        SERVER,
        0,
        NONE,
        REQUEST,
        2 * MS,
    ));
    t.handle(&event(
        true,
        s,
        Egress,
        SERVER,
        CLIENT,
        0,
        NONE,
        RESPONSE,
        3 * MS,
    ));
    assert!(
        t.calls.is_empty(),
        "held back: the client's side may still come"
    );
    t.handle(&event(
        true,
        c,
        Egress,
        CLIENT,
        SERVER,
        0,
        NONE,
        REQUEST,
        4 * MS,
    ));
    t.handle(&event(
        true,
        c,
        Ingress,
        SERVER,
        CLIENT,
        0,
        NONE,
        RESPONSE,
        5 * MS,
    ));
    assert_eq!(t.calls.len(), 1, "the client's side reports");
    t.tick(2_000 * MS);
    assert_eq!(t.calls.len(), 1, "and the server's copy is dropped");
    assert_eq!(t.table.stats().calls_seen_twice, 1);
    let call = &t.calls[0];
    assert_eq!(call.client.local.as_ref().map(|l| l.cookie), Some(c));
    assert_eq!(call.server.local.as_ref().map(|l| l.cookie), Some(s));
}

#[test]
fn a_server_call_whose_client_tls_is_unseen_goes_out_after_the_wait_with_both_sockets() {
    use Direction::{Egress, Ingress};
    let mut t = Table::new(FlowConfig::default());
    let (c, s) = (1, 2);
    t.handle(&Event::Owner(Owner {
        cookie: c,
        pid: 11,
        comm: "grpcio-client".into(),
        cgroup_id: 100,
    }));
    t.handle(&event(false, c, Egress, CLIENT, SERVER, 100, SYN, &[], MS));
    t.handle(&event(false, s, Ingress, CLIENT, SERVER, 100, SYN, &[], MS));
    t.handle(&event(
        true,
        s,
        Ingress,
        CLIENT,
        SERVER,
        0,
        NONE,
        REQUEST,
        2 * MS,
    ));
    t.handle(&event(
        true,
        s,
        Egress,
        SERVER,
        CLIENT,
        0,
        NONE,
        RESPONSE,
        3 * MS,
    ));
    assert!(t.calls.is_empty());
    t.tick(2_000 * MS);
    assert_eq!(t.calls.len(), 1, "nobody else reports it");
    let call = &t.calls[0];
    assert!(call.tls);
    // The client end is still named, from its socket's packets and owner.
    let client = call
        .client
        .local
        .as_ref()
        .expect("client socket on this node");
    assert_eq!(client.cookie, c);
    assert_eq!(client.owner.as_ref().map(|o| o.pid), Some(11));
}

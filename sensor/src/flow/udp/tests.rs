//! UDP flows through `FlowTable::handle`, with synthetic datagrams: DNS between sockets on and off this
//! node, an unconnected server socket with several clients, timeouts, sockets no parser wants, NAT.

use simple_dns::{
    rdata::RData, Name, Packet as DnsPacket, Question, ResourceRecord, CLASS, QCLASS, QTYPE, TYPE,
};

use super::super::tests::{addr, Table};
use super::super::*;
use crate::capture::TcpFlags;
use crate::model::{CallStatus, Request, Response};

const CLIENT: &str = "10.0.0.1:40000";
const OTHER_CLIENT: &str = "10.0.0.3:41000";
const SERVER: &str = "10.0.0.2:53";
const SECOND: u64 = 1_000_000_000;

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut packet = DnsPacket::new_query(id);
    packet.questions.push(Question::new(
        Name::new_unchecked(name),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    packet.build_bytes_vec().expect("query")
}

fn answer(id: u16, name: &str, ip: [u8; 4]) -> Vec<u8> {
    let mut packet = DnsPacket::new_reply(id);
    packet.questions.push(Question::new(
        Name::new_unchecked(name),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    packet.answers.push(ResourceRecord::new(
        Name::new_unchecked(name),
        CLASS::IN,
        60,
        RData::A(simple_dns::rdata::A {
            address: u32::from_be_bytes(ip),
        }),
    ));
    packet.build_bytes_vec().expect("answer")
}

/// One socket's view of a datagram from `src` to `dst`.
fn datagram<'a>(
    cookie: u64,
    direction: Direction,
    src: &str,
    dst: &str,
    payload: &'a [u8],
    ts: UnixNanos,
) -> Event<'a> {
    Event::Packet(Packet {
        cookie,
        transport: Transport::Udp,
        cgroup_id: cookie * 100,
        direction,
        src: addr(src),
        dst: addr(dst),
        seq: 0,
        payload_len: u32::try_from(payload.len()).expect("fits"),
        skipped: 0,
        payload,
        flags: TcpFlags::default(),
        ts,
        tls: false,
    })
}

/// (name, answers, status) of a DNS call.
fn dns(call: &FlowCall) -> (String, Vec<String>, CallStatus) {
    let Request::Dns(request) = &call.parsed.request else {
        panic!("not DNS: {call:?}")
    };
    let answers = match &call.parsed.response {
        Some(Response::Dns(r)) => r.answers.clone(),
        Some(other) => panic!("not DNS: {other:?}"),
        None => Vec::new(),
    };
    (request.name.clone(), answers, call.parsed.status)
}

fn owner(cookie: u64, pid: u32, comm: &str) -> Event<'static> {
    Event::Owner(Owner {
        cookie,
        pid,
        comm: comm.into(),
        cgroup_id: cookie * 100,
    })
}

#[test]
fn both_sockets_on_this_node_report_each_lookup_once() {
    use Direction::{Egress, Ingress};
    let mut t = Table::new(FlowConfig::default());
    let (c, s) = (1, 2);
    t.handle(&owner(c, 11, "dig"));
    t.handle(&owner(s, 22, "dnsmasq"));
    for (i, name) in ["a.test", "b.test", "c.test"].into_iter().enumerate() {
        let id = u16::try_from(i).expect("id") + 100;
        let ts = 10 * (i as u64 + 1);
        let q = query(id, name);
        let r = answer(id, name, [10, 0, 0, 9]);
        t.handle(&datagram(c, Egress, CLIENT, SERVER, &q, ts));
        t.handle(&datagram(s, Ingress, CLIENT, SERVER, &q, ts));
        t.handle(&datagram(s, Egress, SERVER, CLIENT, &r, ts + 5));
        t.handle(&datagram(c, Ingress, SERVER, CLIENT, &r, ts + 5));
    }
    assert_eq!(t.calls.len(), 3, "{:?}", t.calls);
    for (call, name) in t.calls.iter().zip(["a.test", "b.test", "c.test"]) {
        assert_eq!(
            dns(call),
            (name.into(), vec!["10.0.0.9".into()], CallStatus::Ok)
        );
        assert_eq!(call.transport, Transport::Udp);
        assert_eq!(
            (call.client.addr, call.server.addr),
            (addr(CLIENT), addr(SERVER))
        );
        let client = call.client.local.as_ref().expect("client socket");
        let server = call.server.local.as_ref().expect("server socket");
        assert_eq!((client.cookie, client.cgroup_id), (c, 100));
        assert_eq!((server.cookie, server.cgroup_id), (s, 200));
        assert_eq!(client.owner.as_ref().map(|o| o.pid), Some(11));
        assert_eq!(server.owner.as_ref().map(|o| o.pid), Some(22));
    }
    let stats = t.table.stats();
    assert_eq!(stats.connections_mirrored, 1);
    assert_eq!(stats.calls_seen_twice, 0);
    // The server's socket serves other clients too: the kernel keeps copying it.
    assert!(t.skips.is_empty(), "{:?}", t.skips);
    t.table.finish(&mut t.calls, &mut t.skips);
    assert_eq!(t.calls.len(), 3);
}

#[test]
fn one_server_socket_many_clients() {
    use Direction::{Egress, Ingress};
    let mut t = Table::new(FlowConfig::default());
    let s = 5;
    t.handle(&owner(s, 50, "dnsmasq"));
    let (q1, q2) = (query(1, "one.test"), query(1, "two.test"));
    // The same id from two clients: two flows, two calls.
    t.handle(&datagram(s, Ingress, CLIENT, SERVER, &q1, 1));
    t.handle(&datagram(s, Ingress, OTHER_CLIENT, SERVER, &q2, 2));
    t.handle(&datagram(
        s,
        Egress,
        SERVER,
        OTHER_CLIENT,
        &answer(1, "two.test", [2, 2, 2, 2]),
        3,
    ));
    t.handle(&datagram(
        s,
        Egress,
        SERVER,
        CLIENT,
        &answer(1, "one.test", [1, 1, 1, 1]),
        4,
    ));
    assert_eq!(t.calls.len(), 2);
    assert_eq!(dns(&t.calls[0]).1, ["2.2.2.2"]);
    assert_eq!(t.calls[0].client.addr, addr(OTHER_CLIENT));
    assert_eq!(dns(&t.calls[1]).1, ["1.1.1.1"]);
    assert_eq!(t.calls[1].client.addr, addr(CLIENT));
    for call in &t.calls {
        assert_eq!(call.client.local, None);
        let server = call.server.local.as_ref().expect("this socket");
        assert_eq!(server.cookie, s);
        assert_eq!(server.owner.as_ref().map(|o| o.pid), Some(50));
    }
    assert_eq!(t.table.connections(), 2);
    assert_eq!(t.table.stats().parsers.unmatched_responses, 0);
}

#[test]
fn unanswered_query_is_no_response_after_the_udp_timeout() {
    use Direction::Egress;
    let config = FlowConfig {
        udp_idle_timeout_ns: 2 * SECOND,
        ..FlowConfig::default()
    };
    let mut t = Table::new(config);
    t.handle(&datagram(
        1,
        Egress,
        CLIENT,
        SERVER,
        &query(9, "lost.test"),
        SECOND,
    ));
    t.tick(3 * SECOND);
    assert!(t.calls.is_empty(), "not idle for 2 s yet");
    t.tick(3 * SECOND + 1);
    assert_eq!(t.calls.len(), 1);
    assert_eq!(
        dns(&t.calls[0]),
        ("lost.test".into(), vec![], CallStatus::NoResponse)
    );
    assert_eq!(t.calls[0].parsed.end, SECOND);
    assert_eq!(t.table.connections(), 0);
    assert_eq!(t.table.stats().connections_idle_closed, 1);
}

#[test]
fn unanswered_query_on_a_busy_flow_expires_too() {
    use Direction::{Egress, Ingress};
    let config = FlowConfig {
        udp_idle_timeout_ns: 2 * SECOND,
        ..FlowConfig::default()
    };
    let mut t = Table::new(config);
    t.handle(&datagram(
        1,
        Egress,
        CLIENT,
        SERVER,
        &query(1, "lost.test"),
        0,
    ));
    // Other lookups keep the flow busy; the first query's answer never comes.
    for i in 1..=4u16 {
        let ts = u64::from(i) * SECOND;
        t.handle(&datagram(
            1,
            Egress,
            CLIENT,
            SERVER,
            &query(i + 1, "ok.test"),
            ts,
        ));
        t.handle(&datagram(
            1,
            Ingress,
            SERVER,
            CLIENT,
            &answer(i + 1, "ok.test", [1, 2, 3, 4]),
            ts + 1,
        ));
        t.tick(ts + 2);
    }
    let lost: Vec<_> = t
        .calls
        .iter()
        .filter(|c| c.parsed.status == CallStatus::NoResponse)
        .collect();
    assert_eq!(lost.len(), 1, "{:?}", t.calls);
    assert_eq!(dns(lost[0]).0, "lost.test");
    assert_eq!(t.calls.len(), 5);
    assert_eq!(t.table.connections(), 1, "the flow itself stays");
}

#[test]
fn udp_flows_idle_out_before_tcp_connections() {
    use Direction::Egress;
    let mut t = Table::new(FlowConfig::default());
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    t.handle(&Event::Packet(Packet {
        cookie: 7,
        transport: Transport::Tcp,
        cgroup_id: 0,
        direction: Egress,
        src: addr(CLIENT),
        dst: addr("10.0.0.2:80"),
        seq: 1,
        payload_len: u32::try_from(request.len()).expect("fits"),
        skipped: 0,
        payload: request,
        flags: TcpFlags {
            ack: true,
            ..TcpFlags::default()
        },
        ts: 0,
        tls: false,
    }));
    t.handle(&datagram(
        8,
        Egress,
        CLIENT,
        SERVER,
        &query(1, "q.test"),
        SECOND,
    ));
    // 30 s later: the UDP flow is idle (10 s), the TCP connection is not (120 s), though it is older.
    t.tick(31 * SECOND);
    assert_eq!(t.calls.len(), 1);
    assert_eq!(t.calls[0].transport, Transport::Udp);
    assert_eq!(t.table.connections(), 1);
    t.tick(121 * SECOND);
    assert_eq!(t.calls.len(), 2);
    assert_eq!(t.calls[1].transport, Transport::Tcp);
}

#[test]
fn a_socket_whose_first_datagrams_are_no_protocol_is_skipped() {
    use Direction::{Egress, Ingress};
    let mut t = Table::new(FlowConfig::default());
    let noise = b"\x01\x02 statsd-ish gauge:1|g";
    for i in 0..4 {
        t.handle(&datagram(3, Egress, CLIENT, "10.0.0.2:8125", noise, i));
    }
    assert_eq!(
        t.skips,
        vec![
            SkipRequest {
                cookie: 3,
                direction: Egress,
                tls: false,
                kind: SkipKind::All
            },
            SkipRequest {
                cookie: 3,
                direction: Ingress,
                tls: false,
                kind: SkipKind::All
            },
        ]
    );
    let stats = t.table.stats();
    assert_eq!(stats.udp_sockets_unrecognised, 1);
    assert_eq!(stats.connections_unrecognised, 1);
    // Whatever still arrives from it is ignored, DNS or not.
    t.handle(&datagram(3, Egress, CLIENT, SERVER, &query(1, "x.test"), 5));
    t.handle(&datagram(
        3,
        Ingress,
        SERVER,
        CLIENT,
        &answer(1, "x.test", [1, 1, 1, 1]),
        6,
    ));
    assert!(t.calls.is_empty());
}

#[test]
fn noise_from_one_client_does_not_silence_a_dns_server_socket() {
    use Direction::{Egress, Ingress};
    let mut t = Table::new(FlowConfig::default());
    let s = 4;
    t.handle(&datagram(
        s,
        Ingress,
        CLIENT,
        SERVER,
        &query(1, "a.test"),
        1,
    ));
    for i in 0..10 {
        t.handle(&datagram(
            s,
            Ingress,
            OTHER_CLIENT,
            SERVER,
            b"garbage garbage garbage",
            2 + i,
        ));
    }
    t.handle(&datagram(
        s,
        Egress,
        SERVER,
        CLIENT,
        &answer(1, "a.test", [1, 1, 1, 1]),
        20,
    ));
    assert!(t.skips.is_empty(), "{:?}", t.skips);
    assert_eq!(t.calls.len(), 1);
    let stats = t.table.stats();
    assert_eq!(stats.udp_sockets_unrecognised, 0);
    assert_eq!(stats.connections_unrecognised, 1, "the noisy flow only");
}

#[test]
fn forgotten_unrecognised_sockets_are_forgotten_by_the_kernel_too() {
    use Direction::{Egress, Ingress};
    let mut t = Table::new(FlowConfig {
        max_connections: 1,
        ..FlowConfig::default()
    });
    for i in 0..4 {
        t.handle(&datagram(3, Egress, CLIENT, "10.0.0.2:9999", b"noise", i));
    }
    t.skips.clear();
    t.handle(&datagram(
        4,
        Egress,
        OTHER_CLIENT,
        SERVER,
        &query(1, "a.test"),
        5,
    ));
    assert_eq!(
        t.skips,
        vec![
            SkipRequest {
                cookie: 3,
                direction: Egress,
                tls: false,
                kind: SkipKind::Forget
            },
            SkipRequest {
                cookie: 3,
                direction: Ingress,
                tls: false,
                kind: SkipKind::Forget
            },
        ]
    );
}

#[test]
fn a_reply_through_nat_belongs_to_the_flow_of_its_query() {
    use Direction::{Egress, Ingress};
    let mut t = Table::new(FlowConfig::default());
    // The client asked a Service address; the kernel shows the query after DNAT (to the pod) and
    // the reply after the reverse translation (from the Service address).
    let pod = "10.244.1.7:53";
    let service = "10.96.0.10:53";
    t.handle(&datagram(1, Egress, CLIENT, pod, &query(77, "svc.test"), 1));
    t.handle(&datagram(
        1,
        Ingress,
        service,
        CLIENT,
        &answer(77, "svc.test", [10, 244, 1, 8]),
        2,
    ));
    assert_eq!(t.calls.len(), 1);
    assert_eq!(dns(&t.calls[0]).2, CallStatus::Ok);
    assert_eq!(t.calls[0].server.addr, addr(pod));
    assert_eq!(t.table.connections(), 1);
    assert_eq!(t.table.stats().parsers.unmatched_responses, 0);
}

#[test]
fn a_datagram_cut_short_is_a_gap() {
    use Direction::{Egress, Ingress};
    let mut t = Table::new(FlowConfig::default());
    let q = query(1, "big.test");
    let r = answer(1, "big.test", [1, 2, 3, 4]);
    t.handle(&datagram(1, Egress, CLIENT, SERVER, &q, 1));
    // Only the first 40 bytes of the response were copied.
    t.handle(&Event::Packet(Packet {
        cookie: 1,
        transport: Transport::Udp,
        cgroup_id: 100,
        direction: Ingress,
        src: addr(SERVER),
        dst: addr(CLIENT),
        seq: 0,
        payload_len: u32::try_from(r.len()).expect("fits"),
        skipped: 0,
        payload: &r[..40],
        flags: TcpFlags::default(),
        ts: 2,
        tls: false,
    }));
    t.table.finish(&mut t.calls, &mut t.skips);
    assert_eq!(t.calls.len(), 1);
    // The header and question were there: the call is answered, with what answers could be read.
    assert_eq!(
        dns(&t.calls[0]),
        ("big.test".into(), vec![], CallStatus::Ok)
    );
    let stats = t.table.stats();
    assert_eq!(stats.streams.gaps, 1);
    assert_eq!(stats.streams.gap_bytes, r.len() as u64 - 40);
}

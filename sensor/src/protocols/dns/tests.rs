//! DNS parser tests: messages as annotated bytes or built with simple-dns, UDP datagrams, TCP streams
//! split at every offset, lost bytes, retransmissions, duplicates, bounds, and garbage.

use simple_dns::{
    rdata::{RData, A, AAAA, CNAME, MX, SOA, SRV, TXT},
    Name, Packet, PacketFlag, Question as SdQuestion, ResourceRecord, CLASS, QCLASS, QTYPE, RCODE,
    TYPE,
};

use super::*;
use crate::protocols::testing::XorShift;

/// `id 0x1234, RD, 1 question: example.test A IN` (30 bytes).
const QUERY: &[u8] = &[
    0x12, 0x34, // id
    0x01, 0x00, // flags: QR=0 opcode=0 RD=1
    0x00, 0x01, // QDCOUNT
    0x00, 0x00, // ANCOUNT
    0x00, 0x00, // NSCOUNT
    0x00, 0x00, // ARCOUNT
    7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', // label "example"
    4, b't', b'e', b's', b't', // label "test"
    0,    // root
    0x00, 0x01, // QTYPE A
    0x00, 0x01, // QCLASS IN
];

/// The response to `QUERY`: `10.1.2.3`, the name compressed as a pointer to the question (46 bytes).
const RESPONSE: &[u8] = &[
    0x12, 0x34, // id
    0x81, 0x80, // flags: QR=1 RD=1 RA=1 rcode=0
    0x00, 0x01, // QDCOUNT
    0x00, 0x01, // ANCOUNT
    0x00, 0x00, // NSCOUNT
    0x00, 0x00, // ARCOUNT
    7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 4, b't', b'e', b's', b't',
    0, // question name
    0x00, 0x01, 0x00, 0x01, // A IN
    0xc0, 0x0c, // name: pointer to offset 12
    0x00, 0x01, 0x00, 0x01, // A IN
    0x00, 0x00, 0x00, 0x3c, // TTL 60
    0x00, 0x04, // RDLENGTH
    10, 1, 2, 3, // 10.1.2.3
];

fn query(id: u16, name: &str, qtype: impl Into<QTYPE>) -> Vec<u8> {
    let mut packet = Packet::new_query(id);
    packet.set_flags(PacketFlag::RECURSION_DESIRED);
    packet.questions.push(SdQuestion::new(
        Name::new_unchecked(name),
        qtype.into(),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    packet.build_bytes_vec().expect("query bytes")
}

fn response(
    id: u16,
    name: &str,
    qtype: impl Into<QTYPE>,
    rcode: RCODE,
    answers: Vec<RData<'_>>,
) -> Vec<u8> {
    let mut packet = Packet::new_reply(id);
    *packet.rcode_mut() = rcode;
    packet.questions.push(SdQuestion::new(
        Name::new_unchecked(name),
        qtype.into(),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    for rdata in answers {
        packet.answers.push(ResourceRecord::new(
            Name::new_unchecked(name),
            CLASS::IN,
            300,
            rdata,
        ));
    }
    packet.build_bytes_vec().expect("response bytes")
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(msg.len())
        .expect("short")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(msg);
    out
}

fn a(ip: [u8; 4]) -> RData<'static> {
    RData::A(A {
        address: u32::from_be_bytes(ip),
    })
}

/// (id, name, type, rcode, answers, status) of a call.
type Summary = (u16, String, String, Option<String>, Vec<String>, CallStatus);

fn summary(call: &ParsedCall) -> Summary {
    let Request::Dns(request) = &call.request else {
        panic!("not DNS: {call:?}")
    };
    let (rcode, answers) = match &call.response {
        Some(Response::Dns(r)) => (Some(r.rcode.clone()), r.answers.clone()),
        Some(other) => panic!("not DNS: {other:?}"),
        None => (None, Vec::new()),
    };
    (
        request.id,
        request.name.clone(),
        request.kind.clone(),
        rcode,
        answers,
        call.status,
    )
}

fn ok(id: u16, name: &str, kind: &str, answers: &[&str]) -> Summary {
    (
        id,
        name.into(),
        kind.into(),
        Some("NOERROR".into()),
        answers.iter().map(|&a| a.to_owned()).collect(),
        CallStatus::Ok,
    )
}

fn udp() -> DnsParser {
    DnsParser::new(Transport::Udp)
}

/// Feeds one side's TCP bytes as the flow layer does: unconsumed bytes are offered again with the
/// next delivery appended.
struct TcpDriver {
    parser: DnsParser,
    buffered: [Vec<u8>; 2],
    calls: Vec<ParsedCall>,
}

impl TcpDriver {
    fn new() -> Self {
        Self {
            parser: DnsParser::new(Transport::Tcp),
            buffered: [Vec::new(), Vec::new()],
            calls: Vec::new(),
        }
    }

    fn deliver(&mut self, side: Side, bytes: &[u8], ts: UnixNanos) {
        let i = usize::from(side == Side::Server);
        self.buffered[i].extend_from_slice(bytes);
        let feed = self
            .parser
            .feed(side, &self.buffered[i], ts, &mut self.calls);
        assert_eq!(feed.skip, 0);
        assert!(feed.consumed <= self.buffered[i].len());
        self.buffered[i].drain(..feed.consumed);
    }

    fn gap(&mut self, side: Side) {
        self.buffered[usize::from(side == Side::Server)].clear();
        self.parser.gap(side, 100);
    }
}

#[test]
fn annotated_query_and_response_over_udp() {
    let mut p = udp();
    let mut calls = Vec::new();
    let feed = p.feed(Side::Client, QUERY, 10, &mut calls);
    assert_eq!(feed.consumed, QUERY.len());
    assert!(calls.is_empty());
    p.feed(Side::Server, RESPONSE, 25, &mut calls);
    assert_eq!(calls.len(), 1);
    assert_eq!(
        summary(&calls[0]),
        ok(0x1234, "example.test", "A", &["10.1.2.3"])
    );
    assert_eq!((calls[0].start, calls[0].end), (10, 25));
    assert_eq!(calls[0].protocol, Protocol::Dns);
    assert_eq!(p.stats(), ParserStats::default());
}

#[test]
fn nxdomain_is_an_error_with_no_answers() {
    let mut p = udp();
    let mut calls = Vec::new();
    p.feed(
        Side::Client,
        &query(7, "nope.test", TYPE::AAAA),
        1,
        &mut calls,
    );
    let reply = response(7, "nope.test", TYPE::AAAA, RCODE::NameError, vec![]);
    p.feed(Side::Server, &reply, 2, &mut calls);
    assert_eq!(
        summary(&calls[0]),
        (
            7,
            "nope.test".into(),
            "AAAA".into(),
            Some("NXDOMAIN".into()),
            vec![],
            CallStatus::Error
        )
    );
}

#[test]
fn answers_in_presentation_form() {
    let name = "svc.example.test";
    let answers = vec![
        RData::CNAME(CNAME(Name::new_unchecked("alias.example.test"))),
        a([10, 1, 2, 3]),
        RData::AAAA(AAAA {
            address: u128::from_be_bytes([
                0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
            ]),
        }),
        RData::MX(MX {
            preference: 10,
            exchange: Name::new_unchecked("mx.example.test"),
        }),
        RData::SRV(SRV {
            priority: 1,
            weight: 2,
            port: 5060,
            target: Name::new_unchecked("sip.example.test"),
        }),
        RData::TXT(TXT::new().with_string("v=spf1 -all").expect("txt")),
        RData::SOA(SOA {
            mname: Name::new_unchecked("ns.example.test"),
            rname: Name::new_unchecked("admin.example.test"),
            serial: 2026,
            refresh: 3600,
            retry: 600,
            expire: 86400,
            minimum: 30,
        }),
    ];
    let mut p = udp();
    let mut calls = Vec::new();
    p.feed(Side::Client, &query(9, name, QTYPE::ANY), 1, &mut calls);
    let reply = response(9, name, QTYPE::ANY, RCODE::NoError, answers);
    p.feed(Side::Server, &reply, 2, &mut calls);
    assert_eq!(
        summary(&calls[0]),
        ok(
            9,
            name,
            "ANY",
            &[
                "alias.example.test",
                "10.1.2.3",
                "2001:db8::1",
                "10 mx.example.test",
                "1 2 5060 sip.example.test",
                "v=spf1 -all",
                "ns.example.test admin.example.test 2026 3600 600 86400 30",
            ]
        )
    );
}

#[test]
fn retransmitted_query_is_one_call_and_a_second_response_is_counted() {
    let mut p = udp();
    let mut calls = Vec::new();
    let q = query(0x4242, "a.test", TYPE::A);
    p.feed(Side::Client, &q, 1, &mut calls);
    p.feed(Side::Client, &q, 1_000, &mut calls); // sent again: no answer yet
    let r = response(
        0x4242,
        "a.test",
        TYPE::A,
        RCODE::NoError,
        vec![a([1, 2, 3, 4])],
    );
    p.feed(Side::Server, &r, 1_500, &mut calls);
    p.feed(Side::Server, &r, 1_600, &mut calls); // the answer to the second copy
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].start, 1, "the first query's time");
    assert_eq!(calls[0].end, 1_500);
    assert_eq!(p.stats().unmatched_responses, 1);
    p.close(2_000, &mut calls);
    assert_eq!(calls.len(), 1, "nothing left waiting");
}

#[test]
fn response_nobody_waits_for_is_counted_not_a_call() {
    let mut p = udp();
    let mut calls = Vec::new();
    p.feed(Side::Server, RESPONSE, 1, &mut calls);
    // Same id, other question: not this query's answer.
    p.feed(
        Side::Client,
        &query(0x1234, "other.test", TYPE::A),
        2,
        &mut calls,
    );
    p.feed(Side::Server, RESPONSE, 3, &mut calls);
    assert!(calls.is_empty());
    assert_eq!(p.stats().unmatched_responses, 2);
    p.close(4, &mut calls);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].status, CallStatus::NoResponse);
}

#[test]
fn unanswered_queries_on_close_and_on_expiry() {
    let mut p = udp();
    let mut calls = Vec::new();
    p.feed(
        Side::Client,
        &query(1, "one.test", TYPE::A),
        100,
        &mut calls,
    );
    p.feed(
        Side::Client,
        &query(2, "two.test", TYPE::A),
        200,
        &mut calls,
    );
    p.expire(150, &mut calls);
    assert_eq!(calls.len(), 1);
    assert_eq!(
        summary(&calls[0]),
        (
            1,
            "one.test".into(),
            "A".into(),
            None,
            vec![],
            CallStatus::NoResponse
        )
    );
    assert_eq!((calls[0].start, calls[0].end), (100, 100));
    // A late answer to the expired query matches nothing.
    let late = response(
        1,
        "one.test",
        TYPE::A,
        RCODE::NoError,
        vec![a([1, 1, 1, 1])],
    );
    p.feed(Side::Server, &late, 300, &mut calls);
    assert_eq!(p.stats().unmatched_responses, 1);
    p.close(400, &mut calls);
    assert_eq!(calls.len(), 2);
    assert_eq!(summary(&calls[1]).0, 2);
    assert_eq!(calls[1].status, CallStatus::NoResponse);
}

#[test]
fn an_id_reused_for_another_question_gives_the_old_one_up() {
    let mut p = udp();
    let mut calls = Vec::new();
    p.feed(Side::Client, &query(5, "old.test", TYPE::A), 1, &mut calls);
    p.feed(Side::Client, &query(5, "new.test", TYPE::A), 2, &mut calls);
    assert_eq!(calls.len(), 1);
    assert_eq!(summary(&calls[0]).1, "old.test");
    assert_eq!(calls[0].status, CallStatus::NoResponse);
    let r = response(5, "new.test", TYPE::A, RCODE::NoError, vec![]);
    p.feed(Side::Server, &r, 3, &mut calls);
    assert_eq!(summary(&calls[1]), ok(5, "new.test", "A", &[]));
}

#[test]
fn pending_queries_are_bounded() {
    let mut p = udp();
    let mut calls = Vec::new();
    let total = MAX_PENDING + 44;
    for i in 0..total {
        let id = u16::try_from(i).expect("id");
        p.feed(
            Side::Client,
            &query(id, "many.test", TYPE::A),
            1,
            &mut calls,
        );
    }
    assert!(calls.is_empty());
    assert_eq!(p.stats().pending_overflow, 44);
    p.close(2, &mut calls);
    assert_eq!(calls.len(), MAX_PENDING);
    assert_eq!(summary(&calls[0]).0, 44, "the oldest were dropped");
}

#[test]
fn messages_against_the_direction_are_malformed() {
    let mut p = udp();
    let mut calls = Vec::new();
    p.feed(Side::Server, QUERY, 1, &mut calls);
    p.feed(Side::Client, RESPONSE, 2, &mut calls);
    p.feed(Side::Client, b"not dns", 3, &mut calls);
    assert!(calls.is_empty());
    assert_eq!(p.stats().malformed, 3);
}

#[test]
fn tcp_several_messages_in_one_segment() {
    let mut d = TcpDriver::new();
    let mut client = framed(&query(1, "a.test", TYPE::A));
    client.extend(framed(&query(2, "a.test", TYPE::AAAA)));
    d.deliver(Side::Client, &client, 1);
    assert!(d.buffered[0].is_empty());
    let mut server = framed(&response(2, "a.test", TYPE::AAAA, RCODE::NoError, vec![]));
    server.extend(framed(&response(
        1,
        "a.test",
        TYPE::A,
        RCODE::NoError,
        vec![a([192, 0, 2, 1])],
    )));
    d.deliver(Side::Server, &server, 2);
    let got: Vec<_> = d.calls.iter().map(summary).collect();
    assert_eq!(
        got,
        [
            ok(2, "a.test", "AAAA", &[]),
            ok(1, "a.test", "A", &["192.0.2.1"])
        ]
    );
}

/// A whole conversation (two queries, two responses) split at every offset of each side: the same two
/// calls every time.
#[test]
fn tcp_conversation_split_at_every_offset() {
    let mut client = framed(QUERY);
    client.extend(framed(&query(0x99, "b.test", TYPE::TXT)));
    let mut server = framed(RESPONSE);
    server.extend(framed(&response(
        0x99,
        "b.test",
        TYPE::TXT,
        RCODE::ServerFailure,
        vec![],
    )));
    let expected = vec![
        ok(0x1234, "example.test", "A", &["10.1.2.3"]),
        (
            0x99,
            "b.test".into(),
            "TXT".into(),
            Some("SERVFAIL".into()),
            vec![],
            CallStatus::Error,
        ),
    ];
    for cut_client in 0..=client.len() {
        for cut_server in [0, 1, 2, 3, 14, RESPONSE.len() + 1, server.len()] {
            let mut d = TcpDriver::new();
            d.deliver(Side::Client, &client[..cut_client], 1);
            d.deliver(Side::Client, &client[cut_client..], 2);
            d.deliver(Side::Server, &server[..cut_server], 3);
            d.deliver(Side::Server, &server[cut_server..], 4);
            let got: Vec<_> = d.calls.iter().map(summary).collect();
            assert_eq!(
                got, expected,
                "client cut {cut_client}, server cut {cut_server}"
            );
            assert_eq!(d.parser.stats(), ParserStats::default());
        }
    }
    for cut_server in 0..=server.len() {
        let mut d = TcpDriver::new();
        d.deliver(Side::Client, &client, 1);
        d.deliver(Side::Server, &server[..cut_server], 3);
        d.deliver(Side::Server, &server[cut_server..], 4);
        let got: Vec<_> = d.calls.iter().map(summary).collect();
        assert_eq!(got, expected, "server cut {cut_server}");
    }
    // One byte at a time.
    let mut d = TcpDriver::new();
    for &b in &client {
        d.deliver(Side::Client, &[b], 1);
    }
    for &b in &server {
        d.deliver(Side::Server, &[b], 2);
    }
    let got: Vec<_> = d.calls.iter().map(summary).collect();
    assert_eq!(got, expected);
}

#[test]
fn tcp_lost_bytes_then_the_next_message_is_found() {
    let mut d = TcpDriver::new();
    // The first query is lost in a gap; the client's stream resumes in the middle of garbage.
    d.gap(Side::Client);
    let mut client = b"\x07junk-from-a-lost-segment".to_vec();
    client.extend(framed(&query(3, "c.test", TYPE::A)));
    d.deliver(Side::Client, &client, 1);
    d.deliver(
        Side::Server,
        &framed(&response(
            3,
            "c.test",
            TYPE::A,
            RCODE::NoError,
            vec![a([9, 9, 9, 9])],
        )),
        2,
    );
    let got: Vec<_> = d.calls.iter().map(summary).collect();
    assert_eq!(got, [ok(3, "c.test", "A", &["9.9.9.9"])]);
    // Lost bytes on the server side: the query waiting is answered by nothing it can see.
    d.deliver(Side::Client, &framed(&query(4, "d.test", TYPE::A)), 3);
    d.gap(Side::Server);
    d.deliver(
        Side::Server,
        &framed(&response(5, "e.test", TYPE::A, RCODE::NoError, vec![])),
        4,
    );
    assert_eq!(d.parser.stats().unmatched_responses, 1);
    d.parser.close(5, &mut d.calls);
    assert_eq!(d.calls.len(), 2);
    assert_eq!(d.calls[1].status, CallStatus::NoResponse);
}

#[test]
fn tcp_message_that_does_not_decode_keeps_the_framing() {
    let mut d = TcpDriver::new();
    let mut bad = QUERY.to_vec();
    bad[12] = 0x7f; // a label longer than 63
    let mut client = framed(&bad);
    client.extend(framed(QUERY));
    d.deliver(Side::Client, &client, 1);
    d.deliver(Side::Server, &framed(RESPONSE), 2);
    assert_eq!(d.calls.len(), 1);
    assert_eq!(d.parser.stats().malformed, 1);
}

#[test]
fn decode_unknown_types_cut_records_and_the_root() {
    // A question of a type simple-dns has no name for.
    let mut q = QUERY.to_vec();
    q[26..28].copy_from_slice(&0xff00u16.to_be_bytes());
    let m = decode(&q).expect("decodes");
    assert_eq!(
        m.question
            .map(|q| (q.name, type_name(q.qtype).into_owned())),
        Some(("example.test".into(), "TYPE65280".into()))
    );
    // TLSA by its mnemonic, through the same path.
    q[26..28].copy_from_slice(&52u16.to_be_bytes());
    assert_eq!(
        decode(&q).expect("decodes").question.map(|q| q.qtype),
        Some(52)
    );
    // A response cut inside its second answer keeps the first.
    let full = response(
        1,
        "cut.test",
        TYPE::A,
        RCODE::NoError,
        vec![a([1, 1, 1, 1]), a([2, 2, 2, 2])],
    );
    let m = decode(&full[..full.len() - 2]).expect("partial");
    assert_eq!(m.header.answers, 2);
    assert_eq!(m.answers, ["1.1.1.1"]);
    assert!(!m.whole);
    assert!(decode(&full).expect("whole").whole);
    // The root.
    let root = query(1, "", TYPE::NS);
    assert_eq!(
        decode(&root).expect("root").question.map(|q| q.name),
        Some(".".into())
    );
    assert_eq!(decode(&QUERY[..11]), Err(DecodeError::Short));
    assert_eq!(decode(&QUERY[..20]), Err(DecodeError::Question));
    assert_eq!(rcode_name(3), "NXDOMAIN");
    assert_eq!(rcode_name(16), "BADVERS");
    assert_eq!(rcode_name(23), "RCODE23");
    assert_eq!(type_name(28), "AAAA");
}

fn hints(transport: Transport, sender_port: u16, receiver_port: u16) -> Hints {
    Hints {
        transport,
        sender_port,
        receiver_port,
    }
}

fn matched(sender: Side) -> Detection {
    Detection::Match {
        protocol: Known::Dns,
        sender,
    }
}

#[test]
fn probe_on_port_53() {
    let to53 = hints(Transport::Udp, 40000, 53);
    let from53 = hints(Transport::Udp, 53, 40000);
    assert_eq!(probe(QUERY, &to53), matched(Side::Client));
    assert_eq!(probe(RESPONSE, &from53), matched(Side::Server));
    // Class CH (version.bind), any type.
    let mut chaos = QUERY.to_vec();
    chaos[28..30].copy_from_slice(&3u16.to_be_bytes());
    chaos[26..28].copy_from_slice(&0x1234u16.to_be_bytes());
    assert_eq!(probe(&chaos, &to53), matched(Side::Client));
    assert_eq!(
        probe(&QUERY[..20], &to53),
        Detection::NoMatch,
        "a cut datagram"
    );
    assert_eq!(probe(b"GET / HTTP/1.1\r\n\r\n", &to53), Detection::NoMatch);
    // TCP: length-prefixed; a message not all there yet is enough once its question is.
    let tcp = hints(Transport::Tcp, 40000, 53);
    let msg = framed(QUERY);
    assert_eq!(probe(&msg, &tcp), matched(Side::Client));
    assert_eq!(probe(&msg[..msg.len() - 1], &tcp), Detection::NeedMore);
    assert_eq!(probe(&msg[..1], &tcp), Detection::NeedMore);
    assert_eq!(probe(QUERY, &tcp), Detection::NoMatch, "no length prefix");
}

#[test]
fn probe_elsewhere_is_strict() {
    let udp_any = hints(Transport::Udp, 40000, 5300);
    assert_eq!(probe(QUERY, &udp_any), matched(Side::Client));
    let mut zero_id = QUERY.to_vec();
    zero_id[..2].fill(0);
    assert_eq!(probe(&zero_id, &udp_any), Detection::NoMatch);
    let mut chaos = QUERY.to_vec();
    chaos[28..30].copy_from_slice(&3u16.to_be_bytes());
    assert_eq!(probe(&chaos, &udp_any), Detection::NoMatch);
    let mut rare = QUERY.to_vec();
    rare[26..28].copy_from_slice(&29u16.to_be_bytes()); // LOC
    assert_eq!(probe(&rare, &udp_any), Detection::NoMatch);
    let mut bad_answer = RESPONSE.to_vec();
    bad_answer.truncate(RESPONSE.len() - 2);
    bad_answer[6..8].copy_from_slice(&2u16.to_be_bytes());
    assert_eq!(probe(&bad_answer, &udp_any), Detection::NoMatch);
    // TCP elsewhere needs the whole message in the first bytes; it never holds detection back.
    let tcp_any = hints(Transport::Tcp, 40000, 5300);
    let msg = framed(QUERY);
    assert_eq!(probe(&msg, &tcp_any), matched(Side::Client));
    for end in 0..msg.len() {
        assert_eq!(
            probe(&msg[..end], &tcp_any),
            Detection::NoMatch,
            "{end} bytes"
        );
    }
}

/// NBNS and mDNS datagrams of `corpus/grpc/packt_grpc_Unary.pcapng` (frames 113, 4236 and the first 64
/// bytes of 2083): tshark calls them nbns and mdns, not dns. Not DNS on their ports, and not by their
/// content either.
#[test]
fn probe_refuses_mdns_and_nbns() {
    let nbns = hex("461a4010000100000000000120454e45424544454345504550454c464146434550434e45464447444a454441410000200001c00c002000010000038400066000c0a8006a");
    let mdns_query = hex("000000000012000000000000026c62075f646e732d7364045f756470056c6f63616c00000c0001085f616972706f7274045f746370c01c000c0001075f72646c696e6bc030000c0001085f686f6d656b6974c030000c0001065f757363616ec030000c0001075f757363616e73c030000c0001075f697070757362c030000c0001045f707470c030000c0001055f69707073c030000c0001085f7072696e746572c030000c0001045f697070c030000c0001085f7363616e6e6572c030000c00010f5f70646c2d6461746173747265616dc030000c00010b5f676f6f676c6563617374c030000c00010d5f6170706c652d6d6f62646576c030000c0001083935633630383136045f7375620e5f6170706c652d6d6f62646576c030000c00010f5f6170706c652d7061697261626c65c030000c00010f5f636f6d70616e696f6e2d6c696e6bc030000c0001");
    let mdns_response = hex("000084000000000200000009085f616972706c6179045f746370056c6f63616c00000c000100001194001a17436c656d656e74e2809973204d6163426f6f");
    for (name, payload, port) in [
        ("nbns", &nbns, 137),
        ("mdns query", &mdns_query, 5353),
        ("mdns response", &mdns_response, 5353),
    ] {
        assert_eq!(
            probe(payload, &hints(Transport::Udp, port, port)),
            Detection::NoMatch,
            "{name}"
        );
        for (sender, receiver) in [(port, 53), (40000, 5300)] {
            assert_eq!(
                probe(payload, &hints(Transport::Udp, sender, receiver)),
                Detection::NoMatch,
                "{name} from {sender} to {receiver}"
            );
        }
    }
    // Even a plain query is not DNS on those ports.
    assert_eq!(
        probe(QUERY, &hints(Transport::Udp, 5353, 5353)),
        Detection::NoMatch
    );
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Every truncation and every single-byte change of real messages, and pseudo-random bytes: no panic,
/// and nothing waits that was not a query.
#[test]
fn garbage_never_panics() {
    let big = response(
        0x77,
        "garbage.test",
        TYPE::A,
        RCODE::NoError,
        vec![a([1, 2, 3, 4]), a([5, 6, 7, 8])],
    );
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for msg in [QUERY, RESPONSE, &big[..]] {
        for end in 0..=msg.len() {
            inputs.push(msg[..end].to_vec());
        }
        for at in 0..msg.len() {
            for value in [0x00, 0x3f, 0x40, 0xc0, 0xff] {
                let mut changed = msg.to_vec();
                changed[at] = value;
                inputs.push(changed);
            }
        }
    }
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    for len in 0..300 {
        let bytes = (0..len).map(|_| (rng.next() >> 24) as u8).collect();
        inputs.push(bytes);
    }
    let mut u = udp();
    let mut t = TcpDriver::new();
    let mut calls = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let side = if i % 2 == 0 {
            Side::Client
        } else {
            Side::Server
        };
        let _ = decode(input);
        for transport in [Transport::Udp, Transport::Tcp] {
            for port in [53, 5300] {
                let _ = probe(input, &hints(transport, 40000, port));
            }
        }
        u.feed(side, input, 1, &mut calls);
        t.deliver(side, input, 1);
        t.deliver(side, &framed(input), 1);
    }
    u.close(2, &mut calls);
    t.parser.close(2, &mut t.calls);
    assert!(u.pending.is_empty() && t.parser.pending.is_empty());
}

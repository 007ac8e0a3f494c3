//! Replays the real DNS captures of `tests/fixtures/corpus/dns` (over UDP and TCP) and compares the calls
//! with what tshark found in them.
//!
//! The expected values come from tshark 4.0.17's field output recorded beside each capture
//! (`FILE.dns.tsv`, the command is in `tests/fixtures/corpus/dns/SOURCES.md`), so tshark is not needed
//! to run this: per DNS message, its conversation, id, question, response code and the data of its
//! answer records. Queries and responses are paired by id within a conversation (a query sent again
//! while it waits is the same query; a response nothing waits for is not a call); queries left without
//! a response are `no_response` calls.
//!
//! Sources and licences of the captures: `tests/fixtures/corpus/dns/SOURCES.md`.

mod common;

use std::collections::HashMap;

use common::{fixture, replay_sorted, try_replay, tsv_rows};
use podtap::{
    app::Summary,
    model::{Call, CallStatus, Request, Response, Transport},
};

fn replay_file(name: &str) -> (Vec<Call>, Summary) {
    replay_sorted(&fixture("dns", &format!("{name}.pcap")))
}

/// Type names as tshark's verbose output prints them (`Type: LOC (Geographical position) (29)`), for
/// the types these captures hold.
fn tshark_type(number: &str) -> String {
    match number {
        "1" => "A",
        "2" => "NS",
        "5" => "CNAME",
        "6" => "SOA",
        "12" => "PTR",
        "15" => "MX",
        "16" => "TXT",
        "28" => "AAAA",
        "29" => "LOC",
        "41" => "OPT",
        "46" => "RRSIG",
        "255" => "ANY",
        other => panic!("type {other}: add it to the table"),
    }
    .to_owned()
}

/// Response codes as tshark names them (`Reply code: No such name (3)`), in the DNS mnemonics.
fn tshark_rcode(number: &str) -> String {
    match number {
        "0" => "NOERROR",
        "1" => "FORMERR",
        "2" => "SERVFAIL",
        "3" => "NXDOMAIN",
        "5" => "REFUSED",
        other => panic!("rcode {other}: add it to the table"),
    }
    .to_owned()
}

/// One DNS message of the capture, as tshark decoded it.
#[derive(Clone, Debug)]
struct TsharkMessage {
    frame: u32,
    /// Transport and both ends, client-server order free: the conversation.
    conversation: (Transport, [String; 2]),
    response: bool,
    retransmission: bool,
    id: u16,
    name: String,
    kind: String,
    rcode: Option<String>,
    answers: Vec<String>,
}

/// One call as tshark's messages say it should be.
#[derive(Clone, Debug, PartialEq)]
struct Expected {
    id: u16,
    name: String,
    kind: String,
    rcode: Option<String>,
    answers: Vec<String>,
    status: CallStatus,
}

/// The values of a `,`-aggregated field.
fn values(field: &str) -> Vec<String> {
    if field.is_empty() {
        Vec::new()
    } else {
        field.split(',').map(str::to_owned).collect()
    }
}

fn tshark_messages(name: &str) -> Vec<TsharkMessage> {
    let mut messages = Vec::new();
    for row in tsv_rows("dns", &format!("{name}.dns.tsv")) {
        let f: Vec<&str> = row.iter().map(String::as_str).collect();
        assert_eq!(f.len(), 26, "{name}: {row:?}");
        let frame: u32 = f[0].parse().expect("frame number");
        let src_ip = if f[1].is_empty() { f[2] } else { f[1] };
        let dst_ip = if f[5].is_empty() { f[6] } else { f[5] };
        let (transport, src_port, dst_port) = if f[3].is_empty() {
            (Transport::Udp, f[4], f[8])
        } else {
            (Transport::Tcp, f[3], f[7])
        };
        let mut ends = [
            format!("{src_ip}:{src_port}"),
            format!("{dst_ip}:{dst_port}"),
        ];
        ends.sort();
        let responses = values(f[9]);
        let retransmissions = values(f[10]);
        let ids = values(f[11]);
        let names = values(f[12]);
        let types = values(f[13]);
        let mut rcodes = values(f[14]).into_iter();
        let counts: Vec<[usize; 3]> = (0..ids.len())
            .map(|i| [15, 16, 17].map(|c| values(f[c])[i].parse::<usize>().expect("record count")))
            .collect();
        let mut record_types = values(f[18]).into_iter();
        // The value fields, consumed in record order.
        let mut a = values(f[19]).into_iter();
        let mut aaaa = values(f[20]).into_iter();
        let mut cname = values(f[21]).into_iter();
        let mut ptr = values(f[22]).into_iter();
        let mut ns = values(f[23]).into_iter();
        let mut mx_pref = values(f[24]).into_iter();
        let mut mx_name = values(f[25]).into_iter();
        for (i, id) in ids.iter().enumerate() {
            let response = responses[i] == "1";
            let [an, auth, add] = counts[i];
            let mut answers = Vec::new();
            for record in 0..an + auth + add {
                let kind = tshark_type(&record_types.next().expect("record type"));
                let next = |it: &mut std::vec::IntoIter<String>| it.next().expect("value");
                let text = match kind.as_str() {
                    "A" => next(&mut a),
                    "AAAA" => next(&mut aaaa),
                    "CNAME" => next(&mut cname),
                    "PTR" => next(&mut ptr),
                    "NS" => next(&mut ns),
                    "MX" => format!("{} {}", next(&mut mx_pref), next(&mut mx_name)),
                    other => other.to_owned(),
                };
                if record < an {
                    answers.push(text);
                }
            }
            messages.push(TsharkMessage {
                frame,
                conversation: (transport, ends.clone()),
                response,
                retransmission: retransmissions.len() == ids.len() && retransmissions[i] == "1"
                    || retransmissions.len() == 1 && ids.len() == 1 && retransmissions[0] == "1",
                id: u16::from_str_radix(id.trim_start_matches("0x"), 16).expect("id"),
                name: names[i].clone(),
                kind: tshark_type(&types[i]),
                rcode: response.then(|| tshark_rcode(&rcodes.next().expect("rcode"))),
                answers,
            });
        }
    }
    messages
}

/// The calls the messages make, in query order, and how many responses matched no query.
fn expected_calls(messages: &[TsharkMessage]) -> (Vec<Expected>, u64) {
    // (conversation, query frame, call) of queries still waiting.
    let mut pending: Vec<(&TsharkMessage, Expected)> = Vec::new();
    let mut done: Vec<(u32, Expected)> = Vec::new();
    let mut unmatched = 0;
    for m in messages {
        let same = |p: &&TsharkMessage| {
            p.conversation == m.conversation
                && p.id == m.id
                && p.name.eq_ignore_ascii_case(&m.name)
                && p.kind == m.kind
        };
        if m.response {
            match pending.iter().position(|(p, _)| same(p)) {
                Some(at) => {
                    let (query, mut call) = pending.remove(at);
                    call.rcode.clone_from(&m.rcode);
                    call.answers.clone_from(&m.answers);
                    call.status = if m.rcode.as_deref() == Some("NOERROR") {
                        CallStatus::Ok
                    } else {
                        CallStatus::Error
                    };
                    done.push((query.frame, call));
                }
                None => unmatched += 1,
            }
        } else if !pending.iter().any(|(p, _)| same(p)) {
            pending.push((
                m,
                Expected {
                    id: m.id,
                    name: m.name.clone(),
                    kind: m.kind.clone(),
                    rcode: None,
                    answers: Vec::new(),
                    status: CallStatus::NoResponse,
                },
            ));
        }
    }
    done.extend(pending.into_iter().map(|(q, call)| (q.frame, call)));
    done.sort_by_key(|(frame, _)| *frame);
    (done.into_iter().map(|(_, call)| call).collect(), unmatched)
}

fn ours(calls: &[Call]) -> Vec<Expected> {
    calls
        .iter()
        .map(|c| {
            let Request::Dns(request) = &c.request else {
                panic!("not a DNS request: {c:?}")
            };
            let (rcode, answers) = match &c.response {
                Some(Response::Dns(r)) => (Some(r.rcode.clone()), r.answers.clone()),
                Some(other) => panic!("not a DNS response: {other:?}"),
                None => (None, Vec::new()),
            };
            Expected {
                id: request.id,
                name: request.name.clone(),
                kind: request.kind.clone(),
                rcode,
                answers,
                status: c.status,
            }
        })
        .collect()
}

/// Replays `name`.pcap and checks it against tshark: one call per query, same ids, names, types,
/// response codes and answers, and the responses left over counted as unmatched.
fn check(name: &str, transport: Transport) -> (Vec<Call>, Summary) {
    let (calls, summary) = replay_file(name);
    let messages = tshark_messages(name);
    let (expected, unmatched) = expected_calls(&messages);
    assert_eq!(ours(&calls), expected, "{name}");
    assert!(
        calls.iter().all(|c| c.transport == transport),
        "{name}: {calls:?}"
    );
    assert_eq!(
        summary.flow.parsers.unmatched_responses, unmatched,
        "{name}: unmatched responses"
    );
    assert_eq!(summary.flow.parsers.malformed, 0, "{name}: {summary:?}");
    // tshark's own verdict on responses nothing waits for: a retransmission.
    let retransmitted = messages
        .iter()
        .filter(|m| m.response && m.retransmission)
        .count() as u64;
    assert_eq!(retransmitted, unmatched, "{name}");
    for call in &calls {
        if call.status == CallStatus::NoResponse {
            assert_eq!(call.duration_ms, None, "{name}: {call:?}");
        } else {
            assert!(call.duration_ms.is_some(), "{name}: {call:?}");
        }
        assert_eq!(call.server.port, 53, "{name}: {call:?}");
    }
    (calls, summary)
}

#[test]
fn deepflow_tcp_two_queries_in_one_segment() {
    let (calls, _) = check("deepflow_dns-tcp-multi", Transport::Tcp);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].client.port, calls[1].client.port, "one connection");
    let kinds: Vec<_> = ours(&calls).into_iter().map(|c| c.kind).collect();
    assert_eq!(kinds, ["A", "AAAA"]);
}

#[test]
fn deepflow_tcp_nxdomain_is_an_error() {
    let (calls, _) = check("deepflow_dns", Transport::Tcp);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].status, CallStatus::Error);
    assert_eq!(calls[1].status, CallStatus::Ok);
}

#[test]
fn deepflow_tcp_three_queries_on_one_connection() {
    let (calls, _) = check("deepflow_dns_nxdomain", Transport::Tcp);
    assert_eq!(calls.len(), 3);
    assert!(
        calls.iter().all(|c| c.client.port == 17934),
        "one connection: {calls:?}"
    );
    let statuses: Vec<_> = calls.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        [CallStatus::Error, CallStatus::Ok, CallStatus::Error]
    );
}

#[test]
fn zeek_tcp_with_edns_keepalive() {
    let (calls, _) = check("zeek_dns-edns-tcp-keepalive", Transport::Tcp);
    assert_eq!(calls.len(), 2);
}

/// One query, then the same response twice (tshark: the second is a "retransmitted response"). One
/// call, with the first response; the second is counted in `unmatched_responses`, not a second call.
#[test]
fn zeek_udp_two_responses_make_one_call() {
    let (calls, summary) = check("zeek_dns-two-responses", Transport::Udp);
    assert_eq!(calls.len(), 1);
    assert_eq!(summary.flow.parsers.unmatched_responses, 1);
    let Some(Response::Dns(response)) = &calls[0].response else {
        panic!("no response: {calls:?}");
    };
    assert_eq!(
        response.answers,
        [
            "WWW-CMU.ANDREW.cmu.edu",
            "RRSIG",
            "WWW-CMU-2.ANDREW.cmu.edu",
            "128.2.10.163"
        ]
    );
}

/// Eleven lookups from one client port over a few minutes, with gaps longer than the UDP idle timeout
/// between some: each lookup is still one call, answered.
#[test]
fn zeek_udp_long_connection() {
    let (calls, summary) = check("zeek_dns_long-connection", Transport::Udp);
    assert_eq!(calls.len(), 11);
    assert!(calls.iter().all(|c| c.response.is_some()), "{calls:?}");
    assert!(summary.flow.connections_idle_closed > 0, "{summary:?}");
    let kinds: HashMap<String, usize> =
        ours(&calls).into_iter().fold(HashMap::new(), |mut m, c| {
            *m.entry(c.kind).or_default() += 1;
            m
        });
    assert_eq!(kinds.get("AAAA"), Some(&6), "{kinds:?}");
    assert_eq!(kinds.get("MX"), Some(&1), "{kinds:?}");
    assert_eq!(kinds.get("LOC"), Some(&1), "{kinds:?}");
    assert_eq!(kinds.get("ANY"), Some(&1), "{kinds:?}");
}

/// `id 0x1234, RD, example.test A IN`.
const QUERY: &[u8] = &[
    0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // header
    7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 4, b't', b'e', b's', b't', 0, // name
    0x00, 0x01, 0x00, 0x01, // A IN
];

/// Its answer: `10.1.2.3`.
const RESPONSE: &[u8] = &[
    0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, // header
    7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 4, b't', b'e', b's', b't', 0, // name
    0x00, 0x01, 0x00, 0x01, // A IN
    0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x04, 10, 1, 2,
    3, // answer
];

/// A raw IPv4 packet (link type RAW): `flags_fragment` is the flags/fragment-offset word.
fn ipv4(protocol: u8, flags_fragment: u16, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).expect("small");
    let mut p = vec![0x45, 0];
    p.extend(total.to_be_bytes());
    p.extend([0, 1]); // identification
    p.extend(flags_fragment.to_be_bytes());
    p.extend([64, protocol, 0, 0]); // TTL, protocol, checksum (not checked)
    p.extend(src);
    p.extend(dst);
    p.extend(payload);
    p
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).expect("small");
    let mut d = Vec::new();
    for word in [sport, dport, len, 0] {
        d.extend(word.to_be_bytes());
    }
    d.extend(payload);
    d
}

/// A pcap file (microseconds, link type 101 RAW) holding `frames`, one a second.
fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend(0xa1b2_c3d4u32.to_le_bytes());
    f.extend(2u16.to_le_bytes());
    f.extend(4u16.to_le_bytes());
    f.extend([0; 8]); // thiszone, sigfigs
    f.extend(65_535u32.to_le_bytes());
    f.extend(101u32.to_le_bytes());
    for (i, frame) in frames.iter().enumerate() {
        let len = u32::try_from(frame.len()).expect("small");
        f.extend((1_700_000_000 + u32::try_from(i).expect("few")).to_le_bytes());
        f.extend(0u32.to_le_bytes());
        f.extend(len.to_le_bytes());
        f.extend(len.to_le_bytes());
        f.extend(frame);
    }
    f
}

/// UDP in a capture file: datagrams are passed to the flow table, IP fragments and empty datagrams are
/// passed over (fragments counted), other protocols counted.
#[test]
fn udp_datagrams_fragments_and_empty_datagrams_in_a_file() {
    let (client, server) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let frames = vec![
        ipv4(17, 0x4000, client, server, &udp(40000, 53, QUERY)),
        // The first fragment of a datagram (more fragments) and a later one (offset 185 * 8).
        ipv4(17, 0x2000, client, server, &udp(40001, 53, QUERY)),
        ipv4(17, 185, client, server, b"the rest of it"),
        // An empty datagram.
        ipv4(17, 0x4000, client, server, &udp(40002, 53, &[])),
        // ICMP echo request.
        ipv4(1, 0, client, server, &[8, 0, 0, 0, 0, 1, 0, 1]),
        ipv4(17, 0x4000, server, client, &udp(53, 40000, RESPONSE)),
    ];
    let dir = std::env::temp_dir().join(format!("podtap-udp-pcap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("udp.pcap");
    std::fs::write(&path, pcap(&frames)).expect("write");
    let (calls, summary) = try_replay(&path).expect("replay");
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].transport, Transport::Udp);
    assert_eq!(calls[0].client.port, 40000);
    assert_eq!(calls[0].server.port, 53);
    let Some(Response::Dns(response)) = &calls[0].response else {
        panic!("no response: {calls:?}");
    };
    assert_eq!(response.answers, ["10.1.2.3"]);
    let p = summary.pcap;
    assert_eq!(
        (p.frames, p.udp_datagrams, p.ip_fragments, p.not_tcp_udp),
        (6, 3, 2, 1),
        "{p:?}"
    );
    assert_eq!(summary.flow.connections_opened, 1, "{summary:?}");
}

//! The fuzz harnesses: arbitrary bytes in, podtap's own code run on them, invariants checked after
//! every step (memory stays within the configured bounds, error offsets lie inside the input). Shared by
//! the cargo-fuzz targets (`sensor/fuzz`, run by `cargo xtask fuzz`) and by the regression test that
//! replays every input they ever crashed on (`sensor/tests/fuzz_regressions.rs`). A broken invariant,
//! like any panic in podtap, panics.
//!
//! - `pcap_reader`: the bytes are a capture file, read as `podtap replay` reads one (reader, flow
//!   table, parsers, enrichment, both sinks).
//! - `parsers`: the bytes choose a protocol (`Known::ALL`) and script its parser: either segments through
//!   the real reassembly (in order, lost, retransmitted, with skipped prefixes and cut tails), or raw
//!   `feed` / `gap` / `skip_done` / `close` calls in any order.
//! - `flow_table`: the bytes script capture events (cookies, directions, addresses, sequence numbers,
//!   flags, payloads, owners, clock ticks) into a small flow table.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
};

use crate::{
    app::{replay_from, AppError},
    capture::{pcap::PcapReadError, Event, Owner, Packet, TcpFlags},
    enrich::{enrich, NoCgroups},
    export::{
        jsonl::{write_call, JsonLines},
        pretty::Pretty,
        Sink,
    },
    flow::{
        stream::{Segment, Stream, StreamLimits, Target},
        FlowCall, FlowConfig, FlowTable, CLOSED_REMEMBERED,
    },
    model::{Call, Direction, ParsedCall, Side, Transport},
    protocols::{detect::Known, Parser},
};

/// One harness: arbitrary bytes in, a panic when something breaks.
pub type Harness = fn(&[u8]);

/// The harnesses by name, as the fuzz targets and the regression directories are named.
pub const TARGETS: &[(&str, Harness)] = &[
    ("pcap_reader", pcap_reader),
    ("parsers", parsers),
    ("flow_table", flow_table),
];

/// Items one parser may hold at most (`Parser::held`) after a fuzz input (a few kilobytes); any parser
/// holding more grows without bound as far as these harnesses are concerned. Above the parsers' own
/// queue bounds (1,024 pending Redis commands, 512 HTTP/2 streams) so that reaching a bound is not a
/// finding; AMQP's channels x pending methods could go beyond it only with far larger inputs.
pub const MAX_PARSER_HELD: usize = 4096;

/// Small limits, so that inputs of a few kilobytes reach every bound.
#[must_use]
pub fn small_config() -> FlowConfig {
    FlowConfig {
        max_connections: 4,
        stream: StreamLimits {
            max_buffered: 4096,
            max_out_of_order: 8,
        },
        idle_timeout_ns: 10 * 1_000_000_000,
        ..FlowConfig::default()
    }
}

/// Panics when the table holds more than `config` allows.
pub fn check_bounds(flow: &FlowTable, config: &FlowConfig) {
    let s = flow.sizes();
    assert!(s.connections <= config.max_connections, "{s:?}");
    assert!(s.tuples <= s.connections, "{s:?}");
    assert!(s.owners <= config.max_connections.max(1), "{s:?}");
    assert!(s.closed <= CLOSED_REMEMBERED, "{s:?}");
    assert!(s.max_buffered <= config.stream.max_buffered, "{s:?}");
    assert!(
        s.max_out_of_order <= config.stream.max_out_of_order,
        "{s:?}"
    );
    assert!(s.max_parser_held <= MAX_PARSER_HELD, "{s:?}");
}

/// Writes every call to both sinks, keeping the JSON lines.
struct BothSinks {
    jsonl: JsonLines<io::Sink>,
    pretty: Pretty<io::Sink>,
    output: Vec<u8>,
}

impl BothSinks {
    fn new() -> Self {
        Self {
            jsonl: JsonLines::new(io::sink()),
            pretty: Pretty::new(io::sink()),
            output: Vec::new(),
        }
    }
}

impl Sink for BothSinks {
    fn write(&mut self, call: &Call) -> io::Result<()> {
        // The hand-written JSON is serde's, byte for byte.
        let mut ours = Vec::new();
        write_call(&mut ours, call)?;
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&serde_json::to_vec(call)?)
        );
        self.output.extend_from_slice(&ours);
        self.output.push(b'\n');
        self.jsonl.write(call)?;
        self.pretty.write(call)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.jsonl.flush()?;
        self.pretty.flush()
    }
}

/// The bytes as a capture file, through `podtap replay`'s whole path; twice, and the two outputs must
/// be the same (nothing may depend on hash seeds or addresses).
pub fn pcap_reader(data: &[u8]) {
    let first = replay_once(data);
    let second = replay_once(data);
    assert!(first == second, "two replays of the same bytes differ");
}

fn replay_once(data: &[u8]) -> Vec<u8> {
    let config = small_config();
    let mut sink = BothSinks::new();
    let result = replay_from(
        Path::new("fuzz-input"),
        data,
        config,
        &mut sink,
        &mut |flow| check_bounds(flow, &config),
    );
    match result {
        Ok(summary) => {
            let p = summary.pcap;
            assert!(
                p.tcp_segments
                    + p.udp_datagrams
                    + p.not_tcp_udp
                    + p.ip_fragments
                    + p.undecodable
                    + p.unsupported_link
                    <= p.frames
            );
        }
        Err(AppError::Pcap(PcapReadError::Corrupt { offset, .. })) => {
            assert!(
                offset <= data.len() as u64,
                "offset {offset} past the input"
            );
        }
        Err(AppError::Pcap(PcapReadError::Format { .. })) => {}
        Err(error) => panic!("unexpected error: {error}"),
    }
    sink.output
}

/// Reads the script: every read past the end gives zeros, so every input is a whole script.
struct Script<'a> {
    data: &'a [u8],
}

impl<'a> Script<'a> {
    fn done(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        let Some((&first, rest)) = self.data.split_first() else {
            return 0;
        };
        self.data = rest;
        first
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        taken
    }
}

/// Protocol starts the byte-level mutations would take long to find.
const SNIPPETS: &[&[u8]] = &[
    b"GET /a?b=c HTTP/1.1\r\nHost: h\r\n\r\n",
    b"POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"HEAD / HTTP/1.0\r\n\r\n",
    b"CONNECT h:443 HTTP/1.1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\nX: y\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    b"HTTP/1.1 503 Service Unavailable\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nuntil close",
    b"HTTP/1.1 204 No Content\r\n\r\n",
];

/// A payload: a snippet, a piece of one, or raw bytes from the script.
fn payload<'a>(script: &mut Script<'a>) -> &'a [u8] {
    let choice = script.u8();
    let len = usize::from(script.u8());
    if choice < 96 {
        let snippet = SNIPPETS[usize::from(choice) % SNIPPETS.len()];
        if choice & 1 == 0 {
            snippet
        } else {
            &snippet[..len.min(snippet.len())]
        }
    } else {
        script.bytes(len)
    }
}

fn side(bit: u8) -> Side {
    if bit & 1 == 0 {
        Side::Client
    } else {
        Side::Server
    }
}

/// A protocol's parser, scripted.
pub fn parsers(data: &[u8]) {
    let mut script = Script { data };
    let known = Known::ALL[usize::from(script.u8()) % Known::ALL.len()];
    let mode = script.u8();
    let transport = if mode & 2 == 0 {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    let mut parser = known.parser(transport);
    let mut calls: Vec<ParsedCall> = Vec::new();
    let mut ts = 1_000_000_000_u64;
    if mode & 1 == 0 {
        through_streams(&mut script, parser.as_mut(), &mut calls, &mut ts);
    } else {
        raw_calls(&mut script, parser.as_mut(), &mut calls, &mut ts);
    }
    parser.close(ts, &mut calls);
    assert!(parser.held() <= MAX_PARSER_HELD);
}

/// Segments of both sides through the real reassembly: the parser sees only what the flow layer
/// would give it.
fn through_streams(
    script: &mut Script<'_>,
    parser: &mut dyn Parser,
    calls: &mut Vec<ParsedCall>,
    ts: &mut u64,
) {
    let limits = StreamLimits {
        max_buffered: 4096,
        max_out_of_order: 8,
    };
    let mut streams = [Stream::new(limits), Stream::new(limits)];
    let mut next = [script.u32(), script.u32()];
    while !script.done() {
        let op = script.u8();
        let side = side(op);
        let i = usize::from(op & 1);
        *ts += u64::from(script.u8()) * 1_000;
        let seq = match (op >> 1) & 3 {
            // In order.
            0 | 1 => next[i],
            // After lost bytes.
            2 => {
                next[i] = next[i].wrapping_add(u32::from(script.u16()));
                next[i]
            }
            // Again (a retransmission, maybe overlapping).
            _ => next[i].wrapping_sub(u32::from(script.u8())),
        };
        let skipped = if op & 0x20 != 0 { script.u16() } else { 0 };
        let data = payload(script);
        let tail = if op & 0x40 != 0 { script.u16() } else { 0 };
        let payload_len = u32::from(skipped) + data.len() as u32 + u32::from(tail);
        if op & 0xf8 == 0xf8 {
            // The connection ends here (1 in 32).
            parser.close(*ts, calls);
            calls.clear();
            return;
        }
        let segment = Segment {
            seq,
            payload_len,
            skipped: u32::from(skipped),
            data,
            ts: *ts,
        };
        let mut target = Target {
            parser: Some(&mut *parser),
            side,
            calls,
        };
        streams[i].segment(&segment, &mut target);
        let end = seq.wrapping_add(payload_len);
        if (end.wrapping_sub(next[i]) as i32) > 0 {
            next[i] = end;
        }
        assert!(streams[i].buffered().len() <= limits.max_buffered);
        assert!(streams[i].held_segments() <= limits.max_out_of_order);
        assert!(parser.held() <= MAX_PARSER_HELD, "{}", parser.held());
        calls.clear();
    }
}

/// Any call in any order, whatever the parser asked for.
fn raw_calls(
    script: &mut Script<'_>,
    parser: &mut dyn Parser,
    calls: &mut Vec<ParsedCall>,
    ts: &mut u64,
) {
    while !script.done() {
        let op = script.u8();
        let side = side(op);
        *ts += u64::from(op) * 1_000;
        match (op >> 1) & 7 {
            0..=4 => {
                let data = payload(script);
                let feed = parser.feed(side, data, *ts, calls);
                assert!(feed.consumed <= data.len(), "{feed:?} of {}", data.len());
            }
            5 => parser.gap(side, u64::from(script.u32())),
            6 => parser.skip_done(side, *ts, calls),
            _ => {
                parser.close(*ts, calls);
                return;
            }
        }
        assert!(parser.held() <= MAX_PARSER_HELD, "{}", parser.held());
        calls.clear();
    }
}

/// Addresses the scripted packets use: a few, so that connections meet (both ends on this node).
fn address(i: u8) -> SocketAddr {
    let ip = match i % 4 {
        0 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        1 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        2 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let port = match (i / 4) % 4 {
        0 => 80,
        1 => 8080,
        2 => 40_000,
        _ => 40_001,
    };
    SocketAddr::new(ip, port)
}

/// Capture events into a small flow table.
pub fn flow_table(data: &[u8]) {
    let mut script = Script { data };
    let config = small_config();
    let mut flow = FlowTable::new(config);
    let mut calls: Vec<FlowCall> = Vec::new();
    let mut skips = Vec::new();
    let mut sink = BothSinks::new();
    let mut ts = 1_700_000_000_000_000_000_u64;
    // Next sequence number per (cookie, direction).
    let mut next = [[0u32; 2]; 8];
    while !script.done() {
        let op = script.u8();
        ts += u64::from(script.u8()) * 1_000_000;
        match op % 8 {
            0..=4 => {
                let cookie = script.u8() % 8;
                let direction = if op & 8 == 0 {
                    Direction::Egress
                } else {
                    Direction::Ingress
                };
                // Sockets 2k and 2k+1 are the two ends of one connection unless the script says
                // otherwise.
                let (local, remote) = if op & 0x10 == 0 {
                    let pair = (cookie / 2) * 2;
                    let (a, b) = (address(pair), address(pair + 5));
                    if cookie.is_multiple_of(2) {
                        (a, b)
                    } else {
                        (b, a)
                    }
                } else {
                    (address(script.u8()), address(script.u8()))
                };
                let (src, dst) = match direction {
                    Direction::Egress => (local, remote),
                    Direction::Ingress => (remote, local),
                };
                let bits = script.u8();
                let flags = TcpFlags {
                    syn: bits & 1 != 0,
                    ack: bits & 2 != 0,
                    fin: bits & 4 != 0,
                    rst: bits & 8 != 0,
                };
                let d = direction.index();
                let c = usize::from(cookie);
                let seq = match bits >> 4 {
                    0..=9 => next[c][d],
                    10 | 11 => next[c][d].wrapping_add(u32::from(script.u16())),
                    12 | 13 => next[c][d].wrapping_sub(u32::from(script.u8())),
                    _ => script.u32(),
                };
                let skipped = if op & 0x20 != 0 {
                    u32::from(script.u16())
                } else {
                    0
                };
                let body = payload(&mut script);
                let tail = if op & 0x40 != 0 {
                    u32::from(script.u16())
                } else {
                    0
                };
                let payload_len = skipped + body.len() as u32 + tail;
                if op & 0x80 != 0 && script.u8() >= 0xf0 {
                    ts += 30 * 1_000_000_000; // long enough to idle a connection out
                }
                let end = seq
                    .wrapping_add(payload_len)
                    .wrapping_add(u32::from(flags.syn || flags.fin));
                if (end.wrapping_sub(next[c][d]) as i32) > 0 || flags.syn {
                    next[c][d] = end;
                }
                let packet = Packet {
                    cookie: u64::from(cookie) + 1,
                    // The last two sockets are UDP: datagrams take the flow table's other path.
                    transport: if cookie >= 6 {
                        Transport::Udp
                    } else {
                        Transport::Tcp
                    },
                    cgroup_id: u64::from(cookie % 3),
                    direction,
                    src,
                    dst,
                    seq,
                    payload_len,
                    skipped,
                    payload: body,
                    flags,
                    ts,
                    tls: false,
                };
                flow.handle(&Event::Packet(packet), &mut calls, &mut skips);
            }
            5 => {
                let cookie = u64::from(script.u8() % 8) + 1;
                let len = usize::from(script.u8() % 16);
                let comm = String::from_utf8_lossy(script.bytes(len)).into_owned();
                let owner = Owner {
                    cookie,
                    pid: u32::from(script.u16()),
                    comm,
                    cgroup_id: u64::from(script.u8()),
                };
                flow.handle(&Event::Owner(owner), &mut calls, &mut skips);
            }
            6 => flow.tick(ts, &mut calls, &mut skips),
            _ => flow.finish(&mut calls, &mut skips),
        }
        check_bounds(&flow, &config);
        for call in calls.drain(..) {
            let call = enrich(call, &mut NoCgroups);
            sink.write(&call).expect("writing to io::sink");
        }
        skips.clear();
    }
    flow.finish(&mut calls, &mut skips);
    check_bounds(&flow, &config);
    assert_eq!(flow.connections(), 0);
    for call in calls.drain(..) {
        sink.write(&enrich(call, &mut NoCgroups))
            .expect("writing to io::sink");
    }
}

//! Shared by `corpus_http2.rs` and `corpus_grpc.rs`: reads the tshark field output recorded beside each
//! HTTP/2 capture, replays the capture through podtap, and compares the two.
//!
//! The recorded files (`F.tshark.tsv`) are tshark 4.0.17's output (Debian bookworm), one line per packet
//! holding HTTP/2, made with (`N` the port of the SOURCES.md row):
//!
//! ```text
//! tshark -r F.pcap -d tcp.port==N,http2 -Y http2 -T fields -E aggregator='|' \
//!   -e frame.number -e tcp.srcport -e tcp.dstport -e http2.streamid -e http2.type -e http2.flags \
//!   -e http2.header.count -e http2.header.name -e http2.header.value -e grpc.message_length > F.tshark.tsv
//! ```
//!
//! A packet may hold several HTTP/2 frames: `http2.streamid`, `http2.type` and `http2.flags` have one
//! entry per frame, `http2.header.count` one per HEADERS frame, and the names and values are those
//! frames' fields in order. A field tshark could not name (an HPACK index into a table it never saw)
//! is `<unknown>`.

#![allow(dead_code)]

use std::collections::BTreeMap;

use crate::common::{fixture, replay_sorted, tsv_rows};
use podtap::model::{Call, CallStatus, Request, Response};

/// One HEADERS frame as tshark decoded it.
#[derive(Clone, Debug)]
pub struct Headers {
    pub frame: u32,
    pub from_server: bool,
    pub stream: u32,
    pub end_stream: bool,
    /// (name, value), `<unknown>` for names tshark could not resolve.
    pub fields: Vec<(String, String)>,
}

impl Headers {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What tshark saw in one capture.
#[derive(Debug, Default)]
pub struct Tshark {
    pub headers: Vec<Headers>,
    /// gRPC messages (`grpc.message_length` entries) sent by the client and by the server.
    pub client_messages: u64,
    pub server_messages: u64,
}

fn list(field: &str) -> Vec<&str> {
    if field.is_empty() {
        Vec::new()
    } else {
        field.split('|').collect()
    }
}

/// Reads `F.tshark.tsv`; `server_port` tells the directions apart.
pub fn tshark(dir: &str, name: &str, server_port: u16) -> Tshark {
    let mut out = Tshark::default();
    for row in tsv_rows(dir, &format!("{name}.tshark.tsv")) {
        let cols: Vec<&str> = row.iter().map(String::as_str).collect();
        assert_eq!(cols.len(), 10, "{row:?}");
        let frame: u32 = cols[0].parse().expect("frame number");
        let from_server = cols[1].parse::<u16>().expect("port") == server_port;
        let streams = list(cols[3]);
        let types = list(cols[4]);
        let flags = list(cols[5]);
        let counts = list(cols[6]);
        let names = list(cols[7]);
        let values = list(cols[8]);
        assert_eq!(names.len(), values.len(), "{row:?}");
        assert_eq!(
            counts
                .iter()
                .map(|c| c.parse::<usize>().expect("count"))
                .sum::<usize>(),
            names.len(),
            "{row:?}"
        );
        let mut counts = counts.iter();
        let mut at = 0;
        for (i, kind) in types.iter().enumerate() {
            if *kind != "1" {
                continue;
            }
            let count: usize = counts
                .next()
                .expect("a count per HEADERS frame")
                .parse()
                .expect("count");
            let flag = u8::from_str_radix(flags[i].trim_start_matches("0x"), 16).expect("flags");
            out.headers.push(Headers {
                frame,
                from_server,
                stream: streams[i].parse().expect("stream id"),
                end_stream: flag & 1 != 0,
                fields: names[at..at + count]
                    .iter()
                    .zip(&values[at..at + count])
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect(),
            });
            at += count;
        }
        let messages = list(cols[9]).len() as u64;
        if from_server {
            out.server_messages += messages;
        } else {
            out.client_messages += messages;
        }
    }
    out
}

/// One call as both sides can state it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expect {
    pub grpc: bool,
    /// HTTP method (absent for gRPC, whose calls are always POST).
    pub method: Option<String>,
    /// `:path`, the query cut for HTTP.
    pub path: Option<String>,
    pub authority: Option<String>,
    /// HTTP `:status` of the final response.
    pub status: Option<u16>,
    pub grpc_status: Option<u32>,
    pub outcome: &'static str,
}

/// tshark's requests (client HEADERS with `:method`) joined with the server's HEADERS on their stream.
pub fn expected(t: &Tshark) -> Vec<Expect> {
    let mut by_stream: BTreeMap<u32, Vec<&Headers>> = BTreeMap::new();
    for h in t.headers.iter().filter(|h| h.from_server) {
        by_stream.entry(h.stream).or_default().push(h);
    }
    let mut out: Vec<Expect> = t
        .headers
        .iter()
        .filter(|h| !h.from_server && h.get(":method").is_some())
        .map(|request| {
            let grpc = request
                .get("content-type")
                .is_some_and(|ct| ct.starts_with("application/grpc"));
            let server = by_stream.get(&request.stream).cloned().unwrap_or_default();
            let status = server
                .iter()
                .filter_map(|h| h.get(":status")?.parse::<u16>().ok())
                .find(|s| !(100..200).contains(s));
            let grpc_status = server
                .iter()
                .find_map(|h| h.get("grpc-status")?.parse::<u32>().ok());
            let ended = server.iter().any(|h| h.end_stream);
            let outcome = match (grpc, status, grpc_status) {
                (_, None, None) => "no_response",
                (false, Some(s), _) if s >= 500 => "error",
                (false, _, _) => "ok",
                (true, s, Some(0)) if s.is_none_or(|s| s == 200) => "ok",
                (true, _, Some(_)) => "error",
                // Cut short before the trailers: the HTTP status decides (see the parser's docs).
                (true, Some(200), None) if !ended => "ok",
                (true, _, None) => "error",
            };
            let path = request.get(":path").map(|p| {
                if grpc {
                    p.to_owned()
                } else {
                    p.split('?').next().unwrap_or_default().to_owned()
                }
            });
            Expect {
                grpc,
                method: (!grpc).then(|| request.get(":method").unwrap_or_default().to_owned()),
                path,
                authority: request.get(":authority").map(str::to_owned),
                status,
                grpc_status,
                outcome,
            }
        })
        .collect();
    out.sort();
    out
}

fn outcome(status: CallStatus) -> &'static str {
    match status {
        CallStatus::Ok => "ok",
        CallStatus::Error => "error",
        CallStatus::NoResponse => "no_response",
    }
}

fn some(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// podtap's calls in the same terms.
pub fn ours(calls: &[Call]) -> Vec<Expect> {
    let mut out: Vec<Expect> = calls
        .iter()
        .map(|c| {
            assert_eq!(c.version, Some("2"), "{c:?}");
            match (&c.request, &c.response) {
                (Request::Http(r), response) => Expect {
                    grpc: false,
                    method: Some(r.method.clone()),
                    path: some(&r.path),
                    authority: r.host.clone(),
                    status: response.as_ref().map(|r| match r {
                        Response::Http(r) => r.status,
                        other => panic!("not an HTTP response: {other:?}"),
                    }),
                    grpc_status: None,
                    outcome: outcome(c.status),
                },
                (Request::Grpc(r), response) => {
                    let response = response.as_ref().map(|r| match r {
                        Response::Grpc(r) => r,
                        other => panic!("not a gRPC response: {other:?}"),
                    });
                    Expect {
                        grpc: true,
                        method: None,
                        path: some(&r.method),
                        authority: r.authority.clone(),
                        status: response.and_then(|r| r.status),
                        grpc_status: response.and_then(|r| r.grpc_status),
                        outcome: outcome(c.status),
                    }
                }
                (other, _) => panic!("not HTTP/2: {other:?}"),
            }
        })
        .collect();
    out.sort();
    out
}

/// gRPC messages podtap counted: (client, server).
pub fn messages(calls: &[Call]) -> (u64, u64) {
    let mut sent = (0, 0);
    for c in calls {
        if let Request::Grpc(r) = &c.request {
            sent.0 += r.messages;
        }
        if let Some(Response::Grpc(r)) = &c.response {
            sent.1 += r.messages;
        }
    }
    sent
}

/// Replays `dir/name` (`.pcap` or `.pcapng`) and checks it against tshark: the same calls (count,
/// method, path, authority, status, grpc-status, outcome) and the same gRPC message counts per side.
pub fn check(dir: &str, file: &str, server_port: u16) -> (Tshark, Vec<Call>) {
    let name = file.rsplit_once('.').map_or(file, |(n, _)| n);
    let t = tshark(dir, name, server_port);
    let (calls, _) = replay_sorted(&fixture(dir, file));
    assert_eq!(ours(&calls), expected(&t), "{file}: calls\n{calls:#?}");
    assert_eq!(
        messages(&calls),
        (t.client_messages, t.server_messages),
        "{file}: gRPC messages (client, server)"
    );
    for c in &calls {
        assert_eq!(c.server.port, server_port, "{file}: server side {c:?}");
    }
    (t, calls)
}

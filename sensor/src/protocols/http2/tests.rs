//! HTTP/2 and gRPC parser cases, driven through the real `flow::stream::Stream` (so the skip requests
//! are applied as the flow layer applies them), with frames and header blocks built here.

use super::*;
use crate::model::{CallStatus, GrpcRequest, GrpcResponse, HttpResponse, Request, Response};
use crate::protocols::testing;
use frame::{
    CONTINUATION, DATA, FLAG_ACK, FLAG_END_HEADERS, FLAG_END_STREAM, FLAG_PADDED, FLAG_PRIORITY,
    GOAWAY, HEADERS, PING, PRIORITY, RST_STREAM, SETTINGS, WINDOW_UPDATE,
};

// ---------------------------------------------------------------------------------------------
// Building frames

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader {
        length: payload.len() as u32,
        kind,
        flags,
        stream,
        reserved: false,
    };
    [&header.encode()[..], payload].concat()
}

pub fn settings(values: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> = values
        .iter()
        .flat_map(|(id, v)| [&id.to_be_bytes()[..], &v.to_be_bytes()[..]].concat())
        .collect();
    frame(SETTINGS, 0, 0, &payload)
}

pub fn settings_ack() -> Vec<u8> {
    frame(SETTINGS, FLAG_ACK, 0, &[])
}

/// An HPACK encoder for one direction (`loona-hpack`'s: literal names are indexed).
pub struct Encoder(loona_hpack::Encoder<'static>);

impl Encoder {
    pub fn new() -> Self {
        Self(loona_hpack::Encoder::new())
    }

    pub fn block(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        self.0
            .encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
    }

    /// One HEADERS frame (END_HEADERS) with these fields.
    pub fn headers(&mut self, stream: u32, end_stream: bool, fields: &[(&str, &str)]) -> Vec<u8> {
        let flags = FLAG_END_HEADERS | if end_stream { FLAG_END_STREAM } else { 0 };
        frame(HEADERS, flags, stream, &self.block(fields))
    }
}

pub fn data(stream: u32, end_stream: bool, payload: &[u8]) -> Vec<u8> {
    frame(
        DATA,
        if end_stream { FLAG_END_STREAM } else { 0 },
        stream,
        payload,
    )
}

/// One gRPC message of `len` bytes (prefix and body).
pub fn message(len: usize) -> Vec<u8> {
    let mut m = vec![0];
    m.extend((len as u32).to_be_bytes());
    m.extend(std::iter::repeat_n(0x5a, len));
    m
}

fn rst(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

fn get(path: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "GET".into()),
        (":scheme", "http".into()),
        (":path", path.into()),
        (":authority", "api:8080".into()),
    ]
}

fn fields<'a>(list: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    list.iter().map(|(n, v)| (*n, v.as_str())).collect()
}

const GRPC_REQUEST: &[(&str, &str)] = &[
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/demo.Echo/Say"),
    (":authority", "echo:50051"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
];
const GRPC_RESPONSE: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/grpc")];

fn grpc_request(path: &str) -> Vec<(&'static str, String)> {
    GRPC_REQUEST
        .iter()
        .map(|(n, v)| {
            (
                *n,
                if *n == ":path" {
                    path.into()
                } else {
                    (*v).into()
                },
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Driving a parser

/// One connection through the real `Stream`s (see `protocols::testing`).
pub type Conn = testing::Conn<Http2Parser>;

/// What the cases assert on.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub protocol: Protocol,
    pub request: Request,
    pub response: Option<Response>,
    pub status: CallStatus,
}

pub fn outcome(call: ParsedCall) -> Outcome {
    assert_eq!(call.version, Some("2"));
    assert!(call.end >= call.start, "{call:?}");
    Outcome {
        protocol: call.protocol,
        request: call.request,
        response: call.response,
        status: call.status,
    }
}

pub fn http(method: &str, path: &str, host: Option<&str>, status: Option<u16>) -> Outcome {
    Outcome {
        protocol: Protocol::Http,
        request: Request::Http(HttpRequest {
            method: method.into(),
            path: path.into(),
            host: host.map(Into::into),
        }),
        response: status.map(|status| Response::Http(HttpResponse { status })),
        status: match status {
            Some(s) if s >= 500 => CallStatus::Error,
            Some(_) => CallStatus::Ok,
            None => CallStatus::NoResponse,
        },
    }
}

fn with_status(mut o: Outcome, status: CallStatus) -> Outcome {
    o.status = status;
    o
}

fn grpc(
    method: &str,
    sent: u64,
    response: Option<(Option<u32>, u64)>,
    status: CallStatus,
) -> Outcome {
    Outcome {
        protocol: Protocol::Grpc,
        request: Request::Grpc(GrpcRequest {
            method: method.into(),
            authority: Some("echo:50051".into()),
            messages: sent,
        }),
        response: response.map(|(grpc_status, messages)| {
            Response::Grpc(GrpcResponse {
                grpc_status,
                status: Some(200),
                messages,
            })
        }),
        status,
    }
}

/// A conversation: what each side sent, in order.
type Script = Vec<(Side, Vec<u8>)>;

fn run(script: &Script, chunk: usize) -> Vec<Outcome> {
    let mut conn = Conn::new();
    for (side, bytes) in script {
        for piece in bytes.chunks(chunk.max(1)) {
            conn.send(*side, piece);
        }
    }
    conn.close();
    conn.take(outcome)
}

/// Runs `script` whole, in segments of every size from 1 to 64, and with each message split at every
/// byte offset: the calls must be the same every time.
fn check(script: &Script, expected: &[Outcome]) {
    assert_eq!(run(script, usize::MAX), expected, "whole messages");
    for chunk in 1..=64 {
        assert_eq!(run(script, chunk), expected, "segments of {chunk} bytes");
    }
    for (i, (_, bytes)) in script.iter().enumerate() {
        // Every offset of short messages; a sample of long ones (plus their first and last bytes).
        let step = (bytes.len() / 300).max(1);
        let cuts =
            (1..bytes.len()).filter(|&cut| cut % step == 0 || cut < 64 || cut + 64 > bytes.len());
        for cut in cuts {
            let mut conn = Conn::new();
            conn.play(script, Some((i, cut)));
            conn.close();
            assert_eq!(conn.take(outcome), expected, "message {i} cut at {cut}");
        }
    }
}

fn preface_and_settings() -> Vec<u8> {
    [PREFACE, &settings(&[(0x3, 100), (0x4, 65_535)])].concat()
}

// ---------------------------------------------------------------------------------------------
// HTTP/2

#[test]
fn prior_knowledge_get_with_query_cut_and_authority() {
    let mut c = Encoder::new();
    let mut s = Encoder::new();
    let script: Script = vec![
        (Side::Client, preface_and_settings()),
        (
            Side::Server,
            [settings(&[(0x3, 128)]), settings_ack()].concat(),
        ),
        (
            Side::Client,
            [
                settings_ack(),
                c.headers(1, true, &fields(&get("/items/1?secret=1"))),
            ]
            .concat(),
        ),
        (
            Side::Server,
            [
                s.headers(
                    1,
                    false,
                    &[(":status", "200"), ("content-type", "text/plain")],
                ),
                data(1, false, &[b'x'; 100]),
                data(1, true, b""),
            ]
            .concat(),
        ),
    ];
    check(
        &script,
        &[http("GET", "/items/1", Some("api:8080"), Some(200))],
    );
}

#[test]
fn multiplexed_streams_answered_out_of_order_with_interleaved_data() {
    let mut c = Encoder::new();
    let mut s = Encoder::new();
    let script: Script = vec![
        (
            Side::Client,
            [
                preface_and_settings(),
                c.headers(1, true, &fields(&get("/one"))),
                c.headers(3, true, &fields(&get("/two"))),
                c.headers(5, true, &fields(&get("/three"))),
            ]
            .concat(),
        ),
        (
            Side::Server,
            [
                settings(&[]),
                s.headers(1, false, &[(":status", "200")]),
                s.headers(3, false, &[(":status", "404")]),
                data(3, false, &[1; 30]),
                data(1, false, &[2; 3000]),
                s.headers(5, true, &[(":status", "503")]),
                frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]),
                frame(PING, 0, 0, &[0; 8]),
                data(3, true, &[1; 5]),
                data(1, true, &[2; 20_000]),
            ]
            .concat(),
        ),
    ];
    check(
        &script,
        &[
            http("GET", "/three", Some("api:8080"), Some(503)),
            http("GET", "/two", Some("api:8080"), Some(404)),
            http("GET", "/one", Some("api:8080"), Some(200)),
        ],
    );
}

#[test]
fn continuation_padding_and_priority() {
    let mut c = Encoder::new();
    let mut s = Encoder::new();
    let block = c.block(&fields(&get("/continued")));
    let (first, rest) = block.split_at(4);
    let (second, third) = rest.split_at(rest.len() / 2);
    // HEADERS with padding and priority, then two CONTINUATIONs.
    let mut payload = vec![3u8]; // pad length
    payload.extend([0x80, 0, 0, 0, 15]); // exclusive dependency on 0, weight 15
    payload.extend(first);
    payload.extend([0; 3]);
    let request = [
        frame(PRIORITY, 0, 3, &[0, 0, 0, 0, 7]),
        frame(
            HEADERS,
            FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM,
            1,
            &payload,
        ),
        frame(CONTINUATION, 0, 1, second),
        frame(CONTINUATION, FLAG_END_HEADERS, 1, third),
    ]
    .concat();
    let mut padded = vec![10u8];
    padded.extend([7; 50]);
    padded.extend([0; 10]);
    let script: Script = vec![
        (Side::Client, [preface_and_settings(), request].concat()),
        (
            Side::Server,
            [
                settings(&[]),
                s.headers(1, false, &[(":status", "201")]),
                frame(DATA, FLAG_PADDED | FLAG_END_STREAM, 1, &padded),
            ]
            .concat(),
        ),
    ];
    check(
        &script,
        &[http("GET", "/continued", Some("api:8080"), Some(201))],
    );
}

#[test]
fn resets_goaway_and_close() {
    let mut c = Encoder::new();
    let mut s = Encoder::new();
    let script: Script = vec![
        (
            Side::Client,
            [
                preface_and_settings(),
                c.headers(1, true, &fields(&get("/cancelled"))),
                c.headers(3, true, &fields(&get("/refused"))),
                c.headers(5, true, &fields(&get("/quiet"))),
                c.headers(7, true, &fields(&get("/reset-midway"))),
                c.headers(9, true, &fields(&get("/answered"))),
                c.headers(11, true, &fields(&get("/open"))),
                c.headers(13, true, &fields(&get("/headers-only"))),
                c.headers(15, true, &fields(&get("/unprocessed"))),
                rst(1, 0x8), // CANCEL from the client
            ]
            .concat(),
        ),
        (
            Side::Server,
            [
                settings(&[]),
                rst(3, 0x7), // REFUSED_STREAM
                rst(5, 0),   // NO_ERROR
                s.headers(7, false, &[(":status", "200")]),
                rst(7, 0x2), // INTERNAL_ERROR
                s.headers(13, false, &[(":status", "502")]),
                // Streams above 13 will not be processed.
                frame(GOAWAY, 0, 0, &[0, 0, 0, 13, 0, 0, 0, 0, b'b', b'y', b'e']),
                s.headers(9, true, &[(":status", "204")]),
            ]
            .concat(),
        ),
    ];
    let host = Some("api:8080");
    check(
        &script,
        &[
            with_status(http("GET", "/cancelled", host, None), CallStatus::Error),
            with_status(http("GET", "/refused", host, None), CallStatus::Error),
            http("GET", "/quiet", host, None),
            with_status(
                http("GET", "/reset-midway", host, Some(200)),
                CallStatus::Error,
            ),
            http("GET", "/unprocessed", host, None),
            http("GET", "/answered", host, Some(204)),
            // At the close: no response at all, then response headers without an end.
            http("GET", "/open", host, None),
            http("GET", "/headers-only", host, Some(502)),
        ],
    );
}

#[test]
fn headers_only_stream_cut_by_the_close_keeps_its_status() {
    let mut c = Encoder::new();
    let mut s = Encoder::new();
    let script: Script = vec![
        (
            Side::Client,
            [
                preface_and_settings(),
                c.headers(1, true, &fields(&get("/slow"))),
            ]
            .concat(),
        ),
        (
            Side::Server,
            [
                settings(&[]),
                s.headers(1, false, &[(":status", "500")]),
                data(1, false, b"partial"),
            ]
            .concat(),
        ),
    ];
    check(
        &script,
        &[http("GET", "/slow", Some("api:8080"), Some(500))],
    );
}

// ---------------------------------------------------------------------------------------------
// gRPC

#[test]
fn grpc_unary() {
    let mut c = Encoder::new();
    let mut s = Encoder::new();
    let script: Script = vec![
        (
            Side::Client,
            [
                preface_and_settings(),
                c.headers(1, false, GRPC_REQUEST),
                data(1, true, &message(12)),
            ]
            .concat(),
        ),
        (
            Side::Server,
            [
                settings(&[]),
                s.headers(1, false, GRPC_RESPONSE),
                data(1, false, &message(20)),
                s.headers(1, true, &[("grpc-status", "0"), ("grpc-message", "")]),
            ]
            .concat(),
        ),
    ];
    check(
        &script,
        &[grpc(
            "/demo.Echo/Say",
            1,
            Some((Some(0), 1)),
            CallStatus::Ok,
        )],
    );
}

#[test]
fn grpc_streaming_messages_across_frames_and_segments() {
    let mut c = Encoder::new();
    let mut s = Encoder::new();
    // Server streaming: two messages in one DATA frame, a 20,000-byte one over three frames, a prefix
    // split between two frames, an empty message.
    let big = message(20_000);
    let split = message(9);
    let server_data = [
        data(1, false, &[message(3), message(4)].concat()),
        data(1, false, &big[..7]),
        data(1, false, &big[7..16_000]),
        data(1, false, &[&big[16_000..], &split[..2]].concat()),
        data(1, false, &[&split[2..], &message(0)[..]].concat()),
    ]
    .concat();
    let script: Script = vec![
        (
            Side::Client,
            [
                preface_and_settings(),
                c.headers(1, false, &fields(&grpc_request("/demo.Echo/Stream"))),
                data(1, true, &message(1)),
            ]
            .concat(),
        ),
        (
            Side::Server,
            [
                settings(&[]),
                s.headers(1, false, GRPC_RESPONSE),
                server_data,
                s.headers(1, true, &[("grpc-status", "0")]),
            ]
            .concat(),
        ),
    ];
    check(
        &script,
        &[grpc(
            "/demo.Echo/Stream",
            1,
            Some((Some(0), 5)),
            CallStatus::Ok,
        )],
    );
}

#[test]
fn grpc_client_streaming_and_bidi_interleaved() {
    let mut c = Encoder::new();
    let mut s = Encoder::new();
    let script: Script = vec![
        (
            Side::Client,
            [
                preface_and_settings(),
                c.headers(1, false, &fields(&grpc_request("/demo.Echo/Upload"))),
                c.headers(3, false, &fields(&grpc_request("/demo.Echo/Chat"))),
                data(1, false, &message(10)),
                data(3, false, &message(1)),
                data(1, false, &[message(10), message(10)].concat()),
            ]
            .concat(),
        ),
        (
            Side::Server,
            [
                settings(&[]),
                s.headers(3, false, GRPC_RESPONSE),
                data(3, false, &message(2)),
            ]
            .concat(),
        ),
        (
            Side::Client,
            [data(3, false, &message(1)), data(1, true, &message(10))].concat(),
        ),
        (
            Side::Server,
            [
                s.headers(1, false, GRPC_RESPONSE),
                data(1, false, &message(4)),
                s.headers(1, true, &[("grpc-status", "0")]),
                data(3, false, &message(2)),
            ]
            .concat(),
        ),
        (Side::Client, data(3, true, &message(1))),
        (
            Side::Server,
            [
                data(3, false, &message(2)),
                s.headers(3, true, &[("grpc-status", "0")]),
            ]
            .concat(),
        ),
    ];
    check(
        &script,
        &[
            grpc("/demo.Echo/Upload", 4, Some((Some(0), 1)), CallStatus::Ok),
            grpc("/demo.Echo/Chat", 3, Some((Some(0), 3)), CallStatus::Ok),
        ],
    );
}

#[test]
fn grpc_errors() {
    let mut c = Encoder::new();
    let mut s = Encoder::new();
    let script: Script = vec![
        (
            Side::Client,
            [
                preface_and_settings(),
                c.headers(1, false, &fields(&grpc_request("/demo.Echo/Missing"))),
                data(1, true, &message(2)),
                c.headers(3, false, &fields(&grpc_request("/demo.Echo/Failing"))),
                data(3, true, &message(2)),
                c.headers(5, false, &fields(&grpc_request("/demo.Echo/Deadline"))),
                data(5, false, &message(2)),
                rst(5, 0x8),
            ]
            .concat(),
        ),
        (
            Side::Server,
            [
                settings(&[]),
                // Trailers-only: NOT_FOUND.
                s.headers(
                    1,
                    true,
                    &[
                        (":status", "200"),
                        ("content-type", "application/grpc"),
                        ("grpc-status", "5"),
                    ],
                ),
                s.headers(3, false, GRPC_RESPONSE),
                data(3, false, &message(1)),
                s.headers(3, true, &[("grpc-status", "13"), ("grpc-message", "boom")]),
            ]
            .concat(),
        ),
    ];
    check(
        &script,
        &[
            grpc("/demo.Echo/Deadline", 1, None, CallStatus::Error),
            grpc(
                "/demo.Echo/Missing",
                1,
                Some((Some(5), 0)),
                CallStatus::Error,
            ),
            grpc(
                "/demo.Echo/Failing",
                1,
                Some((Some(13), 1)),
                CallStatus::Error,
            ),
        ],
    );
}

#[test]
fn grpc_answer_from_a_proxy_without_grpc_status() {
    let mut c = Encoder::new();
    let mut s = Encoder::new();
    let script: Script = vec![
        (
            Side::Client,
            [
                preface_and_settings(),
                c.headers(1, false, GRPC_REQUEST),
                data(1, true, &message(2)),
            ]
            .concat(),
        ),
        (
            Side::Server,
            [
                settings(&[]),
                s.headers(
                    1,
                    false,
                    &[(":status", "503"), ("content-type", "text/plain")],
                ),
                data(1, true, b"upstream down"),
            ]
            .concat(),
        ),
    ];
    let mut expected = grpc("/demo.Echo/Say", 1, Some((None, 0)), CallStatus::Error);
    if let Some(Response::Grpc(r)) = &mut expected.response {
        r.status = Some(503);
    }
    check(&script, &[expected]);
}

// ---------------------------------------------------------------------------------------------
// Lost bytes, joining mid-stream, bounds

#[test]
fn lost_bytes_inside_a_frame_keep_the_frame_boundaries() {
    let mut c = Encoder::new();
    let mut s = Encoder::new();
    let mut conn = Conn::new();
    conn.client(&preface_and_settings());
    conn.client(&c.headers(1, true, &fields(&get("/a"))));
    conn.client(&c.headers(3, false, GRPC_REQUEST));
    let response = s.headers(1, false, &[(":status", "200")]);
    conn.server(&response);
    // A 5,000-byte DATA frame of stream 1 whose middle 3,000 bytes were not captured (the skip covers
    // them: no gap at all), then a gRPC DATA frame whose message body is partly lost.
    let body = data(1, true, &[0; 5000]);
    conn.segment(Side::Server, 1000, &body[..1000]);
    conn.lose(Side::Server, 3000);
    conn.server(&body[4000..]);
    assert_eq!(
        conn.take(outcome),
        vec![http("GET", "/a", Some("api:8080"), Some(200))]
    );
    let request = data(3, true, &[message(10), message(10)].concat());
    conn.client(&request[..12]);
    conn.lose(Side::Client, 3); // inside the first message's body: a gap within the frame
    conn.client(&request[15..]);
    conn.server(&s.headers(3, false, GRPC_RESPONSE));
    conn.server(&s.headers(3, true, &[("grpc-status", "0")]));
    // Counting stopped at the lost bytes: the first message's end was not seen.
    assert_eq!(
        conn.take(outcome),
        vec![grpc(
            "/demo.Echo/Say",
            0,
            Some((Some(0), 0)),
            CallStatus::Ok
        )]
    );
    assert_eq!(conn.parser.stats().malformed, 0);
}

#[test]
fn lost_frame_boundaries_resynchronise() {
    let mut c = Encoder::new();
    let mut s = Encoder::new();
    let mut conn = Conn::new();
    conn.client(&preface_and_settings());
    conn.client(&c.headers(1, false, GRPC_REQUEST));
    conn.client(&data(1, true, &message(3)));
    conn.server(&[settings(&[]), s.headers(1, false, GRPC_RESPONSE)].concat());
    conn.server(&data(1, false, &message(100)));
    // A PING (17 bytes) lost between two DATA frames: frame boundaries are lost; each following DATA
    // frame holds one whole message, so counting resumes.
    conn.lose(Side::Server, 17);
    conn.server(&data(1, false, &message(50)));
    conn.server(&frame(PING, FLAG_ACK, 0, &[0; 8]));
    conn.server(&data(1, false, &message(60)));
    // The trailers refer only to static entries and literals: they decode after the HPACK reset.
    let mut fresh = Encoder::new();
    conn.server(&fresh.headers(1, true, &[("grpc-status", "0")]));
    assert_eq!(
        conn.take(outcome),
        vec![grpc(
            "/demo.Echo/Say",
            1,
            Some((Some(0), 3)),
            CallStatus::Ok
        )]
    );
    // The client side also loses bytes across a frame header: a later request decodes from literals.
    conn.lose(Side::Client, 40);
    let mut c2 = Encoder::new();
    conn.client(&c2.headers(3, true, &fields(&get("/after"))));
    let mut s2 = Encoder::new();
    conn.server(&s2.headers(3, true, &[(":status", "200")]));
    assert_eq!(
        conn.take(outcome),
        vec![http("GET", "/after", Some("api:8080"), Some(200))]
    );
}

/// Literal with incremental indexing, name by static index.
fn literal_indexed_name(index: u8, value: &str) -> Vec<u8> {
    let mut b = vec![0x40 | index, value.len() as u8];
    b.extend(value.as_bytes());
    b
}

#[test]
fn joined_mid_connection_keeps_what_decodes() {
    // The sender's table holds `:path: /hidden` (62) and `:authority: api` (63) from blocks sent
    // before podtap joined. The block seen refers to both, with `:method` from the static table.
    let mut conn = Conn::new();
    let block = [0x82, 0x80 | 62, 0x80 | 63, 0x86];
    let request = frame(HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 7, &block);
    // Joined: the first bytes of the client are this frame, no preface.
    conn.client(&request);
    // The server's response refers to a dynamic entry too; its `:status` is a literal it indexes.
    let response = [literal_indexed_name(8, "202"), vec![0x80 | 70]].concat();
    conn.server(&frame(HEADERS, FLAG_END_HEADERS, 7, &response));
    conn.server(&data(7, true, b"ok"));
    assert_eq!(conn.take(outcome), vec![http("GET", "", None, Some(202))]);
    // The client indexes a new `:path`: its 62 is known from here on (its 64 still is not). Each
    // direction has its own table: the server's 62 is the `:status: 202` it indexed.
    let block = [
        vec![0x82],
        literal_indexed_name(4, "/known"),
        vec![0x80 | 64, 0x86],
    ]
    .concat();
    conn.client(&frame(
        HEADERS,
        FLAG_END_HEADERS | FLAG_END_STREAM,
        9,
        &block,
    ));
    conn.client(&frame(
        HEADERS,
        FLAG_END_HEADERS | FLAG_END_STREAM,
        11,
        &[0x82, 0x80 | 62, 0x86],
    ));
    conn.server(&frame(
        HEADERS,
        FLAG_END_HEADERS | FLAG_END_STREAM,
        9,
        &[0x80 | 62],
    ));
    conn.server(&frame(
        HEADERS,
        FLAG_END_HEADERS | FLAG_END_STREAM,
        11,
        &[0x88],
    ));
    assert_eq!(
        conn.take(outcome),
        vec![
            http("GET", "/known", None, Some(202)),
            http("GET", "/known", None, Some(200)),
        ]
    );
}

#[test]
fn joined_mid_frame_waits_for_a_frame_boundary() {
    let mut c = Encoder::new();
    let mut s = Encoder::new();
    let mut conn = Conn::new();
    // The server side starts inside a DATA payload; the client side at a frame.
    conn.server(&[0x42; 300]);
    conn.server(&[data(1, true, &[0; 20]), settings(&[])].concat());
    conn.client(&c.headers(3, true, &fields(&get("/x"))));
    conn.server(&s.headers(3, true, &[(":status", "200")]));
    assert_eq!(
        conn.take(outcome),
        vec![http("GET", "/x", Some("api:8080"), Some(200))]
    );
}

#[test]
fn too_many_streams_evict_the_oldest() {
    let mut c = Encoder::new();
    let mut conn = Conn::new();
    conn.client(&preface_and_settings());
    let extra = 10u32;
    for i in 0..(MAX_STREAMS as u32 + extra) {
        conn.client(&c.headers(2 * i + 1, true, &fields(&get("/n"))));
    }
    assert_eq!(conn.parser.open_streams(), MAX_STREAMS);
    assert_eq!(conn.parser.stats().pending_overflow, u64::from(extra));
    let evicted = conn.take(outcome);
    assert_eq!(evicted.len(), extra as usize);
    assert!(evicted.iter().all(|o| o.status == CallStatus::NoResponse));
}

#[test]
fn oversized_header_blocks_are_dropped_and_parsing_goes_on() {
    let mut c = Encoder::new();
    let mut s = Encoder::new();
    let mut conn = Conn::new();
    conn.client(&preface_and_settings());
    let big = "v".repeat(16_000);
    let mut block = Vec::new();
    for i in 0..6 {
        block.extend(c.block(&[(":path", "/big"), ("x-filler", &format!("{i}{big}"))]));
    }
    let pieces: Vec<&[u8]> = block.chunks(16_000).collect();
    let mut frames = frame(HEADERS, FLAG_END_STREAM, 1, pieces[0]);
    for (i, piece) in pieces.iter().enumerate().skip(1) {
        let flags = if i + 1 == pieces.len() {
            FLAG_END_HEADERS
        } else {
            0
        };
        frames.extend(frame(CONTINUATION, flags, 1, piece));
    }
    conn.client(&frames);
    // The client's table is unknown now: a fresh encoder's literals still decode.
    let mut c2 = Encoder::new();
    conn.client(&c2.headers(3, true, &fields(&get("/small"))));
    conn.server(&s.headers(3, true, &[(":status", "200")]));
    conn.server(&s.headers(1, true, &[(":status", "200")]));
    assert_eq!(
        conn.take(outcome),
        vec![http("GET", "/small", Some("api:8080"), Some(200))]
    );
}

#[test]
fn a_huge_header_table_setting_is_capped() {
    let mut c = Encoder::new();
    let mut s = Encoder::new();
    let mut conn = Conn::new();
    conn.client(&[PREFACE, &settings(&[(0x1, u32::MAX), (0x5, 1 << 20)])].concat());
    conn.server(&settings(&[(0x1, u32::MAX)]));
    assert!(conn
        .parser
        .decoders
        .iter()
        .all(|d| d.limit() == hpack::MAX_TABLE_SIZE));
    conn.client(&c.headers(1, true, &fields(&get("/t"))));
    // A frame larger than the default maximum: allowed, the client raised it.
    conn.server(&s.headers(1, false, &[(":status", "200")]));
    conn.server(&data(1, true, &vec![0; 100_000]));
    assert_eq!(
        conn.take(outcome),
        vec![http("GET", "/t", Some("api:8080"), Some(200))]
    );
    assert_eq!(conn.parser.stats().malformed, 0);
}

#[test]
fn garbage_never_panics() {
    let mut state = 0x9e37_79b9u32;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    for _ in 0..300 {
        let mut conn = Conn::new();
        for _ in 0..8 {
            let len = (next() % 400) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let side = if next() % 2 == 0 {
                Side::Client
            } else {
                Side::Server
            };
            if next() % 5 == 0 {
                conn.lose(side, next() % 1000 + 1);
            }
            conn.send(side, &bytes);
        }
        conn.close();
        conn.take(outcome);
    }
}

// ---------------------------------------------------------------------------------------------
// Detection

fn hints(sender_port: u16, receiver_port: u16) -> Hints {
    Hints {
        transport: crate::model::Transport::Tcp,
        sender_port,
        receiver_port,
    }
}

fn matched(sender: Side) -> Detection {
    Detection::Match {
        protocol: Known::Http2,
        sender,
    }
}

#[test]
fn probe_preface_and_server_settings() {
    let h = hints(40_000, 8080);
    assert_eq!(probe(&preface_and_settings(), &h), matched(Side::Client));
    assert_eq!(probe(&PREFACE[..10], &h), Detection::NeedMore);
    let server_first = [
        settings(&[(0x3, 100), (0x4, 1 << 20)]),
        frame(WINDOW_UPDATE, 0, 0, &[0, 0xf, 0, 1]),
    ]
    .concat();
    assert_eq!(
        probe(&server_first, &hints(8080, 40_000)),
        matched(Side::Server)
    );
    assert_eq!(probe(&settings(&[])[..5], &h), Detection::NeedMore);
}

#[test]
fn probe_mid_stream_headers_tell_the_sides() {
    let mut c = Encoder::new();
    let mut s = Encoder::new();
    // Ports give the opposite answer: the pseudo-header fields win.
    let request = [
        frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]),
        c.headers(77, true, &fields(&get("/"))),
    ]
    .concat();
    assert_eq!(probe(&request, &hints(80, 50_000)), matched(Side::Client));
    let response = s.headers(77, false, &[(":status", "200")]);
    assert_eq!(probe(&response, &hints(50_000, 80)), matched(Side::Server));
    // No header block: two frames ending exactly, the ports decide.
    let control = [
        frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]),
        frame(PING, 0, 0, &[0; 8]),
    ]
    .concat();
    assert_eq!(probe(&control, &hints(41_000, 3550)), matched(Side::Client));
    assert_eq!(probe(&control, &hints(3550, 41_000)), matched(Side::Server));
    // One frame alone is not enough, except on gRPC's port.
    let one = frame(PING, 0, 0, &[0; 8]);
    assert_eq!(probe(&one, &hints(41_000, 3550)), Detection::NeedMore);
    assert_eq!(probe(&one, &hints(41_000, 50051)), matched(Side::Client));
}

#[test]
fn probe_rejects_other_protocols_and_random_bytes() {
    let h = hints(41_000, 8080);
    for text in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
        b"AMQP\x00\x00\x09\x01",
        b"\x00\x00\x00\x2a\x00\x12\x00\x03\x00\x00\x00\x07\x00\x06client",
    ] {
        assert!(
            !matches!(probe(text, &h), Detection::Match { .. }),
            "{text:?}"
        );
    }
    let mut state = 0x2545_f491u32;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let mut matches = 0;
    for _ in 0..200_000 {
        let len = 9 + (next() % 120) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if matches!(probe(&bytes, &h), Detection::Match { .. }) {
            matches += 1;
        }
    }
    assert_eq!(matches, 0);
}

#[test]
fn a_stream_closed_reset_after_the_response_is_no_error() {
    // curl answers frames that follow a response's end with RST_STREAM(STREAM_CLOSED); when podtap
    // missed that end (lost bytes), the reset ends the call, which counts by its status.
    let mut c = Encoder::new();
    let mut s = Encoder::new();
    let script: Script = vec![
        (
            Side::Client,
            [
                preface_and_settings(),
                c.headers(1, true, &fields(&get("/big"))),
            ]
            .concat(),
        ),
        (
            Side::Server,
            [settings(&[]), s.headers(1, false, &[(":status", "200")])].concat(),
        ),
        (Side::Client, rst(1, 0x5)),
    ];
    check(&script, &[http("GET", "/big", Some("api:8080"), Some(200))]);
}

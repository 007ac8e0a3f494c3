//! HTTP/1 parser cases, driven through the real `flow::stream::Stream` so that the skip requests the
//! parser makes are applied exactly as the flow layer applies them.

use super::*;
use crate::protocols::testing::{self, XorShift};

type Conn = testing::Conn<Http1Parser>;

/// The parts of a call the cases assert on.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    method: String,
    path: String,
    host: Option<String>,
    status: Option<u16>,
    outcome: CallStatus,
}

fn summary(call: ParsedCall) -> Summary {
    let Request::Http(request) = call.request else {
        panic!("not an HTTP request")
    };
    Summary {
        method: request.method,
        path: request.path,
        host: request.host,
        status: call.response.map(|r| match r {
            Response::Http(r) => r.status,
            other => panic!("not an HTTP response: {other:?}"),
        }),
        outcome: call.status,
    }
}

fn ok(method: &str, path: &str, host: Option<&str>, status: u16) -> Summary {
    Summary {
        method: method.into(),
        path: path.into(),
        host: host.map(Into::into),
        status: Some(status),
        outcome: if status >= 500 {
            CallStatus::Error
        } else {
            CallStatus::Ok
        },
    }
}

fn unanswered(method: &str, path: &str, host: Option<&str>) -> Summary {
    Summary {
        method: method.into(),
        path: path.into(),
        host: host.map(Into::into),
        status: None,
        outcome: CallStatus::NoResponse,
    }
}

#[test]
fn keep_alive_requests_then_responses() {
    let mut c = Conn::new();
    c.client(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    c.client(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
    assert!(c.calls.is_empty());
    // Content-Length body "hello".
    c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
    c.server(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    c.client(b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n");
    c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    c.close();
    assert_eq!(
        c.take(summary),
        vec![
            ok("GET", "/a", Some("h"), 200),
            ok("GET", "/b", Some("h"), 404),
            ok("GET", "/c", Some("h"), 200),
        ]
    );
}

#[test]
fn call_times_are_first_request_byte_and_last_response_byte() {
    let mut c = Conn::new();
    c.client(b"GET /a HTTP/1.1\r\n\r\n"); // ts 2000
    c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab"); // ts 3000
    c.server(b"cd"); // ts 4000: the body's last byte
    assert_eq!(c.calls.len(), 1);
    assert_eq!((c.calls[0].start, c.calls[0].end), (2_000, 4_000));
    assert_eq!(c.calls[0].version, Some("1.1"));
}

#[test]
fn pipelining_three_requests_three_responses_in_one_buffer_each() {
    let mut c = Conn::new();
    c.client(
        b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /2 HTTP/1.1\r\nHost: h\r\n\r\n\
          GET /3 HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    c.server(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none\
          HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n\
          HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nthree",
    );
    assert_eq!(
        c.take(summary),
        vec![
            ok("GET", "/1", Some("h"), 200),
            ok("GET", "/2", Some("h"), 201),
            ok("GET", "/3", Some("h"), 202),
        ]
    );
}

#[test]
fn content_length_bodies_on_requests_and_responses() {
    let mut c = Conn::new();
    // A request body that looks like a request line must be skipped, not parsed.
    c.client(b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 16\r\n\r\nGET /no HTTP/1.1");
    c.client(b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
    // A response body that looks like a status line.
    c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\nHTTP/1.1 500 Oops");
    c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!");
    c.close();
    assert_eq!(
        c.take(summary),
        vec![
            ok("POST", "/form", Some("h"), 200),
            ok("PUT", "/x", Some("h"), 200),
        ]
    );
}

#[test]
fn chunked_response_with_extensions_and_trailers() {
    let mut c = Conn::new();
    c.client(b"GET /chunks HTTP/1.1\r\nHost: h\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n");
    c.server(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
          5;name=value\r\nhello\r\n\
          A; ext\r\n0123456789\r\n",
    );
    assert!(c.calls.is_empty(), "not complete before the last chunk");
    c.server(b"0;last\r\nX-Checksum: abc\r\nX-Other: d\r\n\r\n");
    assert_eq!(c.take(summary), vec![ok("GET", "/chunks", Some("h"), 200)]);
    c.server(b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(c.take(summary), vec![ok("GET", "/after", Some("h"), 204)]);
}

#[test]
fn chunked_request_body() {
    let mut c = Conn::new();
    c.client(
        b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
          4\r\nGET \r\n0\r\n\r\n\
          GET /next HTTP/1.1\r\n\r\n",
    );
    c.server(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(
        c.take(summary),
        vec![
            ok("POST", "/up", Some("h"), 200),
            ok("GET", "/next", None, 200)
        ]
    );
}

#[test]
fn expect_100_continue_is_one_call() {
    let mut c = Conn::new();
    c.client(
        b"POST /upload HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    );
    c.server(b"HTTP/1.1 100 Continue\r\n\r\n");
    assert!(c.calls.is_empty());
    c.client(b"data");
    c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    c.close();
    assert_eq!(c.take(summary), vec![ok("POST", "/upload", Some("h"), 200)]);
}

#[test]
fn head_response_has_no_body_despite_content_length() {
    let mut c = Conn::new();
    c.client(b"HEAD /big HTTP/1.1\r\nHost: h\r\n\r\nGET /small HTTP/1.1\r\nHost: h\r\n\r\n");
    c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
    assert_eq!(c.take(summary), vec![ok("HEAD", "/big", Some("h"), 200)]);
    assert_eq!(c.streams[1].pending_skip(), 0);
    c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx");
    assert_eq!(c.take(summary), vec![ok("GET", "/small", Some("h"), 200)]);
}

#[test]
fn no_body_for_204_and_304() {
    let mut c = Conn::new();
    c.client(b"DELETE /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n");
    // 204 and 304 with a Content-Length header (legal for 304) still have no body.
    c.server(b"HTTP/1.1 204 No Content\r\n\r\n");
    c.server(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n");
    c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        c.take(summary),
        vec![
            ok("DELETE", "/a", None, 204),
            ok("GET", "/b", None, 304),
            ok("GET", "/c", None, 200)
        ]
    );
}

#[test]
fn response_delimited_by_close_is_emitted_at_close() {
    let mut c = Conn::new();
    c.client(b"GET /stream HTTP/1.0\r\n\r\n");
    c.server(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nsome body ");
    c.server(b"HTTP/1.1 500 not a status line, body bytes");
    assert!(c.calls.is_empty());
    c.close();
    let calls = std::mem::take(&mut c.calls);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].version, Some("1.0"));
    assert_eq!(calls[0].end, c.ts, "ends at the close");
    assert_eq!(
        calls.into_iter().map(summary).collect::<Vec<_>>(),
        vec![ok("GET", "/stream", None, 200)]
    );
}

#[test]
fn switching_protocols_is_one_call_then_nothing() {
    let mut c = Conn::new();
    c.client(b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    c.server(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello");
    // Frames that happen to look like HTTP are not parsed any more.
    c.client(b"GET /not-http HTTP/1.1\r\n\r\n");
    c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    c.close();
    assert_eq!(c.take(summary), vec![ok("GET", "/ws", Some("h"), 101)]);
}

#[test]
fn connect_tunnel_is_one_call_then_nothing() {
    let mut c = Conn::new();
    c.client(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    c.server(b"HTTP/1.1 200 Connection established\r\n\r\n");
    c.client(b"\x16\x03\x01\x02\x00GET / HTTP/1.1\r\n\r\n");
    c.close();
    assert_eq!(
        c.take(summary),
        vec![ok(
            "CONNECT",
            "example.com:443",
            Some("example.com:443"),
            200
        )]
    );
}

#[test]
fn request_without_response_is_no_response_at_close() {
    let mut c = Conn::new();
    c.client(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    c.client(b"GET /lost HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(c.take(summary), vec![ok("GET", "/a", Some("h"), 200)]);
    c.close();
    let calls = std::mem::take(&mut c.calls);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].end, c.ts);
    assert_eq!(
        summary(calls[0].clone()),
        unanswered("GET", "/lost", Some("h"))
    );
}

#[test]
fn server_errors_are_error_client_errors_are_ok() {
    let mut c = Conn::new();
    c.client(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n");
    c.server(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
    c.server(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 3\r\n\r\nbad");
    c.server(b"HTTP/1.1 499 Client Closed\r\nContent-Length: 0\r\n\r\n");
    let calls = c.take(summary);
    assert_eq!(
        calls.iter().map(|s| s.outcome).collect::<Vec<_>>(),
        vec![CallStatus::Error, CallStatus::Error, CallStatus::Ok]
    );
}

#[test]
fn absolute_form_target_gives_path_and_host() {
    let mut c = Conn::new();
    c.client(b"GET http://host/p?q=1 HTTP/1.1\r\n\r\n");
    c.client(b"GET http://target.example:8080 HTTP/1.1\r\n\r\n");
    // The Host header wins over the target's host.
    c.client(b"GET https://in-target/x HTTP/1.1\r\nHost: header\r\n\r\n");
    for _ in 0..3 {
        c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    }
    assert_eq!(
        c.take(summary),
        vec![
            ok("GET", "/p", Some("host"), 200),
            ok("GET", "/", Some("target.example:8080"), 200),
            ok("GET", "/x", Some("header"), 200),
        ]
    );
}

#[test]
fn query_and_fragment_are_dropped_from_path() {
    let mut c = Conn::new();
    c.client(b"GET /search?token=secret&q=x HTTP/1.1\r\nHost: h\r\n\r\n");
    c.client(b"GET /page#frag HTTP/1.1\r\nHost: h\r\n\r\n");
    c.client(b"GET /?only=query HTTP/1.1\r\nHost: h\r\n\r\n");
    for _ in 0..3 {
        c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    }
    assert_eq!(
        c.take(summary),
        vec![
            ok("GET", "/search", Some("h"), 200),
            ok("GET", "/page", Some("h"), 200),
            ok("GET", "/", Some("h"), 200),
        ]
    );
}

#[test]
fn http_1_0_version() {
    let mut c = Conn::new();
    c.client(b"GET /old HTTP/1.0\r\nHost: h\r\n\r\n");
    c.server(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(c.calls.len(), 1);
    assert_eq!(c.calls[0].version, Some("1.0"));
    assert_eq!(c.take(summary), vec![ok("GET", "/old", Some("h"), 200)]);
}

#[test]
fn gap_inside_response_head_resynchronises() {
    let mut c = Conn::new();
    c.client(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n");
    c.server(b"HTTP/1.1 200 OK\r\nContent-");
    // The rest of response 1 ("Length: 2\r\n\r\nok") was not captured.
    c.lose(Side::Server, 17);
    c.client(b"GET /2 HTTP/1.1\r\nHost: h\r\n\r\n");
    c.server(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    c.client(b"GET /3 HTTP/1.1\r\nHost: h\r\n\r\n");
    c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc");
    c.close();
    assert_eq!(
        c.take(summary),
        vec![
            unanswered("GET", "/1", Some("h")),
            ok("GET", "/2", Some("h"), 404),
            ok("GET", "/3", Some("h"), 200),
        ]
    );
}

#[test]
fn gap_inside_response_body_keeps_the_seen_status() {
    let mut c = Conn::new();
    c.client(b"GET /1 HTTP/1.1\r\n\r\n");
    c.server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123");
    // The rest of the chunk, the last chunk, and the start of response 2 were lost: response 2
    // has nothing to be paired with.
    c.lose(Side::Server, 200);
    c.client(b"GET /2 HTTP/1.1\r\n\r\n");
    c.server(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    c.close();
    assert_eq!(
        c.take(summary),
        vec![ok("GET", "/1", None, 200), ok("GET", "/2", None, 201)]
    );
}

#[test]
fn gap_on_client_side_resynchronises() {
    let mut c = Conn::new();
    c.client(b"GET /1 HTTP/1.1\r\n\r\n");
    c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    c.client(b"GET /lost");
    c.lose(Side::Client, 40);
    c.client(b"garbage\r\nPOST /3 HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    // The response to the lost request, then the one to POST /3.
    c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    c.server(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n");
    c.close();
    let calls = c.take(summary);
    assert_eq!(calls[0], ok("GET", "/1", None, 200));
    assert_eq!(
        calls.last(),
        Some(&ok("POST", "/3", None, 202)),
        "the response to the lost request must not be paired with POST /3: {calls:?}"
    );
}

#[test]
fn garbage_before_a_response_is_passed_over() {
    let mut c = Conn::new();
    c.client(b"GET /1 HTTP/1.1\r\n\r\n");
    c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    c.client(b"GET /2 HTTP/1.1\r\n\r\n");
    c.server(b"\x00\x01 junk\r\nHTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n");
    c.close();
    let calls = c.take(summary);
    assert_eq!(calls[0], ok("GET", "/1", None, 200));
    assert_eq!(calls[1], ok("GET", "/2", None, 302));
    assert!(c.parser.stats().malformed >= 1);
}

#[test]
fn random_bytes_never_panic() {
    let pieces: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\n",
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 101 x\r\n",
        b"HTTP/1.1 100 x\r\n",
        b"Content-Length: 5\r\n",
        b"Content-Length: 99999999999999999999\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"\r\n",
        b"ffffffffffffffff\r\n",
        b"3;x\r\nabc\r\n",
        b"0\r\n\r\n",
        b"\x00\xff\r",
        b"HEAD /x HTTP/1.0\r\n",
    ];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2_000 {
        let mut c = Conn::new();
        c.send_random(&mut rng, 20, |rng| Conn::mix(rng, pieces, 6, 3));
        c.close();
        for call in &c.calls {
            assert!(call.end >= call.start);
        }
    }
}

#[test]
fn probe_detects_requests_and_responses() {
    let server = Detection::Match {
        protocol: Known::Http1,
        sender: Side::Server,
    };
    let client = Detection::Match {
        protocol: Known::Http1,
        sender: Side::Client,
    };
    assert_eq!(probe_bytes(b"HTTP/1.1 200 OK\r\n"), server);
    assert_eq!(probe_bytes(b"GET / HTTP/1.1\r\n"), client);
    assert_eq!(probe_bytes(b"PROPFIND /x"), client);
    assert_eq!(probe_bytes(b""), Detection::NeedMore);
    assert_eq!(probe_bytes(b"HT"), Detection::NeedMore);
    assert_eq!(probe_bytes(b"GE"), Detection::NeedMore);
    assert_eq!(probe_bytes(b"GET"), Detection::NeedMore);
    assert_eq!(probe_bytes(b"GETX / HTTP/1.1"), Detection::NoMatch);
    assert_eq!(probe_bytes(b"\x16\x03\x01"), Detection::NoMatch);
    assert_eq!(probe_bytes(b"SSH-2.0-OpenSSH"), Detection::NoMatch);
}

// --- Split at every offset -------------------------------------------------------------------

/// A conversation of several exchanges: keep-alive, a request body, a chunked response with an
/// extension and a trailer, a Content-Length response, 100-continue, and a 304.
const CLIENT: &[u8] = b"GET /index.html?x=1 HTTP/1.1\r\nHost: example\r\n\r\n\
POST /api/items HTTP/1.1\r\nHost: example\r\nContent-Length: 13\r\n\r\n{\"name\":\"a\"}\n\
PUT /upload HTTP/1.1\r\nHost: example\r\nExpect: 100-continue\r\nContent-Length: 6\r\n\r\nABCDEF\
GET /cached HTTP/1.1\r\nHost: example\r\n\r\n\
GET /missing HTTP/1.1\r\nHost: example\r\n\r\n";

const SERVER: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
7;ext=1\r\n<html>\n\r\n\
10\r\n0123456789abcdef\r\n\
0\r\nX-Trailer: yes\r\n\r\n\
HTTP/1.1 201 Created\r\nContent-Length: 11\r\n\r\n{\"id\":123}\n\
HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail\
HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n\
HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found";

/// Delivers the client stream then the server stream, each cut at the given offsets.
fn deliver(client_cuts: &[usize], server_cuts: &[usize]) -> Vec<Summary> {
    let mut c = Conn::with_seq([u32::MAX - 100, 7]);
    for (side, data, cuts) in [
        (Side::Client, CLIENT, client_cuts),
        (Side::Server, SERVER, server_cuts),
    ] {
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
            c.send(side, &data[from..cut]);
            from = cut;
        }
    }
    c.close();
    assert!(c.streams.iter().all(|s| s.stats.gaps == 0));
    c.take(summary)
}

fn expected_conversation() -> Vec<Summary> {
    let h = Some("example");
    vec![
        ok("GET", "/index.html", h, 200),
        ok("POST", "/api/items", h, 201),
        ok("PUT", "/upload", h, 500),
        ok("GET", "/cached", h, 304),
        ok("GET", "/missing", h, 404),
    ]
}

#[test]
fn conversation_delivered_whole() {
    assert_eq!(deliver(&[], &[]), expected_conversation());
}

#[test]
fn conversation_split_at_every_offset() {
    let whole = deliver(&[], &[]);
    for cut in 0..=CLIENT.len() {
        assert_eq!(deliver(&[cut], &[]), whole, "client split at {cut}");
    }
    for cut in 0..=SERVER.len() {
        assert_eq!(deliver(&[], &[cut]), whole, "server split at {cut}");
    }
}

#[test]
fn conversation_one_byte_at_a_time() {
    let client: Vec<usize> = (1..CLIENT.len()).collect();
    let server: Vec<usize> = (1..SERVER.len()).collect();
    assert_eq!(deliver(&client, &[]), expected_conversation());
    assert_eq!(deliver(&[], &server), expected_conversation());
    assert_eq!(deliver(&client, &server), expected_conversation());
}

#[test]
fn conversation_interleaved_exchange_by_exchange() {
    // Each request, then its response, as a real keep-alive connection would carry them.
    let mut c = Conn::new();
    let requests = split_before(CLIENT, &[b"GET /", b"POST /", b"PUT /"]);
    let responses = split_before(SERVER, &[b"HTTP/1.1 "]);
    assert_eq!((requests.len(), responses.len()), (5, 6));
    c.client(requests[0]);
    c.server(responses[0]);
    c.client(requests[1]);
    c.server(responses[1]);
    c.client(&requests[2][..requests[2].len() - 6]);
    c.server(responses[2]); // 100 Continue
    c.client(&requests[2][requests[2].len() - 6..]);
    c.server(responses[3]);
    c.client(requests[3]);
    c.server(responses[4]);
    c.client(requests[4]);
    c.server(responses[5]);
    c.close();
    assert_eq!(c.take(summary), expected_conversation());
}

/// Cuts `data` before every occurrence of one of `markers` (none occurs inside a body here).
fn split_before<'a>(data: &'a [u8], markers: &[&[u8]]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut from = 0;
    for at in 1..data.len() {
        if markers.iter().any(|m| data[at..].starts_with(m)) {
            out.push(&data[from..at]);
            from = at;
        }
    }
    out.push(&data[from..]);
    out
}

mod h2c {
    //! `Upgrade: h2c`: the connection goes on as HTTP/2, the upgrade request is stream 1.

    use super::Conn;
    use crate::model::{CallStatus, Request, Response};
    use crate::protocols::http2::frame::PREFACE;
    use crate::protocols::http2::tests::{
        data, http, outcome, settings, settings_ack, Encoder, Outcome,
    };

    const UPGRADE: &[u8] = b"GET /first?q=1 HTTP/1.1\r\nHost: h2:8080\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
    const SWITCHING: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";

    fn conversation(split: Option<usize>) -> Vec<Outcome> {
        let mut c = Encoder::new();
        let mut s = Encoder::new();
        let mut conn = Conn::new();
        conn.client(UPGRADE);
        let server = [
            SWITCHING,
            &settings(&[(0x3, 100)]),
            &s.headers(1, false, &[(":status", "200")]),
            &data(1, true, b"first body"),
        ]
        .concat();
        match split {
            Some(at) => {
                conn.server(&server[..at]);
                conn.server(&server[at..]);
            }
            None => conn.server(&server),
        }
        let client = [
            PREFACE,
            &settings(&[]),
            &settings_ack(),
            &c.headers(
                3,
                true,
                &[
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/second"),
                    (":authority", "h2:8080"),
                ],
            ),
        ]
        .concat();
        conn.client(&client);
        conn.server(&[settings_ack(), s.headers(3, true, &[(":status", "404")])].concat());
        conn.close();
        conn.take(outcome)
    }

    #[test]
    fn upgrade_then_http2_on_the_same_connection() {
        let expected = vec![
            http("GET", "/first", Some("h2:8080"), Some(200)),
            http("GET", "/second", Some("h2:8080"), Some(404)),
        ];
        assert_eq!(conversation(None), expected);
        for at in 1..SWITCHING.len() + 40 {
            assert_eq!(conversation(Some(at)), expected, "server split at {at}");
        }
    }

    #[test]
    fn preface_before_the_101_and_a_refused_upgrade() {
        // The client's preface is fed before the server's 101 (capture order across sockets).
        let mut s = Encoder::new();
        let mut conn = Conn::new();
        conn.client(UPGRADE);
        conn.client(&PREFACE[..5]);
        conn.client(&[&PREFACE[5..], &settings(&[])[..]].concat());
        conn.server(
            &[
                SWITCHING,
                &settings(&[]),
                &s.headers(1, true, &[(":status", "204")]),
            ]
            .concat(),
        );
        conn.close();
        assert_eq!(
            conn.take(outcome),
            vec![http("GET", "/first", Some("h2:8080"), Some(204))]
        );

        // A server that ignores the upgrade answers in HTTP/1.1.
        let mut conn = Conn::new();
        conn.client(UPGRADE);
        conn.server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        conn.close();
        let calls = std::mem::take(&mut conn.calls);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].version, Some("1.1"));
        assert_eq!(calls[0].status, CallStatus::Ok);
        assert!(matches!(&calls[0].request, Request::Http(r) if r.path == "/first"));
        assert!(matches!(&calls[0].response, Some(Response::Http(r)) if r.status == 200));
    }
}

#[test]
fn request_targets_origin_and_absolute_form() {
    let cases = [
        ("/items/1?x=1", "/items/1", None),
        // `://` in the query of an origin-form target is not a host.
        ("/redirect?to=http://evil/x", "/redirect", None),
        ("/a#frag", "/a", None),
        (
            "http://proxy.example:8080/p?q",
            "/p",
            Some("proxy.example:8080"),
        ),
        ("https://h", "/", Some("h")),
        ("*", "*", None),
        ("h:443", "h:443", None),
    ];
    for (target, path, host) in cases {
        let (got_path, got_host) = split_target(target);
        assert_eq!(
            (got_path.as_str(), got_host.as_deref()),
            (path, host),
            "{target}"
        );
    }
}

//! Replays the real HTTP/2 captures of `tests/fixtures/corpus/http2` and compares the calls with what
//! tshark found in them (its field output is recorded beside each capture: see `h2_tshark`).
//!
//! All three are DeepFlow snippets of one or two packets from the middle of a connection: no preface,
//! no SETTINGS, and header blocks that refer to HPACK table entries sent before the snippet. Sources and
//! licences: `tests/fixtures/corpus/http2/SOURCES.md`.

mod common;
mod h2_tshark;

use h2_tshark::{check, ours};
use podtap::model::{CallStatus, Protocol, Request};

/// A gRPC call whose request and response each fit in one packet (the request and the response fully
/// literal-encoded). tshark: 1 request, 1 response, 2 messages.
#[test]
fn deepflow_h2c_ascii() {
    let (t, calls) = check("http2", "deepflow_h2c_ascii.pcap", 7070);
    assert_eq!((t.client_messages, t.server_messages), (1, 1));
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].protocol, Protocol::Grpc);
    assert_eq!(calls[0].status, CallStatus::Ok);
}

/// Two requests and their responses on streams 18131981 and 18131983, joined mid-connection: only
/// `:method`, `:scheme` and `:status` (static-table entries) decode; every other field refers to the
/// dynamic table. tshark shows those as `<unknown>`; podtap leaves them out (no path, no authority)
/// and, without a decoded `content-type`, reports HTTP calls.
#[test]
fn deepflow_http2_multi() {
    let (t, calls) = check("http2", "deepflow_http2-multi.pcap", 3550);
    assert_eq!(calls.len(), 2);
    assert!(t.headers.iter().any(|h| h.get("<unknown>").is_some()));
    for c in &calls {
        let Request::Http(r) = &c.request else {
            panic!("{c:?}")
        };
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.host.as_deref()),
            ("POST", "", None)
        );
        let json = serde_json::to_value(c).expect("json");
        assert!(json["request"].get("path").is_none(), "{json}");
    }
}

/// One request HEADERS frame (stream 1392369) and no response. tshark shows the value
/// `/skywalking.v3.ProfileTask/collectSnapshot` under an `<unknown>` name: the field's name is an index
/// into the dynamic table (surely `:path`, but nothing in the capture says so). podtap does not guess:
/// the call has no path. The connection ends with the capture: `no_response`.
#[test]
fn deepflow_httpv2_stream_id() {
    let (t, calls) = check("http2", "deepflow_httpv2-stream-id.pcap", 11800);
    let request = &t.headers[0];
    assert_eq!(request.get(":path"), None);
    assert!(request
        .fields
        .iter()
        .any(|(n, v)| n == "<unknown>" && v == "/skywalking.v3.ProfileTask/collectSnapshot"));
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].status, CallStatus::NoResponse);
    assert_eq!(ours(&calls)[0].path, None);
}

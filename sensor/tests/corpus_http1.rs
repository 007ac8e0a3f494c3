//! Replays the real HTTP/1 captures of `tests/fixtures/corpus/http1` and compares the calls with what
//! tshark found in them.
//!
//! The expected values are tshark 4.0.17's field output, recorded beside each capture (so tshark is not
//! needed to run this) with:
//!
//! ```text
//! tshark -r F.pcap -Y http.request  -T fields -e http.request.method -e http.request.uri -e http.host > F.requests.tsv
//! tshark -r F.pcap -Y http.response -T fields -e http.response.code > F.responses.tsv
//! ```
//!
//! Sources and licences of the captures: `tests/fixtures/corpus/http1/SOURCES.md`.

mod common;

use std::path::PathBuf;

use common::{replay_sorted, try_replay, tsv_rows};
use podtap::{
    app::AppError,
    capture::pcap::PcapReadError,
    model::{Call, CallStatus, Request, Response},
};

fn fixture(name: &str) -> PathBuf {
    common::fixture("http1", name)
}

/// (method, path without query, host) of each request tshark saw, in frame order.
fn tshark_requests(name: &str) -> Vec<(String, String, String)> {
    tsv_rows("http1", &format!("{name}.requests.tsv"))
        .into_iter()
        .map(|fields| {
            let field = |i: usize| fields.get(i).map_or("", String::as_str);
            let path = field(1).split('?').next().unwrap_or_default().to_owned();
            (field(0).to_owned(), path, field(2).to_owned())
        })
        .collect()
}

/// Status codes of the responses tshark saw, in frame order (`file` is one of the `*.tsv` fixtures).
fn tshark_statuses(file: &str) -> Vec<u16> {
    tsv_rows("http1", file)
        .iter()
        .map(|fields| fields[0].trim().parse().expect("status code"))
        .collect()
}

fn ours(calls: &[Call]) -> Vec<(String, String, String)> {
    calls
        .iter()
        .map(|c| {
            let Request::Http(r) = &c.request else {
                panic!("not an HTTP request")
            };
            (
                r.method.clone(),
                r.path.clone(),
                r.host.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn statuses(calls: &[Call]) -> Vec<u16> {
    calls
        .iter()
        .filter_map(|c| c.response.as_ref())
        .map(|r| match r {
            Response::Http(r) => r.status,
            other => panic!("not an HTTP response: {other:?}"),
        })
        .collect()
}

/// Replays `name`.pcap and checks it against tshark: one call per request, one response per final
/// (non-1xx) response, same methods, paths, hosts and statuses.
fn check(name: &str) -> Vec<Call> {
    check_with(name, &format!("{name}.responses.tsv"))
}

fn check_with(name: &str, responses: &str) -> Vec<Call> {
    let (calls, _) = replay_sorted(&fixture(&format!("{name}.pcap")));
    let requests = tshark_requests(name);
    let final_statuses: Vec<u16> = tshark_statuses(responses)
        .into_iter()
        .filter(|s| !(100..200).contains(s))
        .collect();
    assert_eq!(calls.len(), requests.len(), "{name}: calls = http.request");
    assert_eq!(ours(&calls), requests, "{name}: method, path, host");
    let mut got = statuses(&calls);
    let mut want = final_statuses.clone();
    assert_eq!(got, want, "{name}: statuses in request order");
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    for call in &calls {
        let expected = match &call.response {
            None => CallStatus::NoResponse,
            Some(Response::Http(r)) if r.status >= 500 => CallStatus::Error,
            Some(_) => CallStatus::Ok,
        };
        assert_eq!(call.status, expected, "{name}: {call:?}");
    }
    calls
}

#[test]
fn zeek_get() {
    let calls = check("zeek_http_get");
    assert_eq!(calls.len(), 1);
    assert!(calls[0].duration_ms.is_some());
}

#[test]
fn zeek_100_continue_is_one_call_with_the_final_status() {
    let calls = check("zeek_http_100-continue");
    assert_eq!(calls.len(), 1);
    let Some(Response::Http(response)) = &calls[0].response else {
        panic!("no response: {calls:?}");
    };
    assert_eq!(response.status, 200);
}

/// tshark counts 31 requests and 30 responses. The response it misses is the one to
/// `GET /js/jquery.cycle.all.min.js` (TCP stream 2): its status line (frame 97, `200 OK`,
/// `Content-Length: 31052`) was captured but a segment of its body was not (frame 179, "previous
/// segment not captured"), so tshark cannot reassemble the PDU and never reports it. podtap does not
/// read bodies: the lost bytes lie inside the skipped body, and the call is complete. tshark agrees once
/// it stops reassembling (`-o tcp.desegment_tcp_streams:FALSE`, recorded as
/// `zeek_http_bro.org.responses-no-desegment.tsv`: 31 responses).
#[test]
fn zeek_bro_org_31_requests_31_status_lines() {
    assert_eq!(tshark_statuses("zeek_http_bro.org.responses.tsv").len(), 30);
    let calls = check_with(
        "zeek_http_bro.org",
        "zeek_http_bro.org.responses-no-desegment.tsv",
    );
    assert_eq!(calls.len(), 31);
    assert!(calls.iter().all(|c| c.response.is_some()), "{calls:?}");
    let Request::Http(cut) = &calls[5].request else {
        panic!("not an HTTP request")
    };
    assert_eq!(cut.path, "/js/jquery.cycle.all.min.js");
    // Eight connections, all closed by FIN: nothing left for the idle timer.
    assert!(calls.iter().all(|c| c.status == CallStatus::Ok));
}

#[test]
fn deepflow_http() {
    check("deepflow_http");
}

#[test]
fn deepflow_httpv1() {
    check("deepflow_httpv1");
}

#[test]
fn truncated_capture_is_an_error_naming_file_and_offset() {
    let whole = std::fs::read(fixture("zeek_http_get.pcap")).expect("fixture");
    let dir = std::env::temp_dir().join(format!("podtap-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("first-100-bytes.pcap");
    std::fs::write(&path, &whole[..100]).expect("write");
    let error = try_replay(&path).expect_err("truncated file");
    let message = error.to_string();
    assert!(
        matches!(
            error,
            AppError::Pcap(PcapReadError::Corrupt { offset, .. }) if offset > 0 && offset < 100
        ),
        "{message}"
    );
    assert!(message.contains("first-100-bytes.pcap"), "{message}");
    assert!(message.contains("offset"), "{message}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn garbage_and_empty_files_are_errors_not_panics() {
    let dir = std::env::temp_dir().join(format!("podtap-garbage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let whole = std::fs::read(fixture("zeek_http_bro.org.pcap")).expect("fixture");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.pcap", Vec::new()),
        (
            "text.pcap",
            b"this is not a capture file at all\n".repeat(20),
        ),
        ("header-only.pcap", whole[..24].to_vec()),
        ("cut-header.pcap", whole[..10].to_vec()),
        // A valid header followed by garbage records.
        (
            "garbage-records.pcap",
            [&whole[..24], &[0xff; 200][..]].concat(),
        ),
        // Cut in the middle of a record, well into the file.
        ("cut-late.pcap", whole[..whole.len() / 2].to_vec()),
    ];
    for (name, bytes) in cases {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).expect("write");
        match try_replay(&path) {
            Ok((_, summary)) => {
                // Acceptable only if nothing was there to read.
                assert_eq!(summary.pcap.frames, 0, "{name}: {summary:?}");
            }
            Err(error) => {
                let message = error.to_string();
                assert!(message.contains(name), "{name}: {message}");
                if let AppError::Pcap(PcapReadError::Corrupt { offset, .. }) = error {
                    assert!(offset <= bytes.len() as u64, "{name}: {message}");
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

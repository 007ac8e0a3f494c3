//! Replays the real gRPC captures of `tests/fixtures/corpus/grpc` and compares the calls with what
//! tshark found in them (its field output is recorded beside each capture: see `h2_tshark`): calls,
//! methods (`:path`), authorities, HTTP and gRPC statuses, and the messages each side sent.
//!
//! The Packt captures are whole sessions (grpc-go, loopback, IPv6) of the four kinds of call; the
//! DeepFlow ones are snippets joined mid-connection. Sources and licences:
//! `tests/fixtures/corpus/grpc/SOURCES.md`.

mod common;
mod h2_tshark;

use h2_tshark::check;
use podtap::model::{CallStatus, Protocol, Request, Response};

/// (client messages, server messages, grpc-status) of the one call of a capture.
fn one_call(dir_file: &str, port: u16) -> (u64, u64, Option<u32>, CallStatus) {
    let (_, calls) = check("grpc", dir_file, port);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let c = &calls[0];
    assert_eq!(c.protocol, Protocol::Grpc);
    let Request::Grpc(request) = &c.request else {
        panic!("{c:?}")
    };
    let (sent, status) = match &c.response {
        Some(Response::Grpc(r)) => (r.messages, r.grpc_status),
        None => (0, None),
        other => panic!("{other:?}"),
    };
    (request.messages, sent, status, c.status)
}

#[test]
fn packt_unary() {
    assert_eq!(
        one_call("packt_grpc_Unary.pcapng", 50051),
        (1, 1, Some(0), CallStatus::Ok)
    );
}

#[test]
fn packt_server_streaming() {
    assert_eq!(
        one_call("packt_grpc_ServerStreaming.pcapng", 50051),
        (1, 10, Some(0), CallStatus::Ok)
    );
}

#[test]
fn packt_client_streaming() {
    assert_eq!(
        one_call("packt_grpc_ClientStreaming.pcapng", 50051),
        (3, 1, Some(0), CallStatus::Ok)
    );
}

#[test]
fn packt_bidi_streaming() {
    assert_eq!(
        one_call("packt_grpc_BidiStreaming.pcapng", 50051),
        (3, 3, Some(0), CallStatus::Ok)
    );
}

/// A snippet: the request's HEADERS and a DATA frame whose header ends the first packet and whose
/// payload (one 2,433-byte message) is the second; no response. tshark: 1 request, 0 responses, 1
/// message.
#[test]
fn deepflow_segmented() {
    assert_eq!(
        one_call("deepflow_grpc-segmented.pcap", 20035),
        (1, 0, None, CallStatus::NoResponse)
    );
}

/// A server-streaming call whose capture misses three 17-byte segments of the server (PING frames,
/// "previous segment not captured"): tshark reads each packet on its own and counts 5 server messages
/// and the trailers. podtap sees lost bytes at a frame boundary, finds the next frame, and resumes
/// counting at each DATA frame that holds exactly one whole message; the trailers decode (literals).
#[test]
fn deepflow_server_stream_with_missing_segments() {
    assert_eq!(
        one_call("deepflow_grpc-server-stream.pcap", 9001),
        (1, 5, Some(0), CallStatus::Ok)
    );
}

/// A client-streaming call (whole session, two connections: one is a bare handshake).
#[test]
fn deepflow_service_name() {
    assert_eq!(
        one_call("deepflow_grpc-service-name.pcap", 38888),
        (3, 1, Some(0), CallStatus::Ok)
    );
}

/// A snippet: the request (one message) and the response's HEADERS and the start of a DATA frame
/// whose 54,864-byte message the capture cuts. tshark counts the request's message only (the
/// response's never completes), and sees no trailers. podtap: the same counts, no `grpc_status`, and
/// the call counts by its HTTP status (200: `ok`) since the capture, not the server, cut it short.
#[test]
fn deepflow_unary_cut_before_the_trailers() {
    assert_eq!(
        one_call("deepflow_grpc-unary.pcap", 30035),
        (1, 0, None, CallStatus::Ok)
    );
}

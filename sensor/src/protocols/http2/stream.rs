//! One HTTP/2 stream as podtap follows it: the request fields from the client's header block, the
//! response fields from the server's, the gRPC messages of each side, and the call it becomes.

use super::grpc::{is_grpc_content_type, parse_status, MessageCounter};
use super::hpack::Outcome;
use crate::model::{
    CallStatus, GrpcRequest, GrpcResponse, HttpRequest, HttpResponse, ParsedCall, Protocol,
    Request, Response, Side, UnixNanos,
};

/// The fields of one header block that podtap reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    pub method: Option<String>,
    pub path: Option<String>,
    pub authority: Option<String>,
    pub scheme: bool,
    pub host: Option<String>,
    pub status: Option<u16>,
    pub content_type_grpc: Option<bool>,
    pub grpc_status: Option<u32>,
    /// Every field of the block decoded.
    pub complete: bool,
}

impl Fields {
    /// Takes one decoded field (the first of each name wins).
    pub fn add(&mut self, name: &[u8], value: &[u8]) {
        let text = || std::str::from_utf8(value).ok().map(str::to_owned);
        match name {
            b":method" if self.method.is_none() => self.method = text(),
            b":path" if self.path.is_none() => self.path = text(),
            b":authority" if self.authority.is_none() => self.authority = text(),
            b":scheme" => self.scheme = true,
            b"host" if self.host.is_none() => self.host = text(),
            b":status" if self.status.is_none() => {
                self.status = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
            }
            b"content-type" if self.content_type_grpc.is_none() => {
                self.content_type_grpc = Some(is_grpc_content_type(value));
            }
            b"grpc-status" if self.grpc_status.is_none() => self.grpc_status = parse_status(value),
            _ => {}
        }
    }

    pub fn finish(&mut self, outcome: Outcome) {
        self.complete = outcome == Outcome::Complete;
    }

    /// The block carries request pseudo-header fields (it opens a stream).
    #[must_use]
    pub fn is_request(&self) -> bool {
        self.method.is_some() || self.path.is_some() || self.authority.is_some() || self.scheme
    }
}

/// Whether a stream is a gRPC call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Http,
    Grpc,
    /// The request's `content-type` did not decode: the response decides; messages are counted
    /// meanwhile, in case.
    Unknown,
}

/// How a stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The server ended its side (`END_STREAM`).
    Complete,
    /// `RST_STREAM` from either side, with its error code.
    Reset(u32),
    /// The connection closed, the server refused it (`GOAWAY`), or podtap stopped tracking it.
    Closed,
}

/// `RST_STREAM` / `GOAWAY` error code `NO_ERROR`.
pub const NO_ERROR: u32 = 0;
/// `STREAM_CLOSED`: its sender got a frame on a stream it had seen end; the exchange was over for it
/// (curl answers that way to frames that follow a response's end).
pub const STREAM_CLOSED: u32 = 0x5;

#[derive(Debug)]
pub struct H2Stream {
    pub start: UnixNanos,
    method: Option<String>,
    path: Option<String>,
    authority: Option<String>,
    pub kind: Kind,
    /// A final (non-1xx) response header block was seen.
    response_seen: bool,
    status: Option<u16>,
    response_grpc: bool,
    grpc_status: Option<u32>,
    pub client_ended: bool,
    client_messages: MessageCounter,
    server_messages: MessageCounter,
}

impl H2Stream {
    /// A stream opened by the client's request header block (or a server's PUSH_PROMISE).
    #[must_use]
    pub fn from_request(fields: Fields, start: UnixNanos) -> Self {
        let kind = match fields.content_type_grpc {
            Some(true) => Kind::Grpc,
            Some(false) => Kind::Http,
            None if fields.complete => Kind::Http,
            None => Kind::Unknown,
        };
        Self {
            start,
            method: fields.method,
            path: fields.path,
            authority: fields.authority.or(fields.host),
            kind,
            response_seen: false,
            status: None,
            response_grpc: false,
            grpc_status: None,
            client_ended: false,
            client_messages: MessageCounter::default(),
            server_messages: MessageCounter::default(),
        }
    }

    /// The request of an HTTP/1.1 `Upgrade: h2c` exchange: stream 1, already ended by the client.
    #[must_use]
    pub fn upgraded(request: HttpRequest, start: UnixNanos) -> Self {
        Self {
            start,
            method: Some(request.method),
            path: Some(request.path),
            authority: request.host,
            kind: Kind::Http,
            response_seen: false,
            status: None,
            response_grpc: false,
            grpc_status: None,
            client_ended: true,
            client_messages: MessageCounter::default(),
            server_messages: MessageCounter::default(),
        }
    }

    pub fn counter(&self, side: Side) -> &MessageCounter {
        match side {
            Side::Client => &self.client_messages,
            Side::Server => &self.server_messages,
        }
    }

    pub fn counter_mut(&mut self, side: Side) -> &mut MessageCounter {
        match side {
            Side::Client => &mut self.client_messages,
            Side::Server => &mut self.server_messages,
        }
    }

    /// A header block the server sent on this stream: informational, final response, trailers (or a
    /// trailers-only response).
    pub fn server_headers(&mut self, fields: &Fields) {
        match fields.status {
            Some(status) if (100..200).contains(&status) => return,
            Some(status) if !self.response_seen => {
                self.response_seen = true;
                self.status = Some(status);
            }
            Some(_) => {}
            // No `:status`: trailers after the response, or (with fields that did not decode) a
            // response whose status is unknown.
            None if !self.response_seen && !fields.complete => self.response_seen = true,
            None => {}
        }
        if fields.content_type_grpc == Some(true) {
            self.response_grpc = true;
        }
        if self.grpc_status.is_none() {
            self.grpc_status = fields.grpc_status;
        }
    }

    fn is_grpc(&self) -> bool {
        match self.kind {
            Kind::Grpc => true,
            Kind::Http => false,
            Kind::Unknown => self.response_grpc || self.grpc_status.is_some(),
        }
    }

    /// The call this stream makes, ended at `end` the way `how` says.
    #[must_use]
    pub fn into_call(self, end: UnixNanos, how: End) -> ParsedCall {
        let reset_error =
            matches!(how, End::Reset(code) if code != NO_ERROR && code != STREAM_CLOSED);
        let answered = self.response_seen || (how == End::Complete && self.grpc_status.is_some());
        let (protocol, request, response, status) = if self.is_grpc() {
            let response = answered.then_some(GrpcResponse {
                grpc_status: self.grpc_status,
                status: self.status,
                messages: self.server_messages.messages,
            });
            let http_ok = self.status.is_none_or(|s| s == 200);
            let status = match (self.grpc_status, how) {
                _ if reset_error => CallStatus::Error,
                _ if response.is_none() && how != End::Complete => CallStatus::NoResponse,
                (Some(0), _) if http_ok => CallStatus::Ok,
                // The server ended the stream without a grpc-status.
                (Some(_), _) | (None, End::Complete) => CallStatus::Error,
                // Cut short (the connection or the capture ended) before the trailers: the HTTP
                // status is all there is, as for an HTTP response cut short.
                (None, End::Reset(_) | End::Closed) if http_ok => CallStatus::Ok,
                (None, End::Reset(_) | End::Closed) => CallStatus::Error,
            };
            (
                Protocol::Grpc,
                Request::Grpc(GrpcRequest {
                    method: self.path.unwrap_or_default(),
                    authority: self.authority,
                    messages: self.client_messages.messages,
                }),
                response.map(Response::Grpc),
                status,
            )
        } else {
            let response = self.status.map(|status| HttpResponse { status });
            let status = if reset_error || response.as_ref().is_some_and(|r| r.status >= 500) {
                CallStatus::Error
            } else if response.is_some() || how == End::Complete || self.response_seen {
                // With a status under 500, or a response that ended (or began) with a status that
                // did not decode.
                CallStatus::Ok
            } else {
                CallStatus::NoResponse
            };
            let path = self
                .path
                .map(|p| p.split(['?', '#']).next().unwrap_or_default().to_owned())
                .unwrap_or_default();
            (
                Protocol::Http,
                Request::Http(HttpRequest {
                    method: self.method.unwrap_or_default(),
                    path,
                    host: self.authority,
                }),
                response.map(Response::Http),
                status,
            )
        };
        ParsedCall {
            protocol,
            version: Some("2"),
            start: self.start,
            end,
            request,
            response,
            status,
        }
    }
}

//! AMQP 0-9-1 framing and method decoding, without connection state.
//!
//! In: bytes of one side. Out: the 7-byte frame head (type, channel, payload size), and for a whole
//! method frame the method it carries (decoded by `amq_protocol::frame::parse_frame`) reduced to what a
//! call record shows. Also the table of every method of the specification: its name, which side may
//! send it, and what answers it.

use amq_protocol::frame::{parse_frame, AMQPFrame};
use amq_protocol::protocol::{basic, channel, confirm, connection, exchange, queue, AMQPClass};

use crate::model::Side;

/// What a client sends first: `AMQP`, 0, then protocol 0-9-1.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// The byte after every frame's payload.
pub const FRAME_END: u8 = 0xCE;
/// Type (1), channel (2), payload size (4).
pub const HEAD_LEN: usize = 7;
/// Bytes a frame adds to its payload: the head and the frame-end byte.
pub const OVERHEAD: usize = HEAD_LEN + 1;
/// Method and content-header frames up to this payload size are decoded whole; longer ones (never seen
/// from real clients: their arguments would have to be huge) are passed over, since the flow layer
/// does not buffer that much of one message.
pub const MAX_DECODED_PAYLOAD: u32 = 32 * 1024;
/// Frame payloads larger than this are taken for garbage. RabbitMQ's `frame_max` is at most 128 KiB
/// by default; the specification allows up to 4 GiB, which no broker negotiates.
pub const MAX_PAYLOAD: u32 = 16 * 1024 * 1024;
/// A content header payload starts with class id (2), weight (2) and body size (8).
pub const CONTENT_HEADER_PREFIX: usize = 12;

/// The four frame types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Method,
    /// Content header: the properties and body size of the message a method carries.
    Header,
    /// Content body: a piece of the message.
    Body,
    Heartbeat,
}

/// The head of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHead {
    pub kind: FrameKind,
    pub channel: u16,
    /// Payload bytes between the head and the frame-end byte.
    pub size: u32,
}

impl FrameHead {
    /// The whole frame's length: head, payload, frame end.
    #[must_use]
    pub fn total(&self) -> usize {
        self.size as usize + OVERHEAD
    }
}

/// Why a frame head or method frame could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame type {0} is not 1, 2, 3 or 8")]
    Type(u8),
    #[error("frame payload of {0} bytes is implausibly large")]
    Size(u32),
    #[error("byte {0:#04x} where the frame-end byte 0xCE belongs")]
    End(u8),
    #[error("method {class}/{method} is not in AMQP 0-9-1")]
    UnknownMethod { class: u16, method: u16 },
    #[error("method arguments do not decode")]
    Arguments,
}

/// Reads the head of the frame `data` starts with. `None`: fewer than 7 bytes.
#[must_use]
pub fn frame_head(data: &[u8]) -> Option<Result<FrameHead, FrameError>> {
    let head: &[u8; HEAD_LEN] = data.get(..HEAD_LEN)?.try_into().ok()?;
    let kind = match head[0] {
        1 => FrameKind::Method,
        2 => FrameKind::Header,
        3 => FrameKind::Body,
        8 => FrameKind::Heartbeat,
        other => return Some(Err(FrameError::Type(other))),
    };
    let channel = u16::from_be_bytes([head[1], head[2]]);
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
    if size > MAX_PAYLOAD || (kind == FrameKind::Heartbeat && size != 0) {
        return Some(Err(FrameError::Size(size)));
    }
    Some(Ok(FrameHead {
        kind,
        channel,
        size,
    }))
}

/// The (class id, method id) pair that names a method on the wire.
pub type MethodId = (u16, u16);

/// Who may send a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    Client,
    Server,
    Either,
}

impl Sender {
    /// The side that sent a method of this kind, when the method alone tells.
    #[must_use]
    pub fn side(self) -> Option<Side> {
        match self {
            Sender::Client => Some(Side::Client),
            Sender::Server => Some(Side::Server),
            Sender::Either => None,
        }
    }
}

/// How a method takes part in an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Synchronous: answered by one of these methods of the same class (unless sent with `nowait`).
    Request(&'static [u16]),
    /// The answer to a synchronous method.
    Answer,
    /// Asynchronous: nothing answers it.
    OneWay,
}

/// One method of the specification.
#[derive(Debug, PartialEq, Eq)]
pub struct MethodInfo {
    pub id: MethodId,
    /// `class.method`, as the specification names them.
    pub name: &'static str,
    pub sender: Sender,
    pub role: Role,
    /// A content header and body frames follow it.
    pub content: bool,
}

const fn m(
    class: u16,
    method: u16,
    name: &'static str,
    sender: Sender,
    role: Role,
    content: bool,
) -> MethodInfo {
    MethodInfo {
        id: (class, method),
        name,
        sender,
        role,
        content,
    }
}

use Role::{Answer, OneWay, Request};
use Sender::{Client, Either, Server};

/// Every method of AMQP 0-9-1 with RabbitMQ's extensions (exchange.bind/unbind, basic.nack,
/// confirm.*, connection.blocked/unblocked/update-secret).
pub static METHODS: &[MethodInfo] = &[
    m(10, 10, "connection.start", Server, Request(&[11]), false),
    m(10, 11, "connection.start-ok", Client, Answer, false),
    m(10, 20, "connection.secure", Server, Request(&[21]), false),
    m(10, 21, "connection.secure-ok", Client, Answer, false),
    m(10, 30, "connection.tune", Server, Request(&[31]), false),
    m(10, 31, "connection.tune-ok", Client, Answer, false),
    m(10, 40, "connection.open", Client, Request(&[41]), false),
    m(10, 41, "connection.open-ok", Server, Answer, false),
    m(10, 50, "connection.close", Either, Request(&[51]), false),
    m(10, 51, "connection.close-ok", Either, Answer, false),
    m(10, 60, "connection.blocked", Server, OneWay, false),
    m(10, 61, "connection.unblocked", Server, OneWay, false),
    m(
        10,
        70,
        "connection.update-secret",
        Client,
        Request(&[71]),
        false,
    ),
    m(10, 71, "connection.update-secret-ok", Server, Answer, false),
    m(20, 10, "channel.open", Client, Request(&[11]), false),
    m(20, 11, "channel.open-ok", Server, Answer, false),
    m(20, 20, "channel.flow", Either, Request(&[21]), false),
    m(20, 21, "channel.flow-ok", Either, Answer, false),
    m(20, 40, "channel.close", Either, Request(&[41]), false),
    m(20, 41, "channel.close-ok", Either, Answer, false),
    m(30, 10, "access.request", Client, Request(&[11]), false),
    m(30, 11, "access.request-ok", Server, Answer, false),
    m(40, 10, "exchange.declare", Client, Request(&[11]), false),
    m(40, 11, "exchange.declare-ok", Server, Answer, false),
    m(40, 20, "exchange.delete", Client, Request(&[21]), false),
    m(40, 21, "exchange.delete-ok", Server, Answer, false),
    m(40, 30, "exchange.bind", Client, Request(&[31]), false),
    m(40, 31, "exchange.bind-ok", Server, Answer, false),
    m(40, 40, "exchange.unbind", Client, Request(&[51]), false),
    m(40, 51, "exchange.unbind-ok", Server, Answer, false),
    m(50, 10, "queue.declare", Client, Request(&[11]), false),
    m(50, 11, "queue.declare-ok", Server, Answer, false),
    m(50, 20, "queue.bind", Client, Request(&[21]), false),
    m(50, 21, "queue.bind-ok", Server, Answer, false),
    m(50, 30, "queue.purge", Client, Request(&[31]), false),
    m(50, 31, "queue.purge-ok", Server, Answer, false),
    m(50, 40, "queue.delete", Client, Request(&[41]), false),
    m(50, 41, "queue.delete-ok", Server, Answer, false),
    m(50, 50, "queue.unbind", Client, Request(&[51]), false),
    m(50, 51, "queue.unbind-ok", Server, Answer, false),
    m(60, 10, "basic.qos", Client, Request(&[11]), false),
    m(60, 11, "basic.qos-ok", Server, Answer, false),
    m(60, 20, "basic.consume", Client, Request(&[21]), false),
    m(60, 21, "basic.consume-ok", Server, Answer, false),
    // The server cancels a consumer with `nowait` set (RabbitMQ's consumer cancel notification).
    m(60, 30, "basic.cancel", Either, Request(&[31]), false),
    m(60, 31, "basic.cancel-ok", Either, Answer, false),
    m(60, 40, "basic.publish", Client, OneWay, true),
    m(60, 50, "basic.return", Server, OneWay, true),
    m(60, 60, "basic.deliver", Server, OneWay, true),
    m(60, 70, "basic.get", Client, Request(&[71, 72]), false),
    m(60, 71, "basic.get-ok", Server, Answer, true),
    m(60, 72, "basic.get-empty", Server, Answer, false),
    // From the consumer; from the server, a publisher confirm.
    m(60, 80, "basic.ack", Either, OneWay, false),
    m(60, 90, "basic.reject", Client, OneWay, false),
    m(60, 100, "basic.recover-async", Client, OneWay, false),
    m(60, 110, "basic.recover", Client, Request(&[111]), false),
    m(60, 111, "basic.recover-ok", Server, Answer, false),
    m(60, 120, "basic.nack", Either, OneWay, false),
    m(85, 10, "confirm.select", Client, Request(&[11]), false),
    m(85, 11, "confirm.select-ok", Server, Answer, false),
    m(90, 10, "tx.select", Client, Request(&[11]), false),
    m(90, 11, "tx.select-ok", Server, Answer, false),
    m(90, 20, "tx.commit", Client, Request(&[21]), false),
    m(90, 21, "tx.commit-ok", Server, Answer, false),
    m(90, 30, "tx.rollback", Client, Request(&[31]), false),
    m(90, 31, "tx.rollback-ok", Server, Answer, false),
];

/// The method named by `id`, if AMQP 0-9-1 has it.
#[must_use]
pub fn method_info(id: MethodId) -> Option<&'static MethodInfo> {
    METHODS.iter().find(|info| info.id == id)
}

/// The method id a method frame's payload starts with (`None`: fewer than 4 bytes).
#[must_use]
pub fn method_id(payload: &[u8]) -> Option<MethodId> {
    let ids: &[u8; 4] = payload.get(..4)?.try_into().ok()?;
    Some((
        u16::from_be_bytes([ids[0], ids[1]]),
        u16::from_be_bytes([ids[2], ids[3]]),
    ))
}

/// A method as a call record shows it: name and the arguments podtap exports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Method {
    pub info: &'static MethodInfo,
    pub exchange: Option<String>,
    pub routing_key: Option<String>,
    pub queue: Option<String>,
    pub delivery_tag: Option<u64>,
    /// connection.close, channel.close, basic.return.
    pub reply_code: Option<u16>,
    /// A close: the method that caused it (0/0 when none did).
    pub cause: Option<MethodId>,
    /// A synchronous method sent with `nowait`: no answer follows.
    pub nowait: bool,
    /// basic.ack / basic.nack: every tag up to `delivery_tag`.
    pub multiple: bool,
}

impl Method {
    /// A method known only by its id (a frame too large to decode).
    #[must_use]
    pub fn bare(info: &'static MethodInfo) -> Self {
        Self {
            info,
            exchange: None,
            routing_key: None,
            queue: None,
            delivery_tag: None,
            reply_code: None,
            cause: None,
            nowait: false,
            multiple: false,
        }
    }
}

/// Decodes a whole method frame (head, payload and frame end).
///
/// # Errors
/// An unknown method, or arguments that do not decode.
pub fn decode_method(frame: &[u8]) -> Result<Method, FrameError> {
    let payload = frame.get(HEAD_LEN..).unwrap_or_default();
    let id = method_id(payload).ok_or(FrameError::Arguments)?;
    let info = method_info(id).ok_or(FrameError::UnknownMethod {
        class: id.0,
        method: id.1,
    })?;
    let class = match parse_frame(frame) {
        Ok(([], AMQPFrame::Method(_, class))) => class,
        _ => return Err(FrameError::Arguments),
    };
    let mut method = Method::bare(info);
    arguments(&class, &mut method);
    Ok(method)
}

fn text(s: &amq_protocol::types::ShortString) -> Option<String> {
    Some(s.as_str().to_owned())
}

/// Copies the exported arguments of `class` into `method`.
fn arguments(class: &AMQPClass, method: &mut Method) {
    match class {
        AMQPClass::Connection(connection::AMQPMethod::Close(close)) => {
            method.reply_code = Some(close.reply_code);
            method.cause = Some((close.class_id, close.method_id));
        }
        AMQPClass::Channel(channel::AMQPMethod::Close(close)) => {
            method.reply_code = Some(close.reply_code);
            method.cause = Some((close.class_id, close.method_id));
        }
        AMQPClass::Exchange(m) => exchange_arguments(m, method),
        AMQPClass::Queue(m) => queue_arguments(m, method),
        AMQPClass::Basic(m) => basic_arguments(m, method),
        AMQPClass::Confirm(confirm::AMQPMethod::Select(select)) => method.nowait = select.nowait,
        _ => {}
    }
}

fn exchange_arguments(m: &exchange::AMQPMethod, method: &mut Method) {
    match m {
        exchange::AMQPMethod::Declare(d) => {
            method.exchange = text(&d.exchange);
            method.nowait = d.nowait;
        }
        exchange::AMQPMethod::Delete(d) => {
            method.exchange = text(&d.exchange);
            method.nowait = d.nowait;
        }
        // `exchange` is where messages come from, as in queue.bind.
        exchange::AMQPMethod::Bind(b) => {
            method.exchange = text(&b.source);
            method.routing_key = text(&b.routing_key);
            method.nowait = b.nowait;
        }
        exchange::AMQPMethod::Unbind(u) => {
            method.exchange = text(&u.source);
            method.routing_key = text(&u.routing_key);
            method.nowait = u.nowait;
        }
        _ => {}
    }
}

fn queue_arguments(m: &queue::AMQPMethod, method: &mut Method) {
    match m {
        queue::AMQPMethod::Declare(d) => {
            method.queue = text(&d.queue);
            method.nowait = d.nowait;
        }
        queue::AMQPMethod::Bind(b) => {
            method.queue = text(&b.queue);
            method.exchange = text(&b.exchange);
            method.routing_key = text(&b.routing_key);
            method.nowait = b.nowait;
        }
        queue::AMQPMethod::Unbind(u) => {
            method.queue = text(&u.queue);
            method.exchange = text(&u.exchange);
            method.routing_key = text(&u.routing_key);
        }
        queue::AMQPMethod::Purge(p) => {
            method.queue = text(&p.queue);
            method.nowait = p.nowait;
        }
        queue::AMQPMethod::Delete(d) => {
            method.queue = text(&d.queue);
            method.nowait = d.nowait;
        }
        _ => {}
    }
}

fn basic_arguments(m: &basic::AMQPMethod, method: &mut Method) {
    match m {
        basic::AMQPMethod::Consume(c) => {
            method.queue = text(&c.queue);
            method.nowait = c.nowait;
        }
        basic::AMQPMethod::Cancel(c) => method.nowait = c.nowait,
        basic::AMQPMethod::Publish(p) => {
            method.exchange = text(&p.exchange);
            method.routing_key = text(&p.routing_key);
        }
        basic::AMQPMethod::Return(r) => {
            method.reply_code = Some(r.reply_code);
            method.exchange = text(&r.exchange);
            method.routing_key = text(&r.routing_key);
        }
        basic::AMQPMethod::Deliver(d) => {
            method.exchange = text(&d.exchange);
            method.routing_key = text(&d.routing_key);
            method.delivery_tag = Some(d.delivery_tag);
        }
        basic::AMQPMethod::Get(g) => method.queue = text(&g.queue),
        basic::AMQPMethod::GetOk(g) => {
            method.exchange = text(&g.exchange);
            method.routing_key = text(&g.routing_key);
            method.delivery_tag = Some(g.delivery_tag);
        }
        basic::AMQPMethod::Ack(a) => {
            method.delivery_tag = Some(a.delivery_tag);
            method.multiple = a.multiple;
        }
        basic::AMQPMethod::Nack(n) => {
            method.delivery_tag = Some(n.delivery_tag);
            method.multiple = n.multiple;
        }
        basic::AMQPMethod::Reject(r) => method.delivery_tag = Some(r.delivery_tag),
        _ => {}
    }
}

/// Class id and body size from the start of a content header payload.
#[must_use]
pub fn content_header(payload: &[u8]) -> Option<(u16, u64)> {
    let prefix: &[u8; CONTENT_HEADER_PREFIX] =
        payload.get(..CONTENT_HEADER_PREFIX)?.try_into().ok()?;
    let class = u16::from_be_bytes([prefix[0], prefix[1]]);
    let mut size = [0u8; 8];
    size.copy_from_slice(&prefix[4..12]);
    Some((class, u64::from_be_bytes(size)))
}

/// What a whole frame at the start of `data` is, checked as strictly as possible: frame end in place,
/// a method that decodes, a content header of class basic, an empty heartbeat on channel 0.
/// `None`: not enough bytes to tell (or more than a probe should wait for).
#[must_use]
pub fn checked_frame(data: &[u8]) -> Option<Result<(FrameHead, Option<Method>), FrameError>> {
    let head = match frame_head(data)? {
        Ok(head) => head,
        Err(e) => return Some(Err(e)),
    };
    let frame = data.get(..head.total())?;
    let end = frame[frame.len() - 1];
    if end != FRAME_END {
        return Some(Err(FrameError::End(end)));
    }
    let payload = &frame[HEAD_LEN..frame.len() - 1];
    match head.kind {
        FrameKind::Method => Some(decode_method(frame).map(|m| (head, Some(m)))),
        FrameKind::Header => match content_header(payload) {
            Some((60, _)) if payload[2..4] == [0, 0] => Some(Ok((head, None))),
            _ => Some(Err(FrameError::Arguments)),
        },
        FrameKind::Heartbeat if head.channel != 0 => Some(Err(FrameError::Arguments)),
        FrameKind::Body | FrameKind::Heartbeat => Some(Ok((head, None))),
    }
}

//! AMQP parser cases, driven through the real `flow::stream::Stream` so that the skip requests the
//! parser makes (content bodies) are applied exactly as the flow layer applies them. Frames are built
//! with `amq-protocol`'s own generator, except a few written out byte by byte.

use amq_protocol::frame::{gen_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::{
    basic, channel, confirm, connection, exchange, queue, tx, AMQPClass, BasicProperties,
};
use amq_protocol::types::{FieldTable, LongString};

use super::*;
use crate::model::Transport;
use crate::protocols::testing::{self, XorShift};

// --- Frames ----------------------------------------------------------------------------------

fn encode(frame: &AMQPFrame) -> Vec<u8> {
    let (bytes, _) = gen_frame(frame)(WriteContext::from(Vec::new()))
        .expect("generate frame")
        .into_inner();
    bytes
}

fn method(channel: u16, class: AMQPClass) -> Vec<u8> {
    encode(&AMQPFrame::Method(channel, class))
}

/// A content header and body frames of at most `frame_body` bytes each.
fn content(channel: u16, body: &[u8], frame_body: usize) -> Vec<u8> {
    let mut out = encode(&AMQPFrame::Header(
        channel,
        AMQPContentHeader {
            class_id: 60,
            body_size: body.len() as u64,
            properties: BasicProperties::default().with_content_type("text/plain".into()),
        },
    ));
    for piece in body.chunks(frame_body) {
        out.extend(encode(&AMQPFrame::Body(channel, piece.to_vec())));
    }
    out
}

fn start() -> Vec<u8> {
    method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: FieldTable::default(),
            mechanisms: LongString::from(b"PLAIN AMQPLAIN".to_vec()),
            locales: LongString::from(b"en_US".to_vec()),
        })),
    )
}

fn start_ok() -> Vec<u8> {
    method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
            client_properties: FieldTable::default(),
            mechanism: "PLAIN".into(),
            response: LongString::from(b"\0guest\0guest".to_vec()),
            locale: "en_US".into(),
        })),
    )
}

fn tune(ok: bool) -> Vec<u8> {
    let (channel_max, frame_max, heartbeat) = (2047, 131_072, 60);
    let class = if ok {
        connection::AMQPMethod::TuneOk(connection::TuneOk {
            channel_max,
            frame_max,
            heartbeat,
        })
    } else {
        connection::AMQPMethod::Tune(connection::Tune {
            channel_max,
            frame_max,
            heartbeat,
        })
    };
    method(0, AMQPClass::Connection(class))
}

fn connection_open() -> Vec<u8> {
    method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
            virtual_host: "/".into(),
        })),
    )
}

fn connection_open_ok() -> Vec<u8> {
    method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
    )
}

fn connection_close(code: u16, cause: MethodId) -> Vec<u8> {
    method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: code,
            reply_text: "bye".into(),
            class_id: cause.0,
            method_id: cause.1,
        })),
    )
}

fn connection_close_ok() -> Vec<u8> {
    method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
    )
}

fn channel_open(ch: u16) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    )
}

fn channel_open_ok(ch: u16) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
    )
}

fn channel_close(ch: u16, code: u16, cause: MethodId) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
            reply_code: code,
            reply_text: "NOT_FOUND - no queue 'missing'".into(),
            class_id: cause.0,
            method_id: cause.1,
        })),
    )
}

fn channel_close_ok(ch: u16) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
    )
}

fn exchange_declare(ch: u16, name: &str) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
            exchange: name.into(),
            kind: "direct".into(),
            passive: false,
            durable: false,
            auto_delete: false,
            internal: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
}

fn exchange_declare_ok(ch: u16) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {})),
    )
}

fn queue_declare(ch: u16, name: &str, passive: bool) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: name.into(),
            passive,
            durable: false,
            exclusive: false,
            auto_delete: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
}

fn queue_declare_ok(ch: u16, name: &str) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
            queue: name.into(),
            message_count: 0,
            consumer_count: 0,
        })),
    )
}

fn queue_bind(ch: u16) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
            queue: "jobs".into(),
            exchange: "logs".into(),
            routing_key: "rk".into(),
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
}

fn queue_bind_ok(ch: u16) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Queue(queue::AMQPMethod::BindOk(queue::BindOk {})),
    )
}

fn queue_delete_nowait(ch: u16) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
            queue: "jobs".into(),
            if_unused: false,
            if_empty: false,
            nowait: true,
        })),
    )
}

fn qos(ch: u16) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: 10,
            global: false,
        })),
    )
}

fn qos_ok(ch: u16) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
    )
}

fn publish(ch: u16, body: &[u8], frame_body: usize) -> Vec<u8> {
    let mut out = method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "logs".into(),
            routing_key: "rk".into(),
            mandatory: false,
            immediate: false,
        })),
    );
    out.extend(content(ch, body, frame_body));
    out
}

fn consume(ch: u16) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: "jobs".into(),
            consumer_tag: String::new().into(),
            no_local: false,
            no_ack: false,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        })),
    )
}

fn consume_ok(ch: u16) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
            consumer_tag: "ctag1".into(),
        })),
    )
}

fn deliver(ch: u16, tag: u64, body: &[u8]) -> Vec<u8> {
    let mut out = method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
            consumer_tag: "ctag1".into(),
            delivery_tag: tag,
            redelivered: false,
            exchange: "logs".into(),
            routing_key: "rk".into(),
        })),
    );
    out.extend(content(ch, body, 4096));
    out
}

fn ack(ch: u16, tag: u64, multiple: bool) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: tag,
            multiple,
        })),
    )
}

fn nack(ch: u16, tag: u64) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack {
            delivery_tag: tag,
            multiple: false,
            requeue: false,
        })),
    )
}

fn get(ch: u16) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
            queue: "jobs".into(),
            no_ack: false,
        })),
    )
}

fn get_ok(ch: u16, tag: u64, body: &[u8]) -> Vec<u8> {
    let mut out = method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::GetOk(basic::GetOk {
            delivery_tag: tag,
            redelivered: false,
            exchange: "logs".into(),
            routing_key: "rk".into(),
            message_count: 0,
        })),
    );
    out.extend(content(ch, body, 4096));
    out
}

fn get_empty(ch: u16) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
    )
}

fn confirm_select(ch: u16) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
            nowait: false,
        })),
    )
}

fn confirm_select_ok(ch: u16) -> Vec<u8> {
    method(
        ch,
        AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
    )
}

fn tx_select(ch: u16) -> Vec<u8> {
    method(ch, AMQPClass::Tx(tx::AMQPMethod::Select(tx::Select {})))
}

fn tx_select_ok(ch: u16) -> Vec<u8> {
    method(ch, AMQPClass::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})))
}

fn tx_commit(ch: u16) -> Vec<u8> {
    method(ch, AMQPClass::Tx(tx::AMQPMethod::Commit(tx::Commit {})))
}

fn tx_commit_ok(ch: u16) -> Vec<u8> {
    method(ch, AMQPClass::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})))
}

/// A heartbeat: type 8, channel 0, size 0, frame end.
const HEARTBEAT: &[u8] = &[8, 0, 0, 0, 0, 0, 0, 0xCE];

/// `queue.declare` of `q` on channel 1, written out: type 1, channel 1, size 13, class 50, method 10,
/// reserved short, queue name (length 1, "q"), flags (passive), empty table, frame end.
const QUEUE_DECLARE_Q: &[u8] = &[
    1, 0, 1, 0, 0, 0, 13, // method frame, channel 1, 13 bytes
    0, 50, 0, 10, // queue.declare
    0, 0, // reserved
    1, b'q', // queue "q"
    0x01, // passive
    0, 0, 0, 0, // arguments: empty table
    0xCE,
];

// --- Driving a connection --------------------------------------------------------------------

/// One connection through the real `Stream`s (see `protocols::testing`).
type Conn = testing::Conn<AmqpParser>;

/// A connection whose client sequence numbers wrap around soon.
fn conn() -> Conn {
    Conn::with_seq([u32::MAX - 50, 7])
}

/// The parts of a record the cases assert on.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    method: String,
    channel: u16,
    exchange: Option<String>,
    routing_key: Option<String>,
    queue: Option<String>,
    delivery_tag: Option<u64>,
    response: Option<(String, Option<u16>)>,
    status: CallStatus,
}

fn summary(call: ParsedCall) -> Summary {
    assert!(call.end >= call.start, "{call:?}");
    let Request::Amqp(r) = call.request else {
        panic!("not an AMQP request")
    };
    Summary {
        method: r.method,
        channel: r.channel,
        exchange: r.exchange,
        routing_key: r.routing_key,
        queue: r.queue,
        delivery_tag: r.delivery_tag,
        response: call.response.map(|r| match r {
            Response::Amqp(r) => (r.method, r.reply_code),
            other => panic!("not an AMQP response: {other:?}"),
        }),
        status: call.status,
    }
}

/// A record without arguments.
fn rec(method: &str, channel: u16, response: Option<&str>, status: CallStatus) -> Summary {
    Summary {
        method: method.into(),
        channel,
        exchange: None,
        routing_key: None,
        queue: None,
        delivery_tag: None,
        response: response.map(|m| (m.into(), None)),
        status,
    }
}

impl Summary {
    fn exchange(mut self, name: &str) -> Self {
        self.exchange = Some(name.into());
        self
    }

    fn routing_key(mut self, key: &str) -> Self {
        self.routing_key = Some(key.into());
        self
    }

    fn queue(mut self, name: &str) -> Self {
        self.queue = Some(name.into());
        self
    }

    fn tag(mut self, tag: u64) -> Self {
        self.delivery_tag = Some(tag);
        self
    }

    fn code(mut self, code: u16) -> Self {
        if let Some((_, reply_code)) = &mut self.response {
            *reply_code = Some(code);
        }
        self
    }
}

use CallStatus::{Error, NoResponse, Ok as Fine};
use Side::{Client as C, Server as S};

fn handshake() -> Vec<(Side, Vec<u8>)> {
    vec![
        (C, PROTOCOL_HEADER.to_vec()),
        (S, start()),
        (C, start_ok()),
        (S, tune(false)),
        (C, tune(true)),
        (C, connection_open()),
        (S, connection_open_ok()),
        (C, channel_open(1)),
        (S, channel_open_ok(1)),
    ]
}

fn handshake_records() -> Vec<Summary> {
    vec![
        rec("connection.start", 0, Some("connection.start-ok"), Fine),
        rec("connection.tune", 0, Some("connection.tune-ok"), Fine),
        rec("connection.open", 0, Some("connection.open-ok"), Fine),
        rec("channel.open", 1, Some("channel.open-ok"), Fine),
    ]
}

/// A whole session: declare, bind, publish (a small body, and a 6 KB body in two frames), consume and
/// ack a delivery, heartbeats, basic.get (a message, then empty), publisher confirms (single, multiple,
/// nack), a passive declare of a missing queue, a transaction, a nowait delete, and the close.
fn conversation() -> Vec<(Side, Vec<u8>)> {
    let big = vec![b'x'; 6_000];
    let mut script = handshake();
    script.extend([
        (C, exchange_declare(1, "logs")),
        (S, exchange_declare_ok(1)),
        (C, queue_declare(1, "jobs", false)),
        (S, queue_declare_ok(1, "jobs")),
        (C, queue_bind(1)),
        (S, queue_bind_ok(1)),
        (C, qos(1)),
        (S, qos_ok(1)),
        (C, publish(1, b"hello", 4096)),
        (C, publish(1, &big, 3_000)),
        (C, consume(1)),
        ([consume_ok(1), deliver(1, 1, b"hello")].concat()).with(S),
        (S, HEARTBEAT.to_vec()),
        (C, HEARTBEAT.to_vec()),
        (C, ack(1, 1, false)),
        (C, get(1)),
        (S, get_ok(1, 2, b"second")),
        (C, get(1)),
        (S, get_empty(1)),
        (C, confirm_select(1)),
        (S, confirm_select_ok(1)),
        (C, publish(1, b"one", 4096)),
        (S, ack(1, 1, false)),
        (
            C,
            [publish(1, b"two", 4096), publish(1, b"three", 4096)].concat(),
        ),
        (S, ack(1, 3, true)),
        (C, publish(1, b"four", 4096)),
        (S, nack(1, 4)),
        (C, queue_declare(1, "missing", true)),
        (S, channel_close(1, 404, (50, 10))),
        (C, channel_close_ok(1)),
        (C, channel_open(2)),
        (S, channel_open_ok(2)),
        (C, tx_select(2)),
        (S, tx_select_ok(2)),
        (C, publish(2, b"in a transaction", 4096)),
        (C, tx_commit(2)),
        (S, tx_commit_ok(2)),
        (C, queue_delete_nowait(2)),
        (C, connection_close(200, (0, 0))),
        (S, connection_close_ok()),
    ]);
    script
}

trait With {
    fn with(self, side: Side) -> (Side, Vec<u8>);
}

impl With for Vec<u8> {
    fn with(self, side: Side) -> (Side, Vec<u8>) {
        (side, self)
    }
}

fn expected_conversation() -> Vec<Summary> {
    let publish = || {
        rec("basic.publish", 1, None, Fine)
            .exchange("logs")
            .routing_key("rk")
    };
    let confirmed = |tag, by: &str, status| {
        let mut r = publish().tag(tag);
        r.response = Some((by.into(), None));
        r.status = status;
        r
    };
    let mut out = handshake_records();
    out.extend([
        rec("exchange.declare", 1, Some("exchange.declare-ok"), Fine).exchange("logs"),
        rec("queue.declare", 1, Some("queue.declare-ok"), Fine).queue("jobs"),
        rec("queue.bind", 1, Some("queue.bind-ok"), Fine)
            .exchange("logs")
            .routing_key("rk")
            .queue("jobs"),
        rec("basic.qos", 1, Some("basic.qos-ok"), Fine),
        publish(),
        publish(),
        rec("basic.consume", 1, Some("basic.consume-ok"), Fine).queue("jobs"),
        rec("basic.deliver", 1, None, Fine)
            .exchange("logs")
            .routing_key("rk")
            .tag(1),
        rec("basic.ack", 1, None, Fine).tag(1),
        rec("basic.get", 1, Some("basic.get-ok"), Fine).queue("jobs"),
        rec("basic.get", 1, Some("basic.get-empty"), Fine).queue("jobs"),
        rec("confirm.select", 1, Some("confirm.select-ok"), Fine),
        confirmed(1, "basic.ack", Fine),
        confirmed(2, "basic.ack", Fine),
        confirmed(3, "basic.ack", Fine),
        confirmed(4, "basic.nack", Error),
        rec("queue.declare", 1, Some("channel.close"), Error)
            .queue("missing")
            .code(404),
        rec("channel.close-ok", 1, None, Fine),
        rec("channel.open", 2, Some("channel.open-ok"), Fine),
        rec("tx.select", 2, Some("tx.select-ok"), Fine),
        rec("basic.publish", 2, None, Fine)
            .exchange("logs")
            .routing_key("rk"),
        rec("tx.commit", 2, Some("tx.commit-ok"), Fine),
        rec("queue.delete", 2, None, Fine).queue("jobs"),
        rec("connection.close", 0, Some("connection.close-ok"), Fine).code(200),
    ]);
    out
}

/// Plays `script` in order; message `split` (if any) is cut into pieces at `cuts`.
fn play(script: &[(Side, Vec<u8>)], split: Option<(usize, &[usize])>) -> Vec<Summary> {
    let mut c = conn();
    for (i, (side, data)) in script.iter().enumerate() {
        match split {
            Some((at, cuts)) if at == i => {
                let mut from = 0;
                for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
                    c.send(*side, &data[from..cut]);
                    from = cut;
                }
            }
            _ => c.send(*side, data),
        }
    }
    c.close();
    assert!(c.streams.iter().all(|s| s.stats.gaps == 0));
    assert_eq!(c.parser.stats(), ParserStats::default());
    c.take(summary)
}

// --- Cases -----------------------------------------------------------------------------------

#[test]
fn conversation_delivered_message_by_message() {
    assert_eq!(play(&conversation(), None), expected_conversation());
}

#[test]
fn conversation_with_each_message_split_at_every_offset() {
    let script = conversation();
    let whole = expected_conversation();
    for (i, (_, data)) in script.iter().enumerate() {
        for cut in 0..=data.len() {
            assert_eq!(
                play(&script, Some((i, &[cut]))),
                whole,
                "message {i} split at {cut}"
            );
        }
    }
}

#[test]
fn conversation_one_byte_at_a_time() {
    let script = conversation();
    let mut c = conn();
    for (side, data) in &script {
        for byte in data.chunks(1) {
            c.send(*side, byte);
        }
    }
    c.close();
    assert_eq!(c.take(summary), expected_conversation());
}

#[test]
fn hand_written_queue_declare_matches_the_generator() {
    assert_eq!(QUEUE_DECLARE_Q, queue_declare(1, "q", true).as_slice());
    let decoded = frame::decode_method(QUEUE_DECLARE_Q).expect("decodes");
    assert_eq!(decoded.info.name, "queue.declare");
    assert_eq!(decoded.queue.as_deref(), Some("q"));
    assert!(!decoded.nowait);
}

#[test]
fn a_body_the_kernel_did_not_copy_is_skipped_not_a_gap() {
    let mut c = conn();
    for (side, data) in handshake() {
        c.send(side, &data);
    }
    // A deliver whose 1 MB body frame the kernel skipped after the first 100 bytes.
    let body_len = 1_000_000u32;
    let mut head = method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
            consumer_tag: "c".into(),
            delivery_tag: 9,
            redelivered: true,
            exchange: String::new().into(),
            routing_key: "jobs".into(),
        })),
    );
    head.extend(encode(&AMQPFrame::Header(
        1,
        AMQPContentHeader {
            class_id: 60,
            body_size: u64::from(body_len),
            properties: BasicProperties::default(),
        },
    )));
    head.extend([3, 0, 1]);
    head.extend(body_len.to_be_bytes());
    let head_len = head.len() as u32;
    head.extend([b'x'; 100]);
    c.segment(S, head_len + body_len + 1, &head);
    c.send(S, HEARTBEAT);
    c.send(C, &ack(1, 9, false));
    assert_eq!(c.streams[1].stats.gaps, 0);
    let mut expected = handshake_records();
    expected.extend([
        rec("basic.deliver", 1, None, Fine)
            .exchange("")
            .routing_key("jobs")
            .tag(9),
        rec("basic.ack", 1, None, Fine).tag(9),
    ]);
    assert_eq!(c.take(summary), expected);
}

#[test]
fn unanswered_requests_are_no_response_at_close() {
    let mut c = conn();
    for (side, data) in handshake() {
        c.send(side, &data);
    }
    c.send(C, &queue_declare(1, "jobs", false));
    c.send(C, &confirm_select(1));
    c.send(S, &confirm_select_ok(1));
    c.send(C, &publish(1, b"lost", 100));
    c.close();
    let mut expected = handshake_records();
    expected.extend([
        rec("confirm.select", 1, Some("confirm.select-ok"), Fine),
        rec("queue.declare", 1, None, NoResponse).queue("jobs"),
        rec("basic.publish", 1, None, NoResponse)
            .exchange("logs")
            .routing_key("rk")
            .tag(1),
    ]);
    assert_eq!(c.take(summary), expected);
}

#[test]
fn server_closes_a_channel_on_its_own() {
    // A publish to a missing exchange fails asynchronously: the close answers nothing and waits for its
    // close-ok, which acknowledges its reply code.
    let mut c = conn();
    for (side, data) in handshake() {
        c.send(side, &data);
    }
    c.send(C, &publish(1, b"x", 100));
    c.send(S, &channel_close(1, 404, (60, 40)));
    c.send(C, &channel_close_ok(1));
    // The server forces the connection closed; no close-ok comes.
    c.send(S, &connection_close(320, (0, 0)));
    c.close();
    let mut expected = handshake_records();
    expected.extend([
        rec("basic.publish", 1, None, Fine)
            .exchange("logs")
            .routing_key("rk"),
        rec("channel.close", 1, Some("channel.close-ok"), Error).code(404),
        rec("connection.close", 0, None, Error),
    ]);
    assert_eq!(c.take(summary), expected);
}

#[test]
fn a_refused_connection_open_is_answered_by_connection_close() {
    let mut c = conn();
    for (side, data) in handshake().into_iter().take(6) {
        c.send(side, &data);
    }
    c.send(S, &connection_close(530, (10, 40)));
    c.close();
    let mut expected = handshake_records();
    expected.truncate(2);
    expected.push(rec("connection.open", 0, Some("connection.close"), Error).code(530));
    assert_eq!(c.take(summary), expected);
}

#[test]
fn gap_inside_a_method_resynchronises_on_the_next_method() {
    let mut c = conn();
    for (side, data) in handshake() {
        c.send(side, &data);
    }
    // The server's deliver loses its middle: the deliver record is lost, the next method is not.
    let d = deliver(1, 1, b"payload");
    c.send(S, &d[..10]);
    c.lose(S, 20);
    c.send(S, &d[30..]);
    c.send(C, &get(1));
    c.send(S, &get_empty(1));
    c.close();
    let mut expected = handshake_records();
    expected.push(rec("basic.get", 1, Some("basic.get-empty"), Fine).queue("jobs"));
    assert_eq!(c.take(summary), expected);
    assert_eq!(c.streams[1].stats.gaps, 1);
}

#[test]
fn gap_inside_content_reports_the_method_and_resynchronises() {
    let mut c = conn();
    for (side, data) in handshake() {
        c.send(side, &data);
    }
    let d = deliver(1, 5, &[b'y'; 3000]);
    let method_len = consume_ok(1).len(); // any short prefix that ends inside the content header
    c.send(S, &d[..method_len + 40]);
    c.lose(S, 100);
    c.send(S, &d[method_len + 140..]);
    c.send(S, HEARTBEAT);
    c.send(C, &ack(1, 5, false));
    c.close();
    let mut expected = handshake_records();
    expected.extend([
        rec("basic.deliver", 1, None, Fine)
            .exchange("logs")
            .routing_key("rk")
            .tag(5),
        rec("basic.ack", 1, None, Fine).tag(5),
    ]);
    assert_eq!(c.take(summary), expected);
}

#[test]
fn garbage_is_malformed_and_passed_over() {
    let mut c = conn();
    for (side, data) in handshake() {
        c.send(side, &data);
    }
    c.send(C, b"\x07garbage that is not a frame\xCE\x01\x00");
    c.send(C, &queue_declare(1, "jobs", false));
    c.send(S, &[1, 0, 1, 0, 0, 0, 4, 0xAA, 0xBB, 0xCC, 0xDD, 0xCE]); // unknown method 43707/52445
    c.send(S, &queue_declare_ok(1, "jobs"));
    c.close();
    let mut expected = handshake_records();
    expected.push(rec("queue.declare", 1, Some("queue.declare-ok"), Fine).queue("jobs"));
    assert_eq!(c.take(summary), expected);
    assert_eq!(c.parser.stats().malformed, 2);
}

#[test]
fn pending_requests_per_channel_are_bounded() {
    let mut c = conn();
    for (side, data) in handshake() {
        c.send(side, &data);
    }
    for _ in 0..MAX_PENDING + 4 {
        c.send(C, &queue_declare(1, "jobs", false));
    }
    let calls = c.take(summary);
    assert_eq!(calls.len(), handshake_records().len() + 4);
    assert!(calls[4..].iter().all(|r| r.status == NoResponse));
    assert_eq!(c.parser.stats().pending_overflow, 4);
    c.close();
    assert_eq!(c.take(summary).len(), MAX_PENDING);
}

#[test]
fn joined_mid_stream_answers_are_reported_alone() {
    let mut c = conn();
    c.send(S, &queue_declare_ok(1, "jobs"));
    c.send(S, &deliver(1, 3, b"m"));
    c.close();
    assert_eq!(
        c.take(summary),
        vec![
            rec("queue.declare-ok", 1, None, Fine),
            rec("basic.deliver", 1, None, Fine)
                .exchange("logs")
                .routing_key("rk")
                .tag(3),
        ]
    );
}

#[test]
fn random_frames_and_bytes_never_panic() {
    let pieces: Vec<Vec<u8>> = conversation()
        .into_iter()
        .map(|(_, data)| data)
        .chain([
            HEARTBEAT.to_vec(),
            vec![3, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF],
            vec![2, 0, 1, 0, 0, 0, 2, 0, 60, 0xCE],
            vec![1, 0, 0, 0, 1, 0, 0],
            b"AMQP\x00\x00\x09\x01".to_vec(),
            b"AMQP\x01\x01".to_vec(),
        ])
        .collect();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..1_000 {
        let mut c = conn();
        c.send_random(&mut rng, 24, |rng| {
            let mut data = Vec::new();
            for _ in 0..rng.below(5) {
                let piece = &pieces[rng.below(pieces.len() as u64) as usize];
                match rng.below(4) {
                    0 => data.extend((0..rng.below(40)).map(|_| rng.next() as u8)),
                    1 => data.extend(&piece[..rng.below(piece.len() as u64 + 1) as usize]),
                    _ => data.extend(piece),
                }
            }
            data
        });
        c.close();
        for call in c.take(summary) {
            assert!(!call.method.is_empty());
        }
    }
}

#[test]
fn probe_finds_the_header_and_frames_mid_stream() {
    let hints = |sender_port, receiver_port| Hints {
        transport: Transport::Tcp,
        sender_port,
        receiver_port,
    };
    let any = hints(40000, 40001);
    let from_server = hints(5672, 40000);
    let client = Detection::Match {
        protocol: Known::Amqp,
        sender: Side::Client,
    };
    let server = Detection::Match {
        protocol: Known::Amqp,
        sender: Side::Server,
    };
    assert_eq!(probe(PROTOCOL_HEADER, &any), client);
    assert_eq!(probe(b"AMQP\x00\x00", &any), Detection::NeedMore);
    assert_eq!(probe(b"AMQP\x00\x01\x00\x00", &any), Detection::NoMatch); // AMQP 1.0
    assert_eq!(probe(b"GET / HTTP/1.1\r\n", &any), Detection::NoMatch);
    assert_eq!(probe(b"\x16\x03\x01\x02\x00", &any), Detection::NoMatch);
    // Whole frames: the method tells the sender, else the port does.
    assert_eq!(probe(&deliver(1, 1, b"x"), &any), server);
    assert_eq!(probe(QUEUE_DECLARE_Q, &any), client);
    assert_eq!(probe(&ack(1, 1, false), &any), Detection::NoMatch);
    assert_eq!(probe(&ack(1, 1, false), &from_server), server);
    assert_eq!(probe(HEARTBEAT, &any), Detection::NoMatch);
    assert_eq!(probe(HEARTBEAT, &hints(40000, 5672)), client);
    // A frame end out of place.
    let mut bad = QUEUE_DECLARE_Q.to_vec();
    *bad.last_mut().expect("frame") = 0;
    assert_eq!(probe(&bad, &any), Detection::NoMatch);
    // Not whole yet: wait, unless a known method comes on the AMQP port.
    let s = start();
    assert_eq!(probe(&s[..40], &any), Detection::NeedMore);
    assert_eq!(probe(&s[..40], &from_server), server);
    assert_eq!(probe(&s[..5], &from_server), Detection::NeedMore);
}

#[test]
fn detection_makes_this_parser() {
    let hints = Hints {
        transport: Transport::Tcp,
        sender_port: 40000,
        receiver_port: 5672,
    };
    let Detection::Match { protocol, sender } =
        super::super::detect::detect(PROTOCOL_HEADER, &hints)
    else {
        panic!("not detected")
    };
    assert_eq!((protocol, sender), (Known::Amqp, Side::Client));
    assert_eq!(protocol.parser(Transport::Tcp).protocol(), Protocol::Amqp);
}

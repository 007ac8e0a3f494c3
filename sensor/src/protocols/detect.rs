//! Protocol detection from the first bytes a side sends: which parser to make, and which side of the
//! connection is the client (a request identifies its sender as the client, a response as the server).
//!
//! Content first, port second: every probe looks at the bytes; a probe may accept weaker evidence when
//! the connection uses its protocol's well-known port (`Hints`). Probes run in order of how specific
//! their signature is, so a loose one never shadows a strict one.

use super::{amqp, dns, http1, http2, kafka, redis, Parser};
use crate::model::{Side, Transport};

/// The answer of a probe on the first bytes of one side.
#[derive(Debug, PartialEq, Eq)]
pub enum Detection {
    /// These bytes are the start of a protocol this module parses; `sender` is the role of the side
    /// that sent them.
    Match { protocol: Known, sender: Side },
    /// Not a protocol podtap knows.
    NoMatch,
    /// Too few bytes to tell.
    NeedMore,
}

/// What the flow layer knows of the connection besides the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hints {
    pub transport: Transport,
    /// Port of the end that sent the probed bytes.
    pub sender_port: u16,
    /// Port of the end that received them.
    pub receiver_port: u16,
}

impl Hints {
    /// Whether either end uses one of `ports`.
    #[must_use]
    pub fn uses_port(&self, ports: &[u16]) -> bool {
        ports.contains(&self.sender_port) || ports.contains(&self.receiver_port)
    }

    /// The sender's role judged by ports alone: whoever uses the well-known port is the server.
    #[must_use]
    pub fn sender_by_port(&self, ports: &[u16]) -> Option<Side> {
        match (
            ports.contains(&self.sender_port),
            ports.contains(&self.receiver_port),
        ) {
            (true, false) => Some(Side::Server),
            (false, true) => Some(Side::Client),
            _ => None,
        }
    }
}

/// Protocols detection can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    Http1,
    Amqp,
    /// HTTP/2 without TLS (prior knowledge, or joined in the middle); gRPC rides on it.
    Http2,
    Kafka,
    Dns,
    Redis,
}

impl Known {
    /// Every protocol detection can name (the fuzz targets pick from it).
    pub const ALL: &[Known] = &[
        Known::Http1,
        Known::Http2,
        Known::Dns,
        Known::Redis,
        Known::Kafka,
        Known::Amqp,
    ];

    /// A fresh parser for a connection of this protocol.
    #[must_use]
    pub fn parser(self, transport: Transport) -> Box<dyn Parser> {
        match self {
            Known::Http1 => Box::new(http1::Http1Parser::new()),
            Known::Amqp => Box::new(amqp::AmqpParser::new()),
            Known::Http2 => Box::new(http2::Http2Parser::new()),
            Known::Kafka => Box::new(kafka::KafkaParser::new()),
            // One message per datagram over UDP, length-prefixed messages over TCP.
            Known::Dns => Box::new(dns::DnsParser::new(transport)),
            Known::Redis => Box::new(redis::RedisParser::new()),
        }
    }
}

/// One probe: the bytes one side sent first, and what else is known.
type Probe = fn(&[u8], &Hints) -> Detection;

/// TCP probes, most specific signature first. HTTP/1's text never parses as HTTP/2 frames (its first
/// three bytes would be a frame length of several megabytes), and the HTTP/2 preface is no HTTP/1
/// request line (`PRI` is no method podtap knows).
const TCP_PROBES: &[Probe] = &[
    http1::probe,
    amqp::probe,
    http2::probe,
    redis::probe,
    kafka::probe,
    dns::probe,
];

/// UDP probes: each gets a whole datagram.
const UDP_PROBES: &[Probe] = &[dns::probe];

/// Probes the first bytes one side sent.
#[must_use]
pub fn detect(data: &[u8], hints: &Hints) -> Detection {
    let probes = match hints.transport {
        Transport::Tcp => TCP_PROBES,
        Transport::Udp => UDP_PROBES,
    };
    let mut need_more = false;
    for probe in probes {
        match probe(data, hints) {
            found @ Detection::Match { .. } => return found,
            Detection::NeedMore => need_more = true,
            Detection::NoMatch => {}
        }
    }
    if need_more {
        Detection::NeedMore
    } else {
        Detection::NoMatch
    }
}

//! Protocol detection from the first bytes a side sends: which parser to make, and which side of the
//! connection is the client (a request identifies its sender as the client, a response as the server).

use super::{http1, Parser};
use crate::model::Side;

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

/// Protocols detection can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    Http1,
}

impl Known {
    /// A fresh parser for a connection of this protocol.
    #[must_use]
    pub fn parser(self) -> Box<dyn Parser> {
        match self {
            Known::Http1 => Box::new(http1::Http1Parser::new()),
        }
    }
}

/// Probes the first bytes one side sent.
#[must_use]
pub fn detect(data: &[u8]) -> Detection {
    http1::probe(data)
}

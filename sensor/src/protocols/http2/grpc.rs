//! gRPC over HTTP/2: what makes a stream a gRPC call, and the length-prefixed messages it carries.
//!
//! Each message on a gRPC stream is a 5-byte prefix (a compressed flag, 0 or 1, and a 32-bit big-endian
//! length) and that many bytes. Messages are independent of DATA frames and TCP segments: a prefix may
//! be split between two frames, a message may span many, and a frame may hold several. Message bodies
//! are never read: the counter tells the parser how many bytes to skip.

/// Whether a `content-type` names gRPC (`application/grpc`, `application/grpc+proto`, ...).
#[must_use]
pub fn is_grpc_content_type(value: &[u8]) -> bool {
    value.starts_with(b"application/grpc")
}

/// A `grpc-status` value.
#[must_use]
pub fn parse_status(value: &[u8]) -> Option<u32> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// Counts the messages one side sends on one stream. A message counts once its last byte has passed
/// (as tshark counts them: a message cut off by the end of the capture or connection does not).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageCounter {
    /// Messages complete so far.
    pub messages: u64,
    prefix: [u8; 5],
    have: usize,
    /// Body bytes of the current message not passed yet.
    body: u64,
    /// Bytes of this side were lost, or a prefix made no sense: the position of the next prefix is
    /// unknown, so counting stopped (`messages` is what was seen before).
    lost: bool,
}

impl MessageCounter {
    /// Body bytes to pass before the next prefix.
    #[must_use]
    pub fn body_pending(&self) -> u64 {
        self.body
    }

    #[must_use]
    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// Up to `max` body bytes are about to pass: how many, and whether they end the message (the
    /// caller counts it with `complete` once they have passed).
    pub fn take_body(&mut self, max: u64) -> (u64, bool) {
        let n = self.body.min(max);
        self.body -= n;
        (n, n > 0 && self.body == 0)
    }

    /// The last byte of a message has passed.
    pub fn complete(&mut self) {
        if !self.lost {
            self.messages += 1;
        }
    }

    /// Reads prefix bytes from the start of `data` (which holds no pending body bytes); returns how
    /// many it used. An empty message is complete with its prefix.
    pub fn read_prefix(&mut self, data: &[u8]) -> usize {
        let n = (5 - self.have).min(data.len());
        self.prefix[self.have..self.have + n].copy_from_slice(&data[..n]);
        self.have += n;
        if self.have == 5 {
            self.have = 0;
            if self.prefix[0] > 1 {
                self.lost = true;
                return n;
            }
            self.body = u64::from(u32::from_be_bytes([
                self.prefix[1],
                self.prefix[2],
                self.prefix[3],
                self.prefix[4],
            ]));
            if self.body == 0 {
                self.messages += 1;
            }
        }
        n
    }

    /// Bytes of this side were lost: stop counting.
    pub fn lose(&mut self) {
        self.lost = true;
    }

    /// After lost bytes: whether a DATA frame holding `data_len` message bytes, which start with
    /// `first`, holds exactly one whole message (a valid flag and a length that fills the frame to its
    /// last byte). Then counting resumes at this frame; otherwise it stays stopped.
    pub fn resume_at(&mut self, first: &[u8], data_len: u32) -> bool {
        let fits = first.len() >= 5
            && first[0] <= 1
            && u64::from(u32::from_be_bytes([first[1], first[2], first[3], first[4]])) + 5
                == u64::from(data_len);
        if fits {
            self.lost = false;
            self.have = 0;
            self.body = 0;
        }
        fits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_prefixes_split_anywhere() {
        let mut stream = Vec::new();
        for len in [0u32, 3, 70_000, 1] {
            stream.push(0);
            stream.extend(len.to_be_bytes());
            stream.extend(std::iter::repeat_n(7u8, len as usize));
        }
        for step in [1, 2, 3, 5, 7, 1000] {
            let mut c = MessageCounter::default();
            let mut at = 0;
            while at < stream.len() {
                if c.body_pending() > 0 {
                    let (n, done) = c.take_body(step.min(stream.len() - at) as u64);
                    at += n as usize;
                    if done {
                        c.complete();
                    }
                } else {
                    let end = (at + step).min(stream.len());
                    at += c.read_prefix(&stream[at..end]);
                }
            }
            assert_eq!(c.messages, 4, "step {step}");
            // The last one is complete only with its last byte.
            let mut cut = MessageCounter::default();
            cut.read_prefix(&[0, 0, 0, 0, 2]);
            assert_eq!(cut.take_body(1), (1, false));
            assert_eq!(cut.messages, 0);
            assert!(!c.is_lost());
        }
    }

    #[test]
    fn a_bad_flag_stops_counting() {
        let mut c = MessageCounter::default();
        assert_eq!(c.read_prefix(&[9, 0, 0, 0, 1]), 5);
        assert!(c.is_lost());
        assert_eq!(c.messages, 0);
    }

    #[test]
    fn content_types_and_statuses() {
        assert!(is_grpc_content_type(b"application/grpc"));
        assert!(is_grpc_content_type(b"application/grpc+proto"));
        assert!(!is_grpc_content_type(b"application/json"));
        assert_eq!(parse_status(b"0"), Some(0));
        assert_eq!(parse_status(b"14"), Some(14));
        assert_eq!(parse_status(b"x"), None);
    }
}

//! What the parsers' tests share: a connection that feeds a parser through the real
//! `flow::stream::Stream` (so skips are applied exactly as the flow layer applies them), a
//! conversation fed whole or with one message cut in two, and a small deterministic random generator
//! for the garbage tests.

use crate::flow::stream::{Segment, Stream, StreamLimits, Target};
use crate::model::{ParsedCall, Side, UnixNanos};
use crate::protocols::Parser;

/// One connection: the parser, one `Stream` per side, and the next sequence number of each side.
pub struct Conn<P> {
    pub parser: P,
    pub streams: [Stream; 2],
    pub seq: [u32; 2],
    pub calls: Vec<ParsedCall>,
    pub ts: UnixNanos,
}

fn index(side: Side) -> usize {
    match side {
        Side::Client => 0,
        Side::Server => 1,
    }
}

impl<P: Parser + Default> Conn<P> {
    pub fn new() -> Self {
        Self::with_seq([1000, 5_000_000])
    }

    pub fn with_seq(seq: [u32; 2]) -> Self {
        Self::with_parser(P::default(), seq)
    }
}

impl<P: Parser> Conn<P> {
    /// A connection around `parser`, whose sides start at sequence numbers `seq`.
    pub fn with_parser(parser: P, seq: [u32; 2]) -> Self {
        Self {
            parser,
            streams: [
                Stream::new(StreamLimits::default()),
                Stream::new(StreamLimits::default()),
            ],
            seq,
            calls: Vec::new(),
            ts: 1_000,
        }
    }

    /// `payload_len` bytes of `side` of which `data` (a prefix) were captured; each segment is 1 µs
    /// after the previous one.
    pub fn segment(&mut self, side: Side, payload_len: u32, data: &[u8]) {
        self.ts += 1_000;
        let i = index(side);
        let segment = Segment {
            seq: self.seq[i],
            payload_len,
            skipped: 0,
            data,
            ts: self.ts,
        };
        self.seq[i] = self.seq[i].wrapping_add(payload_len);
        let mut target = Target {
            parser: Some(&mut self.parser),
            side,
            calls: &mut self.calls,
        };
        self.streams[i].segment(&segment, &mut target);
    }

    pub fn send(&mut self, side: Side, data: &[u8]) {
        let len = u32::try_from(data.len()).expect("test segment fits u32");
        self.segment(side, len, data);
    }

    pub fn client(&mut self, data: &[u8]) {
        self.send(Side::Client, data);
    }

    pub fn server(&mut self, data: &[u8]) {
        self.send(Side::Server, data);
    }

    /// `len` bytes of `side` went by without being captured.
    pub fn lose(&mut self, side: Side, len: u32) {
        self.segment(side, len, &[]);
    }

    pub fn close(&mut self) {
        self.ts += 1_000;
        self.parser.close(self.ts, &mut self.calls);
    }

    /// Sends each message of a conversation in one segment, except message `i` when `cut` is
    /// `Some((i, at))`: that one goes in two segments, cut at byte `at`.
    pub fn play(&mut self, script: &[(Side, Vec<u8>)], cut: Option<(usize, usize)>) {
        for (j, (side, bytes)) in script.iter().enumerate() {
            match cut {
                Some((i, at)) if i == j => {
                    self.send(*side, &bytes[..at]);
                    self.send(*side, &bytes[at..]);
                }
                _ => self.send(*side, bytes),
            }
        }
    }

    /// Up to `segments` segments (a random number of them), each from a random side and made by
    /// `data`; one in ten comes after a few lost bytes.
    pub fn send_random(
        &mut self,
        rng: &mut XorShift,
        segments: u64,
        mut data: impl FnMut(&mut XorShift) -> Vec<u8>,
    ) {
        for _ in 0..rng.below(segments) {
            let side = if rng.below(2) == 0 {
                Side::Client
            } else {
                Side::Server
            };
            let data = data(rng);
            if rng.below(10) == 0 {
                self.lose(side, rng.below(100) as u32 + 1);
            }
            self.send(side, &data);
        }
    }

    /// A segment for `send_random`: fewer than `parts` parts, each one of `pieces` or, one time in
    /// `random_one_in`, up to 39 random bytes.
    pub fn mix(rng: &mut XorShift, pieces: &[&[u8]], parts: u64, random_one_in: u64) -> Vec<u8> {
        let mut data = Vec::new();
        for _ in 0..rng.below(parts) {
            if rng.below(random_one_in) == 0 {
                let len = rng.below(40);
                data.extend((0..len).map(|_| rng.next() as u8));
            } else {
                data.extend_from_slice(pieces[rng.below(pieces.len() as u64) as usize]);
            }
        }
        data
    }

    /// The calls made so far, as `f` sees them.
    pub fn take<T>(&mut self, f: impl FnMut(ParsedCall) -> T) -> Vec<T> {
        self.calls.drain(..).map(f).collect()
    }

    /// Gaps both streams saw.
    pub fn gaps(&self) -> u64 {
        self.streams.iter().map(|s| s.stats.gaps).sum()
    }
}

/// A small deterministic generator, so failures reproduce.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

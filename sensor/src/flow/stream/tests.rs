//! Reassembly cases with a recording parser: what reaches the parser, what is a gap, when a skip ends.

use std::collections::VecDeque;

use super::*;
use crate::model::Protocol;
use crate::protocols::{Feed, ParserStats};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    Fed(Vec<u8>),
    Gap(u64),
    SkipDone(UnixNanos),
}

/// Consumes everything it is offered, except where `script` says otherwise (one entry per feed:
/// bytes consumed, skip asked); `hungry` consumes nothing (an endless incomplete message).
#[derive(Default)]
struct Recorder {
    events: Vec<Event>,
    script: VecDeque<(usize, u64)>,
    hungry: bool,
}

impl Parser for Recorder {
    fn protocol(&self) -> Protocol {
        Protocol::Http
    }

    fn feed(&mut self, _side: Side, data: &[u8], _ts: UnixNanos, _: &mut Vec<ParsedCall>) -> Feed {
        if self.hungry {
            return Feed::INCOMPLETE;
        }
        let (consumed, skip) = self.script.pop_front().unwrap_or((data.len(), 0));
        let consumed = consumed.min(data.len());
        self.events.push(Event::Fed(data[..consumed].to_vec()));
        Feed { consumed, skip }
    }

    fn gap(&mut self, _side: Side, len: u64) {
        self.events.push(Event::Gap(len));
    }

    fn skip_done(&mut self, _side: Side, ts: UnixNanos, _: &mut Vec<ParsedCall>) {
        self.events.push(Event::SkipDone(ts));
    }

    fn close(&mut self, _ts: UnixNanos, _: &mut Vec<ParsedCall>) {}

    fn stats(&self) -> ParserStats {
        ParserStats::default()
    }
}

impl Recorder {
    /// Every byte fed, in order.
    fn fed(&self) -> Vec<u8> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Fed(bytes) => Some(bytes.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .collect()
    }

    fn gaps(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Gap(len) => Some(*len),
                _ => None,
            })
            .collect()
    }

    fn skip_dones(&self) -> Vec<UnixNanos> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::SkipDone(ts) => Some(*ts),
                _ => None,
            })
            .collect()
    }
}

struct Harness {
    stream: Stream,
    parser: Recorder,
    calls: Vec<ParsedCall>,
}

impl Harness {
    fn new() -> Self {
        Self::with_limits(StreamLimits::default())
    }

    fn with_limits(limits: StreamLimits) -> Self {
        Self {
            stream: Stream::new(limits),
            parser: Recorder::default(),
            calls: Vec::new(),
        }
    }

    /// A whole segment of `data` at `seq`.
    fn seg(&mut self, seq: u32, data: &[u8], ts: UnixNanos) {
        let len = u32::try_from(data.len()).expect("fits");
        self.raw(seq, len, 0, data, ts);
    }

    fn raw(&mut self, seq: u32, payload_len: u32, skipped: u32, data: &[u8], ts: UnixNanos) {
        let mut target = Target {
            parser: Some(&mut self.parser),
            side: Side::Client,
            calls: &mut self.calls,
        };
        self.stream.segment(
            &Segment {
                seq,
                payload_len,
                skipped,
                data,
                ts,
            },
            &mut target,
        );
    }
}

const DATA: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

#[test]
fn in_order_segments_are_fed_in_order() {
    let mut h = Harness::new();
    h.seg(100, &DATA[..10], 1);
    h.seg(110, &DATA[10..], 2);
    assert_eq!(h.parser.fed(), DATA);
    assert_eq!(h.stream.next_seq(), Some(100 + DATA.len() as u32));
    assert_eq!(h.stream.stats, StreamStats::default());
}

#[test]
fn syn_anchors_the_stream() {
    let mut h = Harness::new();
    h.stream.syn(99);
    // The second segment arrives first: it waits for the first.
    h.seg(110, &DATA[10..20], 1);
    assert!(h.parser.fed().is_empty());
    h.seg(100, &DATA[..10], 2);
    assert_eq!(h.parser.fed(), &DATA[..20]);
}

#[test]
fn out_of_order_segments_are_reordered() {
    let mut h = Harness::new();
    h.seg(0, &DATA[..5], 1);
    h.seg(15, &DATA[15..20], 2);
    h.seg(10, &DATA[10..15], 3);
    h.seg(25, &DATA[25..], 4);
    assert_eq!(h.parser.fed(), &DATA[..5]);
    h.seg(5, &DATA[5..10], 5);
    assert_eq!(h.parser.fed(), &DATA[..20]);
    h.seg(20, &DATA[20..25], 6);
    assert_eq!(h.parser.fed(), DATA);
    assert_eq!(h.stream.stats.out_of_order_segments, 3);
    assert_eq!(h.stream.stats.gaps, 0);
}

#[test]
fn retransmitted_segments_are_dropped() {
    let mut h = Harness::new();
    h.seg(0, &DATA[..10], 1);
    h.seg(0, &DATA[..10], 2); // duplicate
    h.seg(3, &DATA[3..8], 3); // wholly old
    h.seg(5, &DATA[5..15], 4); // overlaps: only 10..15 is new
    h.seg(10, &DATA[10..20], 5); // overlaps: only 15..20 is new
    assert_eq!(h.parser.fed(), &DATA[..20]);
    assert_eq!(h.stream.stats.retransmitted_segments, 2);
    assert_eq!(h.stream.stats.gaps, 0);
}

#[test]
fn overlapping_out_of_order_segments_are_trimmed() {
    let mut h = Harness::new();
    h.seg(0, &DATA[..5], 1);
    h.seg(10, &DATA[10..20], 2);
    h.seg(12, &DATA[12..25], 3); // overlaps the held one
    h.seg(10, &DATA[10..20], 4); // duplicate of the held one
    h.seg(5, &DATA[5..12], 5); // fills the hole and overlaps the first held
    assert_eq!(h.parser.fed(), &DATA[..25]);
}

#[test]
fn cut_payload_is_a_gap() {
    let mut h = Harness::new();
    h.seg(0, &DATA[..5], 1);
    // 10 bytes on the wire, 4 captured.
    h.raw(5, 10, 0, &DATA[5..9], 2);
    h.seg(15, &DATA[15..20], 3);
    assert_eq!(
        h.parser.events,
        vec![
            Event::Fed(DATA[..5].to_vec()),
            Event::Fed(DATA[5..9].to_vec()),
            Event::Gap(6),
            Event::Fed(DATA[15..20].to_vec()),
        ]
    );
    assert_eq!((h.stream.stats.gaps, h.stream.stats.gap_bytes), (1, 6));
}

#[test]
fn cut_payload_inside_a_skip_is_not_a_gap() {
    let mut h = Harness::new();
    // A 5-byte head, then a 20-byte body to skip.
    h.parser.script.push_back((5, 20));
    // 30 bytes on the wire, 10 captured: 5 head, 5 body, 15 body not copied, 5 of the next message
    // not copied either: those are lost.
    h.raw(0, 30, 0, &DATA[..10], 7);
    assert_eq!(
        h.parser.events,
        vec![
            Event::Fed(DATA[..5].to_vec()),
            Event::SkipDone(7),
            Event::Gap(5)
        ]
    );
    assert_eq!(h.stream.stats.gap_bytes, 5);
}

#[test]
fn kernel_skipped_prefix_inside_a_skip_is_not_a_gap() {
    let mut h = Harness::new();
    h.parser.script.push_back((5, 50));
    h.seg(0, &DATA[..10], 1); // head + 5 body bytes
    assert_eq!(h.stream.pending_skip(), 45);
    // The kernel was asked to skip: 40 bytes not copied, then 5 copied body bytes, then the next
    // message.
    h.raw(10, 49, 40, b"BODY!next", 2);
    assert_eq!(h.parser.gaps(), Vec::<u64>::new());
    assert_eq!(h.parser.skip_dones(), vec![2]);
    assert_eq!(h.parser.fed(), b"01234next");
    assert_eq!(h.stream.pending_skip(), 0);
}

#[test]
fn skip_ending_exactly_at_a_segment_end() {
    let mut h = Harness::new();
    h.parser.script.push_back((5, 15));
    h.seg(0, &DATA[..10], 1);
    h.raw(10, 10, 10, &[], 2); // all skipped by the kernel
    assert_eq!(h.parser.skip_dones(), vec![2]);
    h.seg(20, b"more", 3);
    assert_eq!(h.parser.fed(), b"01234more");
    assert!(h.parser.gaps().is_empty());
}

#[test]
fn missing_segments_inside_a_skip_are_not_gaps() {
    let mut h = Harness::new();
    h.parser.script.push_back((5, 10_000));
    h.seg(0, &DATA[..10], 1);
    // The kernel reports nothing for segments wholly inside the skip; the segment that holds the
    // skip's end comes with the skipped part not copied.
    // The skip ends at 10 + 9_995 = 10_005.
    h.raw(9_000, 1_009, 1_005, b"next", 2);
    assert_eq!(h.parser.gaps(), Vec::<u64>::new());
    assert_eq!(h.parser.skip_dones(), vec![2], "the skip must end at once");
    assert_eq!(h.parser.fed(), b"01234next");
    assert_eq!(h.stream.next_seq(), Some(10_009));
    // A late copy of a skipped segment is old news.
    h.seg(100, &[0; 100], 3);
    assert_eq!(h.parser.fed(), b"01234next");
    assert!(h.parser.gaps().is_empty());
}

#[test]
fn missing_segments_beyond_the_skip_still_wait() {
    let mut h = Harness::new();
    h.parser.script.push_back((5, 10));
    h.seg(0, &DATA[..10], 1);
    // 5 bytes of skip remain; this segment starts 10 bytes ahead: 5 unknown bytes are missing.
    h.seg(20, b"late", 2);
    assert!(h.parser.skip_dones().is_empty());
    h.seg(10, &DATA[10..20], 3);
    assert_eq!(h.parser.skip_dones(), vec![3]);
    assert_eq!(h.parser.fed(), b"01234fghijlate");
}

#[test]
fn sequence_numbers_wrap() {
    let mut h = Harness::new();
    let start = u32::MAX - 9;
    h.seg(start, &DATA[..5], 1);
    // Out of order across the wrap.
    h.seg(start.wrapping_add(15), &DATA[15..25], 2);
    h.seg(start.wrapping_add(5), &DATA[5..15], 3);
    h.seg(start.wrapping_add(25), &DATA[25..], 4);
    // A retransmission from before the wrap.
    h.seg(start, &DATA[..10], 5);
    assert_eq!(h.parser.fed(), DATA);
    assert_eq!(
        h.stream.next_seq(),
        Some(start.wrapping_add(DATA.len() as u32))
    );
    assert_eq!(h.stream.stats.retransmitted_segments, 1);
    assert_eq!(h.stream.stats.gaps, 0);
}

#[test]
fn skip_across_the_wrap() {
    let mut h = Harness::new();
    let start = u32::MAX - 4;
    h.parser.script.push_back((5, 10));
    h.seg(start, &DATA[..5], 1);
    h.raw(start.wrapping_add(5), 15, 10, b"after", 2);
    assert_eq!(h.parser.skip_dones(), vec![2]);
    assert_eq!(h.parser.fed(), b"01234after");
    assert_eq!(h.stream.next_seq(), Some(15));
}

#[test]
fn out_of_order_bound_forces_a_gap() {
    let mut h = Harness::with_limits(StreamLimits {
        max_buffered: 1024,
        max_out_of_order: 2,
    });
    h.seg(0, &DATA[..5], 1);
    // 5..10 never comes.
    h.seg(10, &DATA[10..15], 2);
    h.seg(15, &DATA[15..20], 3);
    assert!(
        h.parser.gaps().is_empty(),
        "two held segments are within the bound"
    );
    h.seg(25, &DATA[25..30], 4); // a third: over the bound
    assert_eq!(h.parser.gaps(), vec![5]);
    assert_eq!(h.stream.stats.overflow_drops, 1);
    assert_eq!(
        h.parser.fed(),
        [&DATA[..5], &DATA[10..20]].concat(),
        "the bytes after the hole are delivered"
    );
    // 20..25 is still missing; 25..30 waits.
    h.seg(20, &DATA[20..25], 5);
    assert_eq!(h.parser.fed(), [&DATA[..5], &DATA[10..30]].concat());
}

#[test]
fn buffered_bytes_bound_drops_the_buffer_as_a_gap() {
    let mut h = Harness::with_limits(StreamLimits {
        max_buffered: 16,
        max_out_of_order: 8,
    });
    h.parser.hungry = true;
    h.seg(0, &DATA[..10], 1);
    assert_eq!(h.stream.buffered(), &DATA[..10]);
    h.seg(10, &DATA[10..20], 2);
    assert_eq!(h.parser.gaps(), vec![20]);
    assert!(h.stream.buffered().is_empty());
    assert_eq!(h.stream.stats.overflow_drops, 1);
    h.parser.hungry = false;
    h.seg(20, &DATA[20..25], 3);
    assert_eq!(h.parser.fed(), &DATA[20..25]);
}

#[test]
fn unconsumed_bytes_are_offered_again_with_the_next() {
    let mut h = Harness::new();
    h.parser.script.push_back((0, 0)); // needs more
    h.seg(0, &DATA[..3], 1);
    assert_eq!(h.stream.buffered(), &DATA[..3]);
    h.seg(3, &DATA[3..6], 2);
    assert_eq!(
        h.parser.events.last(),
        Some(&Event::Fed(DATA[..6].to_vec()))
    );
    assert!(h.stream.buffered().is_empty());
}

#[test]
fn without_a_parser_bytes_wait_and_are_flushed_later() {
    let mut stream = Stream::new(StreamLimits::default());
    let mut calls = Vec::new();
    let mut target = Target {
        parser: None,
        side: Side::Server,
        calls: &mut calls,
    };
    stream.segment(
        &Segment {
            seq: 1,
            payload_len: 4,
            skipped: 0,
            data: b"abcd",
            ts: 1,
        },
        &mut target,
    );
    assert_eq!(stream.buffered(), b"abcd");
    let mut parser = Recorder::default();
    let mut target = Target {
        parser: Some(&mut parser),
        side: Side::Server,
        calls: &mut calls,
    };
    stream.flush(2, &mut target);
    assert_eq!(parser.fed(), b"abcd");
}

#[test]
fn finish_passes_the_missing_bytes_and_delivers_what_waited() {
    let mut h = Harness::new();
    h.seg(0, &DATA[..5], 1);
    // Two holes that will never be filled: 5..10 and 20..25.
    h.seg(10, &DATA[10..20], 2);
    h.seg(25, &DATA[25..], 3);
    assert_eq!(h.parser.fed(), &DATA[..5]);
    let mut target = Target {
        parser: Some(&mut h.parser),
        side: Side::Client,
        calls: &mut h.calls,
    };
    h.stream.finish(4, &mut target);
    assert_eq!(h.parser.gaps(), vec![5, 5]);
    assert_eq!(
        h.parser.fed(),
        [&DATA[..5], &DATA[10..20], &DATA[25..]].concat()
    );
    assert_eq!(h.stream.next_seq(), Some(DATA.len() as u32));
}

#[test]
fn bytes_lost_while_detecting_are_passed_once_a_parser_exists() {
    // The first segment carries a message head and the start of a long body, cut by the copy limit:
    // the parser made after detection sees the head, asks to skip the body, and the cut is inside it.
    let mut stream = Stream::new(StreamLimits::default());
    let mut calls = Vec::new();
    let mut target = Target {
        parser: None,
        side: Side::Client,
        calls: &mut calls,
    };
    stream.segment(
        &Segment {
            seq: 1,
            payload_len: 1000,
            skipped: 0,
            data: b"head+body",
            ts: 1,
        },
        &mut target,
    );
    assert_eq!(stream.buffered(), b"head+body");
    let mut parser = Recorder::default();
    parser.script.push_back((4, 2000));
    let mut target = Target {
        parser: Some(&mut parser),
        side: Side::Client,
        calls: &mut calls,
    };
    stream.flush(2, &mut target);
    assert_eq!(parser.fed(), b"head");
    assert!(parser.gaps().is_empty());
    assert_eq!(stream.stats.gaps, 0);
    assert_eq!(stream.pending_skip(), 2000 - 996);
}

#[test]
fn bytes_lost_while_detecting_are_a_gap_when_no_skip_covers_them() {
    let mut stream = Stream::new(StreamLimits::default());
    let mut calls = Vec::new();
    let mut target = Target {
        parser: None,
        side: Side::Client,
        calls: &mut calls,
    };
    let cut = Segment {
        seq: 1,
        payload_len: 100,
        skipped: 0,
        data: b"abcd",
        ts: 1,
    };
    stream.segment(&cut, &mut target);
    let mut parser = Recorder::default();
    let mut target = Target {
        parser: Some(&mut parser),
        side: Side::Client,
        calls: &mut calls,
    };
    stream.flush(2, &mut target);
    assert_eq!(parser.fed(), b"abcd");
    assert_eq!(parser.gaps(), [96]);
    assert_eq!((stream.stats.gaps, stream.stats.gap_bytes), (1, 96));
}

#[test]
fn bytes_lost_while_detecting_then_more_bytes_drop_the_buffer() {
    let mut stream = Stream::new(StreamLimits::default());
    let mut calls = Vec::new();
    let mut target = Target {
        parser: None,
        side: Side::Client,
        calls: &mut calls,
    };
    for (seq, payload_len, data) in [(1, 100, &b"abcd"[..]), (101, 4, b"efgh")] {
        let segment = Segment {
            seq,
            payload_len,
            skipped: 0,
            data,
            ts: 1,
        };
        stream.segment(&segment, &mut target);
    }
    assert_eq!(stream.buffered(), b"efgh");
    assert_eq!((stream.stats.gaps, stream.stats.gap_bytes), (1, 96));
}

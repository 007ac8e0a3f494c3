//! HPACK (RFC 7541) for a passive observer that may have missed part of the conversation.
//!
//! `loona-hpack` does the decoding (integers, Huffman strings, the static and dynamic tables). On its
//! own it stops at the first field that refers to a dynamic-table entry it never saw, which is the
//! normal case on a connection joined in the middle. So this wrapper frames the header block itself
//! (each field representation's extent is known from its integer and string prefixes without decoding
//! them) and hands the representations to the decoder one at a time:
//!
//! - a field the decoder can resolve is passed on;
//! - a field it cannot resolve (unknown index, undecodable string) is left out, and the block is
//!   reported incomplete: never guessed;
//! - a literal "with incremental indexing" it cannot resolve still takes a dynamic-table slot at the
//!   sender: an entry with a placeholder name is inserted in its place, so that later indices keep
//!   pointing at the entries the sender means. Fields that resolve to a placeholder are left out too.
//!
//! Why the table stays correct: after a fresh start (or a `reset` after lost bytes), every insertion
//! the sender makes is mirrored by exactly one insertion here, so the entries here are the sender's most
//! recent ones, in the same positions. Entries the sender made before are simply missing, and indices
//! that reach past the entries here are the unknown ones. The sizes of placeholders differ from the
//! sender's entries, so eviction may happen earlier or later here than there: earlier only loses an
//! entry, later keeps one the sender no longer refers to.
//!
//! Bounded: the dynamic table never grows past `MAX_TABLE_SIZE`, whatever size SETTINGS or a size
//! update asks for (a smaller table only forgets entries sooner).

/// The largest dynamic table kept per direction, whatever the peers agree on.
pub const MAX_TABLE_SIZE: usize = 64 * 1024;
/// `SETTINGS_HEADER_TABLE_SIZE` before any SETTINGS frame.
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// Name of an entry that stands for one the sender inserted but podtap could not decode. A NUL byte
/// can never appear in a real field name.
const PLACEHOLDER: &[u8] = b"\0podtap-unknown";

/// How much of a header block decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every field decoded.
    Complete,
    /// Some fields referred to entries podtap never saw (or did not decode); the others were passed on.
    Partial,
}

/// The decoder of the header blocks one endpoint sends.
pub struct HpackDecoder {
    inner: loona_hpack::Decoder<'static>,
    /// The table size the sender may use (the receiver's `SETTINGS_HEADER_TABLE_SIZE`), capped.
    limit: usize,
}

impl std::fmt::Debug for HpackDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HpackDecoder")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Default for HpackDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// One field representation of a block (RFC 7541 section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Repr {
    Indexed,
    /// Literal with incremental indexing; `value_at` is where its value string starts.
    Incremental {
        value_at: usize,
    },
    /// Literal without indexing or never indexed.
    Literal,
    SizeUpdate(usize),
}

impl HpackDecoder {
    #[must_use]
    pub fn new() -> Self {
        let mut this = Self {
            inner: loona_hpack::Decoder::new(),
            limit: DEFAULT_TABLE_SIZE,
        };
        this.inner.set_max_table_size(DEFAULT_TABLE_SIZE);
        this
    }

    /// The receiver's `SETTINGS_HEADER_TABLE_SIZE`: the most the sender may use (capped).
    pub fn set_limit(&mut self, size: u32) {
        self.limit = (size as usize).min(MAX_TABLE_SIZE);
        // A smaller limit applies at once: the sender must shrink its table (with a size update in its
        // next block) before it refers to anything again.
        self.inner.set_max_table_size(self.limit);
    }

    /// The table size in force (what SETTINGS allow, capped).
    #[must_use]
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes of this direction were lost (or a block could not be framed): its table insertions are
    /// unknown, so the whole table is forgotten.
    pub fn reset(&mut self) {
        self.inner = loona_hpack::Decoder::new();
        self.inner.set_max_table_size(self.limit);
    }

    /// Decodes one complete header block, calling `field` with each field that decoded.
    pub fn decode(&mut self, block: &[u8], mut field: impl FnMut(&[u8], &[u8])) -> Outcome {
        let mut outcome = Outcome::Complete;
        let mut at = 0;
        while at < block.len() {
            let Some((repr, len)) = frame_repr(&block[at..]) else {
                // The rest cannot be framed: its insertions are unknown.
                self.reset();
                return Outcome::Partial;
            };
            let bytes = &block[at..at + len];
            at += len;
            match repr {
                Repr::SizeUpdate(size) => self.inner.set_max_table_size(size.min(self.limit)),
                Repr::Indexed | Repr::Literal | Repr::Incremental { .. } => {
                    let mut known = true;
                    let decoded = self.inner.decode_with_cb(bytes, |name, value| {
                        if name.as_ref() == PLACEHOLDER {
                            known = false;
                        } else {
                            field(&name, &value);
                        }
                    });
                    if decoded.is_err() || !known {
                        outcome = Outcome::Partial;
                    }
                    if let (Err(_), Repr::Incremental { value_at }) = (decoded, repr) {
                        self.insert_placeholder(&bytes[value_at..]);
                    }
                }
            }
        }
        outcome
    }

    /// Inserts an entry with the placeholder name and, if it decodes, the value the sender gave.
    fn insert_placeholder(&mut self, value: &[u8]) {
        let mut repr = vec![0x40, PLACEHOLDER.len() as u8];
        repr.extend_from_slice(PLACEHOLDER);
        let with_value = [repr.as_slice(), value].concat();
        if self.inner.decode_with_cb(&with_value, |_, _| {}).is_err() {
            repr.push(0); // empty value
            let _ = self.inner.decode_with_cb(&repr, |_, _| {});
        }
    }
}

/// The kind and byte length of the representation at the start of `b`; `None` if it runs past the end.
fn frame_repr(b: &[u8]) -> Option<(Repr, usize)> {
    let first = *b.first()?;
    if first & 0x80 != 0 {
        let (_, len) = integer(b, 7)?;
        return Some((Repr::Indexed, len));
    }
    if first & 0xe0 == 0x20 {
        let (size, len) = integer(b, 5)?;
        return Some((Repr::SizeUpdate(size), len));
    }
    let incremental = first & 0xc0 == 0x40;
    let prefix = if incremental { 6 } else { 4 };
    let (name_index, mut len) = integer(b, prefix)?;
    if name_index == 0 {
        len += string(&b[len..])?;
    }
    let value_at = len;
    len += string(&b[len..])?;
    let repr = if incremental {
        Repr::Incremental { value_at }
    } else {
        Repr::Literal
    };
    Some((repr, len))
}

/// An HPACK integer with an N-bit prefix: its value and byte length.
fn integer(b: &[u8], prefix: u8) -> Option<(usize, usize)> {
    let mask = (1u16 << prefix) as u8 - 1;
    let first = b.first()? & mask;
    if first < mask {
        return Some((first as usize, 1));
    }
    let mut value = mask as usize;
    let mut shift = 0u32;
    for (i, &byte) in b.iter().enumerate().skip(1) {
        // Four continuation bytes reach 2^28: more than any real length or index.
        if shift > 21 {
            return None;
        }
        value += ((byte & 0x7f) as usize) << shift;
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
        shift += 7;
    }
    None
}

/// The byte length of the string literal at the start of `b` (length prefix and octets).
fn string(b: &[u8]) -> Option<usize> {
    let (len, prefix) = integer(b, 7)?;
    let end = prefix.checked_add(len)?;
    (end <= b.len()).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(decoder: &mut HpackDecoder, block: &[u8]) -> (Vec<(String, String)>, Outcome) {
        let mut out = Vec::new();
        let outcome = decoder.decode(block, |n, v| {
            out.push((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            ));
        });
        (out, outcome)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn rfc7541_c3_requests_without_huffman() {
        // RFC 7541 appendix C.3: three requests on one connection.
        let mut d = HpackDecoder::new();
        let first = hex("828684410f7777772e6578616d706c652e636f6d");
        let second = hex("828684be58086e6f2d6361636865");
        let third = hex("828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565");
        assert_eq!(
            fields(&mut d, &first),
            (
                pairs(&[
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/"),
                    (":authority", "www.example.com")
                ]),
                Outcome::Complete
            )
        );
        assert_eq!(
            fields(&mut d, &second).0,
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache")
            ])
        );
        assert_eq!(
            fields(&mut d, &third).0,
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value")
            ])
        );
    }

    #[test]
    fn joined_mid_connection_keeps_what_decodes_and_invents_nothing() {
        // The second and third blocks of C.3 without the first: index 62 (`:authority`) was inserted
        // by the block podtap missed.
        let mut d = HpackDecoder::new();
        let second = hex("828684be58086e6f2d6361636865");
        let third = hex("828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565");
        assert_eq!(
            fields(&mut d, &second),
            (
                pairs(&[
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/"),
                    ("cache-control", "no-cache")
                ]),
                Outcome::Partial
            )
        );
        // `cache-control: no-cache` was inserted by the second block (with a static name index), so
        // it is known now: index 63 (bf) is the first block's `:authority`, still unknown, and the
        // sender's index 62 is `cache-control`.
        let (third_fields, outcome) = fields(&mut d, &third);
        assert_eq!(outcome, Outcome::Partial);
        assert_eq!(
            third_fields,
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                ("custom-key", "custom-value")
            ])
        );
        // A fourth block referring to 62 (custom-key), 63 (cache-control) and 64 (the unknown entry).
        let fourth = [0xbe, 0xbf, 0xc0];
        assert_eq!(
            fields(&mut d, &fourth),
            (
                pairs(&[
                    ("custom-key", "custom-value"),
                    ("cache-control", "no-cache")
                ]),
                Outcome::Partial
            )
        );
    }

    #[test]
    fn unknown_name_index_with_incremental_indexing_keeps_its_slot() {
        let mut d = HpackDecoder::new();
        // Literal with incremental indexing, name index 62 (unknown), value "v1"; then an indexed
        // reference to 62 (that placeholder), then a literal `x: y` with incremental indexing and a
        // reference to 63 (the placeholder, now second newest).
        let mut block = vec![0x40 | 62, 2, b'v', b'1', 0x80 | 62];
        block.extend([0x40, 1, b'x', 1, b'y', 0x80 | 63, 0x80 | 62]);
        let (got, outcome) = fields(&mut d, &block);
        assert_eq!(outcome, Outcome::Partial);
        assert_eq!(got, pairs(&[("x", "y"), ("x", "y")]));
    }

    #[test]
    fn size_updates_are_capped() {
        let mut d = HpackDecoder::new();
        d.set_limit(u32::MAX);
        assert_eq!(d.limit, MAX_TABLE_SIZE);
        // Size update to 2^21 (past the cap), then a literal to index.
        let mut block = vec![0x3f, 0xe1, 0xff, 0x7f];
        block.extend([0x40, 1, b'a', 1, b'b', 0xbe]);
        let (got, outcome) = fields(&mut d, &block);
        assert_eq!(outcome, Outcome::Complete);
        assert_eq!(got, pairs(&[("a", "b"), ("a", "b")]));
    }

    #[test]
    fn cut_blocks_and_garbage_do_not_panic() {
        let third = hex("828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565");
        for cut in 0..third.len() {
            let mut d = HpackDecoder::new();
            let _ = fields(&mut d, &third[..cut]);
        }
        let mut state = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut d = HpackDecoder::new();
            let block: Vec<u8> = (0..64)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            let _ = fields(&mut d, &block);
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }
}

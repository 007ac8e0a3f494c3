//! The 9-byte HTTP/2 frame header (RFC 9113 section 4.1), the client connection preface, and the
//! plausibility tests used to find frame boundaries in a stream joined in the middle.

/// What a client sends first on a prior-knowledge (or upgraded) HTTP/2 connection.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Bytes of a frame header.
pub const HEADER_LEN: usize = 9;

/// The largest payload a peer may send before it learns a larger `SETTINGS_MAX_FRAME_SIZE`.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const FLAG_END_STREAM: u8 = 0x1;
/// `SETTINGS` and `PING`.
pub const FLAG_ACK: u8 = 0x1;
pub const FLAG_END_HEADERS: u8 = 0x4;
pub const FLAG_PADDED: u8 = 0x8;
pub const FLAG_PRIORITY: u8 = 0x20;

/// `SETTINGS` identifiers podtap reads.
pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

/// One frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length (24 bits).
    pub length: u32,
    pub kind: u8,
    pub flags: u8,
    /// Stream identifier (31 bits).
    pub stream: u32,
    /// The reserved bit before the stream identifier (must be 0).
    pub reserved: bool,
}

impl FrameHeader {
    /// Parses the first 9 bytes of `b`; `None` when fewer are there.
    #[must_use]
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        let raw_stream = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
        Some(Self {
            length: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: raw_stream & 0x7fff_ffff,
            reserved: raw_stream & 0x8000_0000 != 0,
        })
    }

    /// The 9 bytes of this header (tests and fixtures build frames with it).
    #[must_use]
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let l = self.length.to_be_bytes();
        let s = (self.stream | if self.reserved { 0x8000_0000 } else { 0 }).to_be_bytes();
        [
            l[1], l[2], l[3], self.kind, self.flags, s[0], s[1], s[2], s[3],
        ]
    }

    #[must_use]
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Whether the type is one RFC 9113 defines.
    #[must_use]
    pub fn known_type(&self) -> bool {
        self.kind <= CONTINUATION
    }

    /// Whether this header breaks a rule every correct peer follows, whatever its settings: the stream
    /// identifier a type requires (zero or not), the fixed payload lengths, a length within `max_len`.
    /// Frames of unknown types pass (a receiver must ignore them). A connection whose parser meets a
    /// violation has lost its frame boundaries.
    #[must_use]
    pub fn violates(&self, max_len: u32) -> bool {
        if self.length > max_len {
            return true;
        }
        let zero = self.stream == 0;
        match self.kind {
            DATA | HEADERS | CONTINUATION | PUSH_PROMISE => zero,
            PRIORITY => zero || self.length != 5,
            RST_STREAM => zero || self.length != 4,
            SETTINGS => {
                !zero || !self.length.is_multiple_of(6) || (self.has(FLAG_ACK) && self.length != 0)
            }
            PING => !zero || self.length != 8,
            GOAWAY => !zero || self.length < 8,
            WINDOW_UPDATE => self.length != 4,
            _ => false,
        }
    }

    /// The strict form used where frame boundaries are guessed (detection, resynchronisation): a defined
    /// type, only the flags that type defines, the reserved bit clear, a payload within the default
    /// maximum frame size, and none of `violates`' faults. Senders leave undefined flags and the reserved
    /// bit unset, so real frames pass; a random 9 bytes passes about once in a million.
    #[must_use]
    pub fn plausible(&self) -> bool {
        if !self.known_type() || self.reserved || self.violates(DEFAULT_MAX_FRAME_SIZE) {
            return false;
        }
        let defined = match self.kind {
            DATA => FLAG_END_STREAM | FLAG_PADDED,
            HEADERS => FLAG_END_STREAM | FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY,
            SETTINGS | PING => FLAG_ACK,
            PUSH_PROMISE => FLAG_END_HEADERS | FLAG_PADDED,
            CONTINUATION => FLAG_END_HEADERS,
            _ => 0,
        };
        self.flags & !defined == 0
    }
}

/// How a run of bytes that should start at a frame boundary looks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    /// Plausible headers read back to back from the start.
    pub frames: usize,
    /// The last frame ends exactly where the bytes end.
    pub ends_exactly: bool,
    /// A header that is not plausible was met (at a place where a header must be).
    pub broken: bool,
    /// Offsets of the complete frames, with their headers.
    pub complete: Vec<(usize, FrameHeader)>,
}

/// Reads frame headers back to back from the start of `data` while they are plausible.
#[must_use]
pub fn chain(data: &[u8]) -> Chain {
    let mut out = Chain::default();
    let mut at = 0;
    while let Some(header) = FrameHeader::parse(&data[at..]) {
        if !header.plausible() {
            out.broken = true;
            return out;
        }
        out.frames += 1;
        let end = at + HEADER_LEN + header.length as usize;
        if end > data.len() {
            return out;
        }
        out.complete.push((at, header));
        at = end;
        if at == data.len() {
            out.ends_exactly = true;
            return out;
        }
    }
    out
}

/// Where a frame seems to start in `data` (after lost bytes): the first offset whose header is plausible
/// and is followed either by another plausible header or by the exact end of `data`. `Err(at)`: nothing
/// before `at` can start a frame, and whether `at` does needs more bytes.
pub fn find_boundary(data: &[u8]) -> Result<usize, usize> {
    for at in 0..data.len() {
        let Some(header) = FrameHeader::parse(&data[at..]) else {
            return Err(at);
        };
        if !header.plausible() {
            continue;
        }
        let next = at + HEADER_LEN + header.length as usize;
        if next == data.len() {
            return Ok(at);
        }
        match FrameHeader::parse(data.get(next..).unwrap_or_default()) {
            Some(following) if following.plausible() => return Ok(at),
            Some(_) => {}
            None => return Err(at),
        }
    }
    Err(data.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(length: u32, kind: u8, flags: u8, stream: u32) -> FrameHeader {
        FrameHeader {
            length,
            kind,
            flags,
            stream,
            reserved: false,
        }
    }

    #[test]
    fn parses_and_encodes() {
        let h = header(0x01_02_03, HEADERS, 0x25, 0x7fff_fffe);
        let bytes = h.encode();
        assert_eq!(bytes, [1, 2, 3, 1, 0x25, 0x7f, 0xff, 0xff, 0xfe]);
        assert_eq!(FrameHeader::parse(&bytes), Some(h));
        let mut reserved = bytes;
        reserved[5] |= 0x80;
        let r = FrameHeader::parse(&reserved).expect("9 bytes");
        assert!(r.reserved);
        assert_eq!(r.stream, 0x7fff_fffe);
        assert_eq!(FrameHeader::parse(&bytes[..8]), None);
    }

    #[test]
    fn plausibility() {
        assert!(header(18, SETTINGS, 0, 0).plausible());
        assert!(header(0, SETTINGS, FLAG_ACK, 0).plausible());
        assert!(!header(6, SETTINGS, FLAG_ACK, 0).plausible());
        assert!(!header(7, SETTINGS, 0, 0).plausible());
        assert!(!header(18, SETTINGS, 0, 1).plausible());
        assert!(header(100, HEADERS, 0x25, 1).plausible());
        assert!(!header(100, HEADERS, 0x02, 1).plausible());
        assert!(!header(100, HEADERS, 0x04, 0).plausible());
        assert!(!header(16_385, DATA, 0, 1).plausible());
        assert!(header(4, WINDOW_UPDATE, 0, 0).plausible());
        assert!(!header(5, WINDOW_UPDATE, 0, 0).plausible());
        assert!(!header(4, 0x0a, 0, 0).plausible());
        let mut r = header(8, PING, 0, 0);
        assert!(r.plausible());
        r.reserved = true;
        assert!(!r.plausible());
        // Parsing (not guessing) accepts larger frames and unknown types.
        assert!(!header(100_000, DATA, 0, 1).violates(1 << 20));
        assert!(!header(3, 0x0a, 0xff, 0).violates(DEFAULT_MAX_FRAME_SIZE));
    }

    #[test]
    fn chains_and_boundaries() {
        let mut data = header(4, WINDOW_UPDATE, 0, 0).encode().to_vec();
        data.extend([0, 0, 1, 0]);
        data.extend(header(8, PING, 0, 0).encode());
        data.extend([0; 8]);
        let c = chain(&data);
        assert_eq!((c.frames, c.ends_exactly, c.broken), (2, true, false));
        assert_eq!(c.complete.len(), 2);
        let c = chain(&data[..25]);
        assert_eq!((c.frames, c.ends_exactly, c.broken), (2, false, false));
        let mut junk = vec![0xffu8; 5];
        junk.extend(&data);
        assert_eq!(find_boundary(&junk), Ok(5));
        assert_eq!(find_boundary(&junk[..10]), Err(2));
        assert!(chain(&junk).broken);
    }
}

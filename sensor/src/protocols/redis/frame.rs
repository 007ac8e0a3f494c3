//! RESP2 and RESP3 frames of one side of a connection, read incrementally.
//!
//! In: the side's bytes as they arrive. Out: one `Frame` summary per top-level frame (its type, error
//! text, element count and first elements), or `Lost` where bytes were malformed or missing. Values are
//! never kept whole: `redis-protocol` decodes what is already complete (scalars, small bulk strings, whole
//! aggregates) as ranges into the offered bytes, and only the first few elements' short texts are copied.
//! An aggregate that is not complete yet is walked element by element (its header is parsed here), so
//! nothing waits for a large reply to arrive whole; a bulk string (or verbatim string, blob error,
//! streamed chunk) whose header announces more than `SKIP_ABOVE` bytes is not read at all: its payload
//! becomes a skip, which the flow layer passes on to the kernel so it stops copying those bytes. Client
//! sides also accept inline commands (`PING\r\n`).

use redis_protocol::{resp2, resp3};

use crate::model::{Side, UnixNanos};
use crate::protocols::Feed;

/// Bulk payloads longer than this are skipped instead of read (the values are never exported; only
/// names, keys and channels are, and those are short).
pub(super) const SKIP_ABOVE: u64 = 1024;
/// Longest element text kept (command names, keys, channels, push kinds); longer ones are `Other`.
pub(super) const MAX_TEXT: usize = 256;
/// Longest error text kept.
const MAX_ERROR: usize = 256;
/// First elements of a top-level frame kept: command name, subcommand or key, key; push kind, channel,
/// count.
pub(super) const HEAD: usize = 3;
/// A header line, simple string or inline command longer than this (without its CRLF) is malformed.
/// redis-server's own limit for inline commands is 64 KiB; podtap keeps less per direction.
const MAX_LINE: usize = 16 * 1024;
/// Aggregates nested deeper than this are malformed.
const MAX_DEPTH: usize = 64;
/// Element counts and bulk lengths above this are malformed (redis-server's `proto-max-bulk-len` is at
/// most a few GiB; counts are far smaller).
const MAX_LEN: i64 = 1 << 32;

/// The type of a top-level frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Simple,
    Error,
    Integer,
    Bulk,
    Array,
    Null,
    Map,
    Set,
    Push,
    Double,
    Boolean,
    Verbatim,
    BigNumber,
    /// An inline command (client side only).
    Inline,
}

impl Kind {
    /// The reply type name of the call record.
    pub(super) fn name(self) -> &'static str {
        match self {
            Kind::Simple => "simple",
            Kind::Error => "error",
            Kind::Integer => "integer",
            Kind::Bulk => "bulk",
            Kind::Array | Kind::Inline => "array",
            Kind::Null => "null",
            Kind::Map => "map",
            Kind::Set => "set",
            Kind::Push => "push",
            Kind::Double => "double",
            Kind::Boolean => "boolean",
            Kind::Verbatim => "verbatim",
            Kind::BigNumber => "big_number",
        }
    }

    fn aggregate(type_byte: u8) -> Option<Kind> {
        match type_byte {
            b'*' => Some(Kind::Array),
            b'%' => Some(Kind::Map),
            b'~' => Some(Kind::Set),
            b'>' => Some(Kind::Push),
            _ => None,
        }
    }
}

/// One element of a frame, as far as it is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Scalar {
    /// A bulk or simple string of at most `MAX_TEXT` bytes.
    Text(Vec<u8>),
    Integer(i64),
    /// Anything else (aggregates, long or skipped strings, other types).
    Other,
}

impl Scalar {
    pub(super) fn text(&self) -> Option<&[u8]> {
        match self {
            Scalar::Text(text) => Some(text),
            _ => None,
        }
    }

    fn from_bytes(bytes: &[u8]) -> Scalar {
        if bytes.len() <= MAX_TEXT {
            Scalar::Text(bytes.to_vec())
        } else {
            Scalar::Other
        }
    }
}

/// A complete top-level frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Frame {
    pub kind: Kind,
    /// The text of an error reply (at most `MAX_ERROR` bytes).
    pub error: Option<Vec<u8>>,
    /// Elements of an aggregate (entries of a map), arguments of an inline command.
    pub elements: u64,
    /// The first `HEAD` elements (none for maps and sets).
    pub head: Vec<Scalar>,
    /// When its first byte was seen.
    pub start: UnixNanos,
    /// When its last byte was seen.
    pub end: UnixNanos,
}

/// What reading produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Event {
    Frame(Frame),
    /// Malformed bytes: the side resynchronises on what follows.
    Lost,
}

/// An element (or a whole top-level value) once complete.
#[derive(Debug)]
struct Value {
    kind: Kind,
    scalar: Scalar,
    error: Option<Vec<u8>>,
    elements: u64,
    head: Vec<Scalar>,
}

impl Value {
    fn new(kind: Kind, scalar: Scalar) -> Self {
        Self {
            kind,
            scalar,
            error: None,
            elements: 0,
            head: Vec::new(),
        }
    }

    fn error(text: &[u8]) -> Self {
        Self {
            error: Some(text[..text.len().min(MAX_ERROR)].to_vec()),
            ..Self::new(Kind::Error, Scalar::Other)
        }
    }

    fn aggregate(kind: Kind, elements: u64, head: Vec<Scalar>) -> Self {
        Self {
            elements,
            head,
            ..Self::new(kind, Scalar::Other)
        }
    }
}

/// An aggregate whose elements are still arriving.
#[derive(Debug)]
struct Level {
    kind: Kind,
    /// Elements still to come; `None`: streamed (`*?`), until the `.` end marker.
    remaining: Option<u64>,
    /// An attribute (`|`): it describes the value after it and is no element of its own.
    attribute: bool,
    /// A streamed string (`$?`): `;` chunks until an empty one.
    chunks: bool,
}

/// The top-level frame being read element by element.
#[derive(Debug)]
struct Top {
    start: UnixNanos,
    /// Known once its header (past any attribute) was read.
    kind: Option<Kind>,
    elements: u64,
    head: Vec<Scalar>,
}

/// Where reading stands between frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Ready,
    /// The payload of a long bulk string (of this kind) is being skipped.
    Skipping(Kind),
    /// A streamed string chunk is being skipped.
    SkippingChunk,
    /// Looking for the start of the next frame.
    Resync,
}

/// What one element's bytes hold.
enum Step {
    /// A complete value in the first `usize` bytes.
    Value(usize, Value),
    /// An aggregate header of `usize` bytes: its elements follow one by one.
    Open(usize, Level),
    /// A bulk header of `usize` bytes whose payload (and CRLF, `u64` bytes) is skipped.
    Skip(usize, u64, Kind),
    /// A streamed chunk header whose payload is skipped.
    SkipChunk(usize, u64),
    /// The `.` (or empty-chunk) end of a streamed aggregate or string, `usize` bytes.
    End(usize),
    /// Bytes that are nothing to be ignored (a line between frames).
    Nothing(usize),
    Incomplete,
    Malformed,
}

/// One side's frame reader.
#[derive(Debug)]
pub(super) struct Reader {
    side: Side,
    /// Decode with RESP3 rules (set by the parser after `HELLO 3`, or by the first RESP3-only type byte).
    pub resp3: bool,
    state: State,
    stack: Vec<Level>,
    top: Option<Top>,
    pub malformed: u64,
}

impl Reader {
    pub(super) fn new(side: Side) -> Self {
        Self {
            side,
            resp3: false,
            state: State::Ready,
            stack: Vec::new(),
            top: None,
            malformed: 0,
        }
    }

    /// Between two top-level frames (nothing of one has been consumed).
    pub(super) fn idle(&self) -> bool {
        self.state == State::Ready && self.top.is_none()
    }

    /// The type of the top-level frame whose start was read and whose end was not (a reply cut short
    /// by the end of the connection).
    pub(super) fn in_progress(&self) -> Option<Kind> {
        self.top.as_ref().and_then(|top| top.kind)
    }

    /// Bytes were lost: drop the frame in progress and look for the next one.
    pub(super) fn lost(&mut self) {
        self.stack.clear();
        self.top = None;
        self.state = State::Resync;
    }

    /// Reads from `data` up to the end of the first complete frame (or malformed bytes), which goes to
    /// `out`: the parser handles each frame before the next is read (a `HELLO` reply changes how the
    /// next is decoded).
    pub(super) fn read(&mut self, data: &[u8], ts: UnixNanos, out: &mut Vec<Event>) -> Feed {
        if matches!(self.state, State::Skipping(_) | State::SkippingChunk) {
            // The flow layer feeds no skipped byte: the skip ended without `skip_done` (a gap).
            self.lost();
        }
        let mut consumed = 0;
        while consumed < data.len() {
            let rest = &data[consumed..];
            if self.state == State::Resync {
                match self.resync(rest) {
                    Some(at) => {
                        consumed += at;
                        self.state = State::Ready;
                    }
                    None => {
                        // Keep a short tail: a frame start may be split across deliveries.
                        consumed += rest.len().saturating_sub(32);
                        break;
                    }
                }
                continue;
            }
            let step = if self.top.is_none() && self.side == Side::Client && rest[0] != b'*' {
                inline(rest)
            } else {
                self.step(rest)
            };
            match step {
                Step::Value(n, value) => {
                    consumed += n;
                    self.begin(ts, None);
                    self.add(value, ts, out);
                }
                Step::Open(n, level) => {
                    consumed += n;
                    self.open(level, ts, out);
                }
                Step::Skip(n, skip, kind) => {
                    consumed += n;
                    self.begin(ts, Some((kind, 0)));
                    self.state = State::Skipping(kind);
                    return Feed { consumed, skip };
                }
                Step::SkipChunk(n, skip) => {
                    consumed += n;
                    self.state = State::SkippingChunk;
                    return Feed { consumed, skip };
                }
                Step::End(n) => {
                    consumed += n;
                    self.end_streamed(ts, out);
                }
                Step::Nothing(n) => consumed += n,
                Step::Incomplete => break,
                Step::Malformed => {
                    self.malformed += 1;
                    self.lost();
                    out.push(Event::Lost);
                    consumed += 1;
                }
            }
            if !out.is_empty() {
                break;
            }
        }
        Feed { consumed, skip: 0 }
    }

    /// The skip requested by the last `read` is over: the skipped value is complete.
    pub(super) fn skip_done(&mut self, ts: UnixNanos, out: &mut Vec<Event>) {
        match self.state {
            State::Skipping(kind) => {
                self.state = State::Ready;
                let value = if kind == Kind::Error {
                    Value::error(b"")
                } else {
                    Value::new(kind, Scalar::Other)
                };
                self.add(value, ts, out);
            }
            State::SkippingChunk => self.state = State::Ready,
            State::Ready | State::Resync => {}
        }
    }

    /// Starts a top-level frame at `ts` unless one is in progress; `aggregate` is its kind and element
    /// count when it is read element by element.
    fn begin(&mut self, ts: UnixNanos, aggregate: Option<(Kind, u64)>) {
        if self.top.is_none() {
            self.top = Some(Top {
                start: ts,
                kind: None,
                elements: 0,
                head: Vec::new(),
            });
        }
        if let (Some(top), Some((kind, elements)), true) =
            (&mut self.top, aggregate, self.stack.is_empty())
        {
            top.kind = Some(kind);
            top.elements = elements;
        }
    }

    fn open(&mut self, level: Level, ts: UnixNanos, out: &mut Vec<Event>) {
        let elements = level
            .remaining
            .map_or(0, |n| if level.kind == Kind::Map { n / 2 } else { n });
        if !level.attribute {
            self.begin(ts, Some((level.kind, elements)));
        } else {
            self.begin(ts, None);
        }
        if level.remaining == Some(0) {
            if !level.attribute {
                self.add(Value::aggregate(level.kind, 0, Vec::new()), ts, out);
            }
            return;
        }
        self.stack.push(level);
    }

    /// A value is complete: it is an element of the innermost open aggregate, or the top-level frame.
    fn add(&mut self, mut value: Value, ts: UnixNanos, out: &mut Vec<Event>) {
        loop {
            let depth = self.stack.len();
            let Some(level) = self.stack.last_mut() else {
                let start = self.top.take().map_or(ts, |top| top.start);
                out.push(Event::Frame(Frame {
                    kind: value.kind,
                    error: value.error,
                    elements: value.elements,
                    head: value.head,
                    start,
                    end: ts,
                }));
                return;
            };
            if depth == 1 && !level.attribute {
                if let Some(top) = &mut self.top {
                    if level.remaining.is_none() {
                        top.elements += 1;
                    }
                    if top.head.len() < HEAD && !matches!(top.kind, Some(Kind::Map | Kind::Set)) {
                        top.head.push(value.scalar);
                    }
                }
            }
            match &mut level.remaining {
                Some(n) => {
                    *n = n.saturating_sub(1);
                    if *n > 0 {
                        return;
                    }
                }
                None => return,
            }
            let Some(done) = self.stack.pop() else { return };
            if done.attribute {
                // The attribute describes the value that follows; that value is the element.
                return;
            }
            value = self.completed(done);
        }
    }

    /// The value an aggregate read element by element stands for once its last element arrived.
    fn completed(&mut self, level: Level) -> Value {
        if self.stack.is_empty() {
            if let Some(top) = &mut self.top {
                let elements = if level.remaining.is_none() && top.kind == Some(Kind::Map) {
                    top.elements / 2 // streamed: counted element by element
                } else {
                    top.elements
                };
                return Value::aggregate(
                    top.kind.unwrap_or(Kind::Null),
                    elements,
                    std::mem::take(&mut top.head),
                );
            }
        }
        Value::new(level.kind, Scalar::Other)
    }

    /// The end marker of the innermost streamed aggregate or string.
    fn end_streamed(&mut self, ts: UnixNanos, out: &mut Vec<Event>) {
        if let Some(level) = self.stack.pop() {
            let value = self.completed(level);
            self.add(value, ts, out);
        }
    }

    /// Reads one element (or a whole top-level value) at the start of `rest`.
    fn step(&mut self, rest: &[u8]) -> Step {
        if self.stack.last().is_some_and(|level| level.chunks) {
            return chunk(rest);
        }
        let (line, header) = match line(rest) {
            Ok(found) => found,
            Err(step) => return step,
        };
        let Some((&type_byte, text)) = line.split_first() else {
            return Step::Malformed; // a bare CRLF
        };
        if self.side == Side::Server && is_resp3_only(type_byte) {
            self.resp3 = true;
        }
        if self.stack.len() >= MAX_DEPTH {
            return Step::Malformed;
        }
        match type_byte {
            b'*' | b'%' | b'~' | b'>' | b'|' => {
                let attribute = type_byte == b'|';
                let kind = Kind::aggregate(type_byte).unwrap_or(Kind::Map);
                let per_entry = if matches!(type_byte, b'%' | b'|') {
                    2
                } else {
                    1
                };
                if text == b"?" && matches!(type_byte, b'*' | b'%' | b'~') {
                    return Step::Open(
                        header,
                        Level {
                            kind,
                            remaining: None,
                            attribute,
                            chunks: false,
                        },
                    );
                }
                let Some(count) = length(text) else {
                    return Step::Malformed;
                };
                if count < 0 {
                    return if count == -1 && type_byte == b'*' {
                        Step::Value(header, Value::new(Kind::Null, Scalar::Other))
                    } else {
                        Step::Malformed
                    };
                }
                let count = count.unsigned_abs();
                // The crate decodes nested aggregates recursively: it only gets ones that cannot nest
                // deeper than this reader allows.
                let whole = if nesting_bound(rest) <= MAX_DEPTH {
                    self.decode(rest)
                } else {
                    Err(())
                };
                match whole {
                    // An attribute decoded whole comes with the value it describes: that value is
                    // what the step read.
                    Ok(Some((mut value, n))) => {
                        if !attribute {
                            // The header's count: the crate's maps merge duplicate keys.
                            value.elements = count;
                        }
                        Step::Value(n, value)
                    }
                    // Not complete yet, or not something the crate takes whole (a map keyed by an
                    // aggregate): read it element by element.
                    _ => Step::Open(
                        header,
                        Level {
                            kind,
                            remaining: Some(count * per_entry),
                            attribute,
                            chunks: false,
                        },
                    ),
                }
            }
            b'$' | b'=' | b'!' => {
                let kind = match type_byte {
                    b'$' => Kind::Bulk,
                    b'=' => Kind::Verbatim,
                    _ => Kind::Error,
                };
                if text == b"?" && type_byte == b'$' {
                    return Step::Open(
                        header,
                        Level {
                            kind,
                            remaining: None,
                            attribute: false,
                            chunks: true,
                        },
                    );
                }
                match length(text) {
                    Some(-1) if type_byte == b'$' => {
                        Step::Value(header, Value::new(Kind::Null, Scalar::Other))
                    }
                    Some(len) if len >= 0 && len.unsigned_abs() > SKIP_ABOVE => {
                        Step::Skip(header, len.unsigned_abs() + 2, kind)
                    }
                    Some(len) if len >= 0 => self.decode_step(rest),
                    _ => Step::Malformed,
                }
            }
            b'.' if text.is_empty() && self.stack.last().is_some_and(|l| l.remaining.is_none()) => {
                Step::End(header)
            }
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => self.decode_step(rest),
            _ => Step::Malformed,
        }
    }

    fn decode_step(&self, rest: &[u8]) -> Step {
        match self.decode(rest) {
            Ok(Some((value, n))) => Step::Value(n, value),
            Ok(None) => Step::Incomplete,
            Err(()) => Step::Malformed,
        }
    }

    /// One complete value at the start of `rest` through `redis-protocol`; `None`: not complete yet.
    fn decode(&self, rest: &[u8]) -> Result<Option<(Value, usize)>, ()> {
        if self.resp3 {
            match resp3::decode::complete::decode_range(rest) {
                Ok(Some((frame, n))) => Ok(Some((value3(rest, &frame), n))),
                Ok(None) => Ok(None),
                Err(_) => Err(()),
            }
        } else {
            match resp2::decode::decode_range(rest) {
                Ok(Some((frame, n))) => Ok(Some((value2(rest, &frame), n))),
                Ok(None) => Ok(None),
                Err(_) => Err(()),
            }
        }
    }

    /// Where the next frame of this side starts in `data` (after lost bytes): a command header
    /// (`*N\r\n$`) at a line start on the client side, a reply header line at a line start on the server.
    fn resync(&self, data: &[u8]) -> Option<usize> {
        let starts = std::iter::once(0).chain(
            data.windows(2)
                .enumerate()
                .filter(|(_, w)| *w == b"\r\n")
                .map(|(i, _)| i + 2),
        );
        for at in starts {
            let rest = &data[at..];
            let found = match self.side {
                Side::Client => super::command_header(rest),
                Side::Server => super::reply_header(rest),
            };
            match found {
                Found::Yes => return Some(at),
                // Possibly a start, cut short: wait for more from here.
                Found::NeedMore if rest.len() < 32 => return None,
                Found::NeedMore | Found::No => {}
            }
        }
        None
    }
}

/// Whether some bytes start what is looked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Found {
    Yes,
    No,
    NeedMore,
}

/// The first line of `rest` and its length with CRLF, or the step to take when there is none yet.
fn line(rest: &[u8]) -> Result<(&[u8], usize), Step> {
    let window = &rest[..rest.len().min(MAX_LINE + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(end) => Ok((&rest[..end], end + 2)),
        None if rest.len() > MAX_LINE => Err(Step::Malformed),
        None => Err(Step::Incomplete),
    }
}

/// A length or count header: decimal, optionally negative.
fn length(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > 12 {
        return None;
    }
    let value: i64 = std::str::from_utf8(text).ok()?.parse().ok()?;
    (value <= MAX_LEN).then_some(value)
}

/// An upper bound of how deeply the aggregates at the start of `data` nest: one plus the aggregate
/// headers at line starts (counted up to `MAX_DEPTH + 1`).
fn nesting_bound(data: &[u8]) -> usize {
    1 + data
        .windows(3)
        .filter(|w| {
            w[0] == b'\r' && w[1] == b'\n' && matches!(w[2], b'*' | b'%' | b'~' | b'>' | b'|')
        })
        .take(MAX_DEPTH)
        .count()
}

fn is_resp3_only(type_byte: u8) -> bool {
    matches!(
        type_byte,
        b'%' | b'~' | b'>' | b'|' | b'_' | b',' | b'#' | b'(' | b'=' | b'!'
    )
}

/// One chunk of a streamed string (`;N\r\n<N bytes>\r\n`; `;0\r\n` ends it).
fn chunk(rest: &[u8]) -> Step {
    let (line, header) = match line(rest) {
        Ok(found) => found,
        Err(step) => return step,
    };
    if line.first() != Some(&b';') {
        return Step::Malformed;
    }
    match length(&line[1..]) {
        Some(0) => Step::End(header),
        Some(len) if len > 0 => Step::SkipChunk(header, len.unsigned_abs() + 2),
        _ => Step::Malformed,
    }
}

/// An inline command line: its words (split as redis-server splits them), or a blank line to pass.
fn inline(rest: &[u8]) -> Step {
    let window = &rest[..rest.len().min(MAX_LINE + 1)];
    let Some(end) = window.iter().position(|&b| b == b'\n') else {
        return if rest.len() > MAX_LINE {
            Step::Malformed
        } else {
            Step::Incomplete
        };
    };
    let line = &rest[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return Step::Malformed;
    }
    let Some(words) = split_args(line) else {
        return Step::Malformed;
    };
    if words.is_empty() {
        return Step::Nothing(end + 1);
    }
    let elements = words.len() as u64;
    let head = words
        .iter()
        .take(HEAD)
        .map(|word| Scalar::from_bytes(word))
        .collect();
    Step::Value(end + 1, Value::aggregate(Kind::Inline, elements, head))
}

/// Splits an inline command as redis-server's `sdssplitargs` does: blanks separate words; double quotes
/// (with `\` escapes, `\xHH`) and single quotes group them. `None`: unbalanced quotes.
pub(super) fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut words = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            return Some(words);
        }
        let mut word = Vec::new();
        let mut quote = None;
        loop {
            let Some(&c) = line.get(i) else {
                if quote.is_some() {
                    return None;
                }
                break;
            };
            match quote {
                Some(b'"') if c == b'\\' && i + 1 < line.len() => {
                    let hex = line
                        .get(i + 2..i + 4)
                        .filter(|_| line[i + 1] == b'x')
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    if let Some(byte) = hex {
                        word.push(byte);
                        i += 4;
                        continue;
                    }
                    word.push(match line[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                    i += 2;
                    continue;
                }
                Some(q) if c == q => {
                    // A closing quote must end the word.
                    if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                        return None;
                    }
                    i += 1;
                    break;
                }
                Some(_) => word.push(c),
                None if c.is_ascii_whitespace() => break,
                None if (c == b'"' || c == b'\'') && word.is_empty() => quote = Some(c),
                None => word.push(c),
            }
            i += 1;
        }
        words.push(word);
    }
}

fn value2(buf: &[u8], frame: &resp2::types::RangeFrame) -> Value {
    use resp2::types::RangeFrame as F;
    match frame {
        F::SimpleString(r) => Value::new(Kind::Simple, Scalar::from_bytes(&buf[r.0..r.1])),
        F::Error(r) => Value::error(&buf[r.0..r.1]),
        F::Integer(i) => Value::new(Kind::Integer, Scalar::Integer(*i)),
        F::BulkString(r) => Value::new(Kind::Bulk, Scalar::from_bytes(&buf[r.0..r.1])),
        F::Array(items) => Value::aggregate(
            Kind::Array,
            items.len() as u64,
            items
                .iter()
                .take(HEAD)
                .map(|item| value2(buf, item).scalar)
                .collect(),
        ),
        F::Null => Value::new(Kind::Null, Scalar::Other),
    }
}

fn value3(buf: &[u8], frame: &resp3::types::RangeFrame) -> Value {
    use resp3::types::RangeFrame as F;
    let head = |items: &[F]| -> Vec<Scalar> {
        items
            .iter()
            .take(HEAD)
            .map(|item| value3(buf, item).scalar)
            .collect()
    };
    match frame {
        F::SimpleString { data, .. } => {
            Value::new(Kind::Simple, Scalar::from_bytes(&buf[data.0..data.1]))
        }
        F::BlobString { data, .. } | F::ChunkedString(data) => {
            Value::new(Kind::Bulk, Scalar::from_bytes(&buf[data.0..data.1]))
        }
        F::SimpleError { data, .. } | F::BlobError { data, .. } => {
            Value::error(&buf[data.0..data.1])
        }
        F::Number { data, .. } => Value::new(Kind::Integer, Scalar::Integer(*data)),
        F::Null => Value::new(Kind::Null, Scalar::Other),
        F::Double { .. } => Value::new(Kind::Double, Scalar::Other),
        F::Boolean { .. } => Value::new(Kind::Boolean, Scalar::Other),
        F::BigNumber { .. } => Value::new(Kind::BigNumber, Scalar::Other),
        F::VerbatimString { .. } => Value::new(Kind::Verbatim, Scalar::Other),
        F::Array { data, .. } => Value::aggregate(Kind::Array, data.len() as u64, head(data)),
        F::Push { data, .. } => Value::aggregate(Kind::Push, data.len() as u64, head(data)),
        F::Map { data, .. } => Value::aggregate(Kind::Map, data.len() as u64, Vec::new()),
        F::Set { data, .. } => Value::aggregate(Kind::Set, data.len() as u64, Vec::new()),
        F::Hello { .. } => Value::new(Kind::Inline, Scalar::Other),
    }
}

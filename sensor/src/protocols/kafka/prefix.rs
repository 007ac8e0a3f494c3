//! A minimal hand-written decoder for the first bytes of the Kafka bodies that can be too large to
//! buffer: Produce, Fetch and Metadata requests and responses.
//!
//! Why not the crate here: `kafka-protocol` decodes a whole message or nothing, and these bodies can
//! be megabytes long (record batches, the metadata of a large cluster) and, live, arrive cut short (the
//! kernel copies at most `--max-payload` bytes of each packet). The parser keeps at most
//! `MAX_WHOLE` bytes of a message; of a longer one (or one whose rest was lost) it has only the
//! first bytes, and this module walks them as far as they go, for the topics a request names and the
//! error codes a response carries. Record batches are stepped over by their length. The layouts are
//! those of the protocol's message definitions (the same fields the crate reads, per version);
//! `tests.rs` checks the walk against the crate on whole messages.

use std::collections::HashMap;

/// Topic ids (Fetch v13+, Metadata v10+) -> names, learned from this connection's Metadata responses.
pub type TopicIds = HashMap<[u8; 16], String>;

/// At most this many topic names per request.
pub const MAX_TOPICS: usize = 64;
/// At most this many topic ids remembered per connection.
pub const MAX_TOPIC_IDS: usize = 1024;

/// What the first bytes of a request body say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestPrefix {
    /// Produce: the acknowledgements the producer asks for (0: none, no response will come).
    pub acks: Option<i16>,
    pub topics: Vec<String>,
}

/// Walks the start of a request body (after the header). `flexible`: the version uses compact
/// strings, arrays and tagged fields.
#[must_use]
pub fn request(
    api_key: i16,
    version: i16,
    flexible: bool,
    body: &[u8],
    ids: &TopicIds,
) -> RequestPrefix {
    let mut out = RequestPrefix::default();
    let mut r = Reader::new(body, flexible);
    let mut topics = Topics {
        list: &mut out.topics,
        ids,
    };
    let _complete = match api_key {
        0 => produce_request(&mut r, version, &mut out.acks, &mut topics),
        1 => fetch_request(&mut r, version, &mut topics),
        3 => metadata_request(&mut r, version, &mut topics),
        _ => None,
    };
    out
}

/// Walks the start of a response body (after the header) for its error code: the first non-zero one
/// (top level first), else 0 when at least one was read; `None` when none was (or the API is not one
/// of the three). Metadata responses also teach `ids` their topic ids.
#[must_use]
pub fn response_error(
    api_key: i16,
    version: i16,
    flexible: bool,
    body: &[u8],
    ids: &mut TopicIds,
) -> Option<i16> {
    let mut r = Reader::new(body, flexible);
    let mut errors = Errors::default();
    let _complete = match api_key {
        0 => produce_response(&mut r, version, &mut errors),
        1 => fetch_response(&mut r, version, &mut errors),
        3 => metadata_response(&mut r, version, &mut errors, ids),
        _ => None,
    };
    errors.seen.then_some(errors.first)
}

/// The canonical text of a topic id: `8-4-4-4-12` lowercase hex.
#[must_use]
pub fn uuid_text(id: &[u8; 16]) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The name of a topic id: learned from a Metadata response, else the id's text; `None` for the nil id.
#[must_use]
pub fn topic_of_id(ids: &TopicIds, id: &[u8; 16]) -> Option<String> {
    if id.iter().all(|&b| b == 0) {
        return None;
    }
    Some(ids.get(id).cloned().unwrap_or_else(|| uuid_text(id)))
}

/// Adds `name` to `list` unless it is there already or the list is full.
pub fn push_topic(list: &mut Vec<String>, name: String) {
    if list.len() < MAX_TOPICS && !list.contains(&name) {
        list.push(name);
    }
}

/// Remembers a topic id's name (bounded).
pub fn learn_topic(ids: &mut TopicIds, id: [u8; 16], name: &str) {
    if id.iter().all(|&b| b == 0) || name.is_empty() {
        return;
    }
    if ids.len() < MAX_TOPIC_IDS || ids.contains_key(&id) {
        ids.insert(id, name.to_owned());
    }
}

struct Topics<'a> {
    list: &'a mut Vec<String>,
    ids: &'a TopicIds,
}

impl Topics<'_> {
    fn name(&mut self, name: Option<&[u8]>) {
        if let Some(name) = name {
            push_topic(self.list, String::from_utf8_lossy(name).into_owned());
        }
    }

    fn id(&mut self, id: &[u8; 16]) {
        if let Some(name) = topic_of_id(self.ids, id) {
            push_topic(self.list, name);
        }
    }
}

#[derive(Default)]
struct Errors {
    seen: bool,
    first: i16,
}

impl Errors {
    /// Records one code; `None` (stop walking) once a non-zero one is known.
    fn code(&mut self, code: i16) -> Option<()> {
        self.seen = true;
        if code != 0 {
            self.first = code;
            return None;
        }
        Some(())
    }
}

/// Reads Kafka primitives; every read is `None` once the data ends.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    flexible: bool,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], flexible: bool) -> Self {
        Self {
            data,
            pos: 0,
            flexible,
        }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let bytes = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn array_of<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn i16(&mut self) -> Option<i16> {
        self.array_of().map(i16::from_be_bytes)
    }

    fn i32(&mut self) -> Option<i32> {
        self.array_of().map(i32::from_be_bytes)
    }

    fn uuid(&mut self) -> Option<[u8; 16]> {
        self.array_of()
    }

    fn uvarint(&mut self) -> Option<u32> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let byte = self.take(1)?[0];
            value |= u32::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }

    /// A length (string, bytes or array): `None` for null, compact (`n + 1`, 0 for null) in flexible
    /// versions, else `width` bytes (negative for null).
    fn length(&mut self, width: usize) -> Option<Option<usize>> {
        let len = if self.flexible {
            i64::from(self.uvarint()?) - 1
        } else if width == 2 {
            i64::from(self.i16()?)
        } else {
            i64::from(self.i32()?)
        };
        Some(usize::try_from(len).ok())
    }

    /// A (nullable) string.
    fn string(&mut self) -> Option<Option<&'a [u8]>> {
        match self.length(2)? {
            Some(len) => self.take(len).map(Some),
            None => Some(None),
        }
    }

    /// (Nullable) bytes, stepped over.
    fn bytes(&mut self) -> Option<()> {
        match self.length(4)? {
            Some(len) => self.skip(len),
            None => Some(()),
        }
    }

    /// An array's element count (0 for null).
    fn array(&mut self) -> Option<usize> {
        Some(self.length(4)?.unwrap_or(0))
    }

    /// An array of int32, stepped over.
    fn i32_array(&mut self) -> Option<()> {
        let n = self.array()?;
        self.skip(n.checked_mul(4)?)
    }

    /// The tagged fields that end every structure of a flexible version.
    fn tagged(&mut self) -> Option<()> {
        if !self.flexible {
            return Some(());
        }
        let n = self.uvarint()?;
        for _ in 0..n {
            self.uvarint()?;
            let size = self.uvarint()?;
            self.skip(size as usize)?;
        }
        Some(())
    }
}

fn produce_request(
    r: &mut Reader<'_>,
    v: i16,
    acks: &mut Option<i16>,
    topics: &mut Topics<'_>,
) -> Option<()> {
    if v >= 3 {
        r.string()?; // transactional_id
    }
    *acks = Some(r.i16()?);
    r.i32()?; // timeout_ms
    for _ in 0..r.array()? {
        if v >= 13 {
            topics.id(&r.uuid()?);
        } else {
            topics.name(r.string()?);
        }
        for _ in 0..r.array()? {
            r.i32()?; // index
            r.bytes()?; // records
            r.tagged()?;
        }
        r.tagged()?;
    }
    Some(())
}

fn fetch_request(r: &mut Reader<'_>, v: i16, topics: &mut Topics<'_>) -> Option<()> {
    if v <= 14 {
        r.i32()?; // replica_id
    }
    r.i32()?; // max_wait_ms
    r.i32()?; // min_bytes
    if v >= 3 {
        r.i32()?; // max_bytes
    }
    if v >= 4 {
        r.skip(1)?; // isolation_level
    }
    if v >= 7 {
        r.i32()?; // session_id
        r.i32()?; // session_epoch
    }
    for _ in 0..r.array()? {
        if v >= 13 {
            topics.id(&r.uuid()?);
        } else {
            topics.name(r.string()?);
        }
        for _ in 0..r.array()? {
            r.i32()?; // partition
            if v >= 9 {
                r.i32()?; // current_leader_epoch
            }
            r.skip(8)?; // fetch_offset
            if v >= 12 {
                r.i32()?; // last_fetched_epoch
            }
            if v >= 5 {
                r.skip(8)?; // log_start_offset
            }
            r.i32()?; // partition_max_bytes
            r.tagged()?;
        }
        r.tagged()?;
    }
    Some(())
}

fn metadata_request(r: &mut Reader<'_>, v: i16, topics: &mut Topics<'_>) -> Option<()> {
    for _ in 0..r.array()? {
        let id = if v >= 10 { Some(r.uuid()?) } else { None };
        match (r.string()?, id) {
            (Some(name), _) => topics.name(Some(name)),
            (None, Some(id)) => topics.id(&id),
            (None, None) => {}
        }
        r.tagged()?;
    }
    Some(())
}

fn produce_response(r: &mut Reader<'_>, v: i16, errors: &mut Errors) -> Option<()> {
    for _ in 0..r.array()? {
        if v >= 13 {
            r.uuid()?;
        } else {
            r.string()?;
        }
        for _ in 0..r.array()? {
            r.i32()?; // index
            errors.code(r.i16()?)?;
            r.skip(8)?; // base_offset
            if v >= 2 {
                r.skip(8)?; // log_append_time_ms
            }
            if v >= 5 {
                r.skip(8)?; // log_start_offset
            }
            if v >= 8 {
                for _ in 0..r.array()? {
                    r.i32()?; // batch_index
                    r.string()?; // batch_index_error_message
                    r.tagged()?;
                }
                r.string()?; // error_message
            }
            r.tagged()?;
        }
        r.tagged()?;
    }
    Some(())
}

fn fetch_response(r: &mut Reader<'_>, v: i16, errors: &mut Errors) -> Option<()> {
    if v >= 1 {
        r.i32()?; // throttle_time_ms
    }
    if v >= 7 {
        errors.code(r.i16()?)?;
        r.i32()?; // session_id
    }
    for _ in 0..r.array()? {
        if v >= 13 {
            r.uuid()?;
        } else {
            r.string()?;
        }
        for _ in 0..r.array()? {
            r.i32()?; // partition_index
            errors.code(r.i16()?)?;
            r.skip(8)?; // high_watermark
            if v >= 4 {
                r.skip(8)?; // last_stable_offset
            }
            if v >= 5 {
                r.skip(8)?; // log_start_offset
            }
            if v >= 4 {
                for _ in 0..r.array()? {
                    r.skip(16)?; // producer_id, first_offset
                    r.tagged()?;
                }
            }
            if v >= 11 {
                r.i32()?; // preferred_read_replica
            }
            r.bytes()?; // records
            r.tagged()?;
        }
        r.tagged()?;
    }
    Some(())
}

fn metadata_response(
    r: &mut Reader<'_>,
    v: i16,
    errors: &mut Errors,
    ids: &mut TopicIds,
) -> Option<()> {
    if v >= 3 {
        r.i32()?; // throttle_time_ms
    }
    for _ in 0..r.array()? {
        r.i32()?; // node_id
        r.string()?; // host
        r.i32()?; // port
        if v >= 1 {
            r.string()?; // rack
        }
        r.tagged()?;
    }
    if v >= 2 {
        r.string()?; // cluster_id
    }
    if v >= 1 {
        r.i32()?; // controller_id
    }
    for _ in 0..r.array()? {
        let code = r.i16()?;
        let name = r.string()?;
        if v >= 10 {
            let id = r.uuid()?;
            if let Some(name) = name {
                learn_topic(ids, id, &String::from_utf8_lossy(name));
            }
        }
        errors.code(code)?;
        if v >= 1 {
            r.skip(1)?; // is_internal
        }
        for _ in 0..r.array()? {
            errors.code(r.i16()?)?;
            r.i32()?; // partition_index
            r.i32()?; // leader_id
            if v >= 7 {
                r.i32()?; // leader_epoch
            }
            r.i32_array()?; // replica_nodes
            r.i32_array()?; // isr_nodes
            if v >= 5 {
                r.i32_array()?; // offline_replicas
            }
            r.tagged()?;
        }
        if v >= 8 {
            r.i32()?; // topic_authorized_operations
        }
        r.tagged()?;
    }
    Some(())
}

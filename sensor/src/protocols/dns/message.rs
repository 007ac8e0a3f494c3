//! One DNS message as bytes, with no connection state.
//!
//! In: the bytes of one message (a UDP datagram, or one length-prefixed message of a TCP stream). Out:
//! its header (read directly: 12 fixed bytes), its first question and the data of its answer records as
//! text (decoded with `simple-dns`). `walk_question` finds the end of the first question without
//! decoding anything, for probing a message that may not be complete yet.
//!
//! simple-dns refuses a whole message for one part it cannot read (a question type it does not know, a
//! record it cannot decode, bytes cut off by the capture cap). `decode` works around that: the question's
//! type and class are read here and hidden from simple-dns when it does not know them, and when the
//! whole message does not decode, the longest prefix of answer records that does is kept.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use simple_dns::{rdata::RData, Name, Packet, QCLASS, QTYPE, RCODE};

/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 12;
/// Longest name on the wire (RFC 1035 2.3.4), length octets and the final zero included.
const MAX_NAME_WIRE: usize = 255;

const FLAG_RESPONSE: u16 = 0x8000;
const FLAG_Z: u16 = 0x0040;

/// The fixed 12-byte header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub questions: u16,
    pub answers: u16,
    pub authorities: u16,
    pub additionals: u16,
}

impl Header {
    /// The header at the start of `msg`; `None` when fewer than 12 bytes are there.
    #[must_use]
    pub fn parse(msg: &[u8]) -> Option<Self> {
        let word = |at: usize| Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]));
        Some(Self {
            id: word(0)?,
            flags: word(2)?,
            questions: word(4)?,
            answers: word(6)?,
            authorities: word(8)?,
            additionals: word(10)?,
        })
    }

    #[must_use]
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    /// 0 = QUERY, 4 = NOTIFY, 5 = UPDATE.
    #[must_use]
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0x0f) as u8
    }

    /// The header's 4-bit response code.
    #[must_use]
    pub fn rcode(&self) -> u16 {
        self.flags & 0x000f
    }

    /// The reserved Z bit, zero in every DNS message.
    #[must_use]
    pub fn z(&self) -> bool {
        self.flags & FLAG_Z != 0
    }
}

/// Where the first question of a message ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// The question ends before byte `end`; its type and class.
    Complete { end: usize, qtype: u16, qclass: u16 },
    /// `msg` ends inside the question.
    Incomplete,
    /// Not a question: a label longer than 63 bytes, a name longer than 255, a compression pointer
    /// (the first question has nothing before it to point to but the header).
    Invalid,
}

/// Walks the first question (right after the header) without decoding it.
#[must_use]
pub fn walk_question(msg: &[u8]) -> Walk {
    let mut at = HEADER_LEN;
    let mut name_len = 0;
    loop {
        let Some(&len) = msg.get(at) else {
            return Walk::Incomplete;
        };
        let len = usize::from(len);
        at += 1;
        name_len += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return Walk::Invalid;
        }
        name_len += len;
        if name_len > MAX_NAME_WIRE {
            return Walk::Invalid;
        }
        at += len;
    }
    match msg.get(at..at + 4) {
        Some(tc) => Walk::Complete {
            end: at + 4,
            qtype: u16::from_be_bytes([tc[0], tc[1]]),
            qclass: u16::from_be_bytes([tc[2], tc[3]]),
        },
        None => Walk::Incomplete,
    }
}

/// The first question of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// Without the final dot; `.` for the root.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

impl Question {
    /// The same question (names compare without regard to ASCII case, as DNS does).
    #[must_use]
    pub fn same(&self, other: &Question) -> bool {
        self.qtype == other.qtype
            && self.qclass == other.qclass
            && self.name.eq_ignore_ascii_case(&other.name)
    }
}

/// A decoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    /// The first question; `None` when the message has none (some error responses).
    pub question: Option<Question>,
    /// Response code, EDNS extended codes included.
    pub rcode: u16,
    /// Data of each answer record as text, in message order. Shorter than `header.answers` when
    /// records did not decode (cut off by the capture cap, or malformed).
    pub answers: Vec<String>,
    /// Every record of every section decoded.
    pub whole: bool,
}

/// Why a message did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("shorter than a DNS header")]
    Short,
    #[error("the question does not decode")]
    Question,
}

/// Decodes one whole message.
///
/// # Errors
/// Fewer than 12 bytes, or a first question that does not decode.
pub fn decode(msg: &[u8]) -> Result<Message, DecodeError> {
    let header = Header::parse(msg).ok_or(DecodeError::Short)?;
    let mut bytes = Cow::Borrowed(msg);
    let mut question_type = None;
    if header.questions > 0 {
        let Walk::Complete { end, qtype, qclass } = walk_question(msg) else {
            return Err(DecodeError::Question);
        };
        question_type = Some((qtype, qclass));
        // simple-dns refuses types and classes it has no name for: show it ones it knows (the real
        // ones are kept above).
        if QTYPE::try_from(qtype).is_err() || QCLASS::try_from(qclass & 0x7fff).is_err() {
            let patched = bytes.to_mut();
            patched[end - 4..end].copy_from_slice(&[0, 1, 0, 1]);
        }
    }
    let (packet, extended_rcode) = match Packet::parse(&bytes) {
        Ok(packet) => {
            let extended = packet.rcode() == RCODE::BADVERS;
            let answers = packet
                .answers
                .iter()
                .map(|rr| rdata_text(&rr.rdata))
                .collect();
            (Some((packet, answers)), extended)
        }
        Err(_) => (None, false),
    };
    let whole = packet.is_some();
    let (question, answers) = match packet {
        Some((packet, answers)) => (
            packet.questions.first().map(|q| name_text(q.qname.clone())),
            answers,
        ),
        None => partial(&bytes, &header)?,
    };
    let question = match (question, question_type) {
        (Some(name), Some((qtype, qclass))) => Some(Question {
            name,
            qtype,
            qclass,
        }),
        _ => None,
    };
    let rcode = if extended_rcode { 16 } else { header.rcode() };
    Ok(Message {
        header,
        question,
        rcode,
        answers,
        whole,
    })
}

/// The question's name and the longest prefix of answers that decodes, when the whole message does
/// not: the record counts are lowered in a copy until simple-dns accepts it (a binary search: a
/// prefix that decodes has only prefixes that decode).
fn partial(msg: &[u8], header: &Header) -> Result<(Option<String>, Vec<String>), DecodeError> {
    let mut copy = msg.to_vec();
    let mut try_answers = |count: u16| -> Option<(Option<String>, Vec<String>)> {
        copy[6..8].copy_from_slice(&count.to_be_bytes());
        copy[8..12].fill(0);
        let packet = Packet::parse(&copy).ok()?;
        let name = packet.questions.first().map(|q| name_text(q.qname.clone()));
        let answers = packet
            .answers
            .iter()
            .map(|rr| rdata_text(&rr.rdata))
            .collect();
        Some((name, answers))
    };
    let mut best = try_answers(0).ok_or(DecodeError::Question)?;
    // Invariant: `low` answers decode, more than `high` do not.
    let (mut low, mut high) = (0u16, header.answers);
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        match try_answers(mid) {
            Some(found) => {
                best = found;
                low = mid;
            }
            None => high = mid - 1,
        }
    }
    Ok(best)
}

fn name_text(name: Name<'_>) -> String {
    let text = name.to_string();
    if text.is_empty() {
        ".".to_owned()
    } else {
        text
    }
}

/// One record's data in presentation form, for the record types people look at; other types show
/// their type name only (their data, keys and signatures, is not worth exporting).
#[must_use]
pub fn rdata_text(rdata: &RData<'_>) -> String {
    match rdata {
        RData::A(a) => Ipv4Addr::from(a.address).to_string(),
        RData::AAAA(aaaa) => Ipv6Addr::from(aaaa.address).to_string(),
        RData::CNAME(name) => name_text(name.0.clone()),
        RData::NS(name) => name_text(name.0.clone()),
        RData::PTR(name) => name_text(name.0.clone()),
        RData::MX(mx) => format!("{} {}", mx.preference, name_text(mx.exchange.clone())),
        RData::SRV(srv) => format!(
            "{} {} {} {}",
            srv.priority,
            srv.weight,
            srv.port,
            name_text(srv.target.clone())
        ),
        RData::SOA(soa) => format!(
            "{} {} {} {} {} {} {}",
            name_text(soa.mname.clone()),
            name_text(soa.rname.clone()),
            soa.serial,
            soa.refresh,
            soa.retry,
            soa.expire,
            soa.minimum
        ),
        RData::TXT(txt) => String::try_from(txt.clone())
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        RData::CAA(caa) => format!(
            "{} {} {}",
            caa.flag,
            caa.tag,
            String::from_utf8_lossy(&caa.value)
        ),
        RData::SVCB(svcb) => format!("{} {}", svcb.priority, name_text(svcb.target.clone())),
        RData::HTTPS(https) => {
            format!("{} {}", https.0.priority, name_text(https.0.target.clone()))
        }
        other => type_name(other.type_code().into()).into_owned(),
    }
}

/// Record types by number and mnemonic (IANA "Resource Record (RR) TYPEs").
const TYPES: &[(u16, &str)] = &[
    (1, "A"),
    (2, "NS"),
    (3, "MD"),
    (4, "MF"),
    (5, "CNAME"),
    (6, "SOA"),
    (7, "MB"),
    (8, "MG"),
    (9, "MR"),
    (10, "NULL"),
    (11, "WKS"),
    (12, "PTR"),
    (13, "HINFO"),
    (14, "MINFO"),
    (15, "MX"),
    (16, "TXT"),
    (17, "RP"),
    (18, "AFSDB"),
    (19, "X25"),
    (20, "ISDN"),
    (21, "RT"),
    (22, "NSAP"),
    (23, "NSAP-PTR"),
    (24, "SIG"),
    (25, "KEY"),
    (26, "PX"),
    (27, "GPOS"),
    (28, "AAAA"),
    (29, "LOC"),
    (30, "NXT"),
    (33, "SRV"),
    (35, "NAPTR"),
    (36, "KX"),
    (37, "CERT"),
    (38, "A6"),
    (39, "DNAME"),
    (41, "OPT"),
    (42, "APL"),
    (43, "DS"),
    (44, "SSHFP"),
    (45, "IPSECKEY"),
    (46, "RRSIG"),
    (47, "NSEC"),
    (48, "DNSKEY"),
    (49, "DHCID"),
    (50, "NSEC3"),
    (51, "NSEC3PARAM"),
    (52, "TLSA"),
    (53, "SMIMEA"),
    (55, "HIP"),
    (59, "CDS"),
    (60, "CDNSKEY"),
    (61, "OPENPGPKEY"),
    (62, "CSYNC"),
    (63, "ZONEMD"),
    (64, "SVCB"),
    (65, "HTTPS"),
    (99, "SPF"),
    (108, "EUI48"),
    (109, "EUI64"),
    (249, "TKEY"),
    (250, "TSIG"),
    (251, "IXFR"),
    (252, "AXFR"),
    (253, "MAILB"),
    (254, "MAILA"),
    (255, "ANY"),
    (256, "URI"),
    (257, "CAA"),
    (32768, "TA"),
    (32769, "DLV"),
];

/// `A`, `AAAA`, ...; `TYPE12345` for a type without a mnemonic (RFC 3597).
#[must_use]
pub fn type_name(qtype: u16) -> Cow<'static, str> {
    match TYPES.binary_search_by_key(&qtype, |&(n, _)| n) {
        Ok(at) => Cow::Borrowed(TYPES[at].1),
        Err(_) => Cow::Owned(format!("TYPE{qtype}")),
    }
}

/// Response codes by number (IANA "DNS RCODEs"; 16 is BADVERS in an OPT record).
const RCODES: &[&str] = &[
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
    "YXDOMAIN",
    "YXRRSET",
    "NXRRSET",
    "NOTAUTH",
    "NOTZONE",
    "DSOTYPENI",
    "RCODE12",
    "RCODE13",
    "RCODE14",
    "RCODE15",
    "BADVERS",
];

/// `NOERROR`, `NXDOMAIN`, ...; `RCODE12` for a code without a name.
#[must_use]
pub fn rcode_name(rcode: u16) -> Cow<'static, str> {
    match RCODES.get(usize::from(rcode)) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(format!("RCODE{rcode}")),
    }
}

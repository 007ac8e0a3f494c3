//! What a command record says: the command name, its argument count and the sanitised text.
//!
//! The rule for `text` (argument values never leave podtap):
//! - the command name, upper case; for the container commands (`CLIENT`, `CONFIG`, `XINFO`, ... the 15 of
//!   redis 7/8) the subcommand too (`CONFIG GET`): it names the operation, is a keyword and not a value;
//!   `command` is those one or two words, and `args` counts the arguments after them;
//! - then the first argument verbatim when the command takes a key there (`GET`, `SET`, `HSET`, `XADD`,
//!   `OBJECT ENCODING`, ... the commands whose first argument `COMMAND DOCS` of redis 8.4 types as a
//!   key, plus `MSET`/`MSETNX`) or a channel (`SUBSCRIBE`, `PUBLISH`, ..., and the pushed `message`,
//!   `pmessage`, `smessage`): it names the data, it is not the data;
//! - then one `?` per remaining argument, at most `MAX_PLACEHOLDERS`, then `…`.
//!
//! `AUTH`, `HELLO` and every other command whose first argument is no key show only `?`: passwords,
//! values, scripts, config values are never shown. A name that is not a plain word (letters, digits,
//! `.`, `_`, `-`, `:`, `|`; at most 32 bytes) shows as `?`.

use super::frame::{Frame, Scalar};
use crate::model::RedisRequest;

/// `?` placeholders written before the rest is shown as `…` (`args` has the count).
const MAX_PLACEHOLDERS: u64 = 16;
/// Longest key or channel shown, in characters.
const MAX_KEY_CHARS: usize = 128;

/// The commands with subcommands (redis 7.0 - 8.4, from `COMMAND DOCS`).
pub(super) const CONTAINERS: &[&str] = &[
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "FUNCTION", "LATENCY", "MEMORY", "MODULE",
    "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO",
];

/// Commands (and `container|subcommand`s) whose first argument is a key, sorted: those whose first
/// argument `COMMAND DOCS` of redis 8.4 (the reply in the corpus capture
/// `zeek_redis_large-requests-responses.pcap`) types as `key`, plus `mset` and `msetnx` (their key is
/// inside a block).
const KEY_FIRST: &[&str] = &[
    "append",
    "bitcount",
    "bitfield",
    "bitfield_ro",
    "bitpos",
    "blmove",
    "blpop",
    "brpop",
    "brpoplpush",
    "bzpopmax",
    "bzpopmin",
    "copy",
    "decr",
    "decrby",
    "del",
    "delex",
    "digest",
    "dump",
    "exists",
    "expire",
    "expireat",
    "expiretime",
    "geoadd",
    "geodist",
    "geohash",
    "geopos",
    "georadius",
    "georadius_ro",
    "georadiusbymember",
    "georadiusbymember_ro",
    "geosearch",
    "geosearchstore",
    "get",
    "getbit",
    "getdel",
    "getex",
    "getrange",
    "getset",
    "hdel",
    "hexists",
    "hexpire",
    "hexpireat",
    "hexpiretime",
    "hget",
    "hgetall",
    "hgetdel",
    "hgetex",
    "hincrby",
    "hincrbyfloat",
    "hkeys",
    "hlen",
    "hmget",
    "hmset",
    "hpersist",
    "hpexpire",
    "hpexpireat",
    "hpexpiretime",
    "hpttl",
    "hrandfield",
    "hscan",
    "hset",
    "hsetex",
    "hsetnx",
    "hstrlen",
    "httl",
    "hvals",
    "incr",
    "incrby",
    "incrbyfloat",
    "lcs",
    "lindex",
    "linsert",
    "llen",
    "lmove",
    "lpop",
    "lpos",
    "lpush",
    "lpushx",
    "lrange",
    "lrem",
    "lset",
    "ltrim",
    "memory|usage",
    "mget",
    "move",
    "mset",
    "msetnx",
    "object|encoding",
    "object|freq",
    "object|idletime",
    "object|refcount",
    "persist",
    "pexpire",
    "pexpireat",
    "pexpiretime",
    "pfadd",
    "pfcount",
    "pfmerge",
    "psetex",
    "pttl",
    "rename",
    "renamenx",
    "restore",
    "restore-asking",
    "rpop",
    "rpoplpush",
    "rpush",
    "rpushx",
    "sadd",
    "scard",
    "sdiff",
    "sdiffstore",
    "set",
    "setbit",
    "setex",
    "setnx",
    "setrange",
    "sinter",
    "sinterstore",
    "sismember",
    "smembers",
    "smismember",
    "smove",
    "sort",
    "sort_ro",
    "spop",
    "srandmember",
    "srem",
    "sscan",
    "strlen",
    "substr",
    "sunion",
    "sunionstore",
    "touch",
    "ttl",
    "type",
    "unlink",
    "vadd",
    "vcard",
    "vdim",
    "vemb",
    "vgetattr",
    "vinfo",
    "vismember",
    "vlinks",
    "vrandmember",
    "vrange",
    "vrem",
    "vsetattr",
    "vsim",
    "watch",
    "xack",
    "xackdel",
    "xadd",
    "xautoclaim",
    "xclaim",
    "xdel",
    "xdelex",
    "xgroup|create",
    "xgroup|createconsumer",
    "xgroup|delconsumer",
    "xgroup|destroy",
    "xgroup|setid",
    "xinfo|consumers",
    "xinfo|groups",
    "xinfo|stream",
    "xlen",
    "xpending",
    "xrange",
    "xrevrange",
    "xsetid",
    "xtrim",
    "zadd",
    "zcard",
    "zcount",
    "zdiffstore",
    "zincrby",
    "zinterstore",
    "zlexcount",
    "zmscore",
    "zpopmax",
    "zpopmin",
    "zrandmember",
    "zrange",
    "zrangebylex",
    "zrangebyscore",
    "zrangestore",
    "zrank",
    "zrem",
    "zremrangebylex",
    "zremrangebyrank",
    "zremrangebyscore",
    "zrevrange",
    "zrevrangebylex",
    "zrevrangebyscore",
    "zrevrank",
    "zscan",
    "zscore",
    "zunionstore",
];

/// Commands (and pushed messages) whose first argument is a channel or pattern.
const CHANNEL_FIRST: &[&str] = &[
    "MESSAGE",
    "PMESSAGE",
    "PSUBSCRIBE",
    "PUBLISH",
    "PUNSUBSCRIBE",
    "SMESSAGE",
    "SPUBLISH",
    "SSUBSCRIBE",
    "SUBSCRIBE",
    "SUNSUBSCRIBE",
    "UNSUBSCRIBE",
];

/// The request part of a command frame (an array of bulk strings or an inline command), or of a pushed
/// message (`frame.head[0]` is the push kind).
pub(super) fn request(frame: &Frame) -> RedisRequest {
    let name = frame.head.first().and_then(Scalar::text).and_then(word);
    let Some(name) = name else {
        return RedisRequest {
            command: "?".to_owned(),
            args: count(frame.elements.saturating_sub(1)),
            text: text("?", frame.elements.saturating_sub(1), None),
        };
    };
    let sub = frame
        .head
        .get(1)
        .and_then(Scalar::text)
        .and_then(word)
        .filter(|_| CONTAINERS.contains(&name.as_str()));
    let (command, after, first) = match sub {
        Some(sub) => (format!("{name} {sub}"), 2, frame.head.get(2)),
        None => (name, 1, frame.head.get(1)),
    };
    let args = frame.elements.saturating_sub(after);
    let shown = first
        .and_then(Scalar::text)
        .filter(|_| shows_first(&command));
    RedisRequest {
        text: text(&command, args, shown),
        args: count(args),
        command,
    }
}

/// Whether `command` (`NAME` or `NAME SUB`) shows its first argument.
fn shows_first(command: &str) -> bool {
    if CHANNEL_FIRST.contains(&command) {
        return true;
    }
    let key = command.to_ascii_lowercase().replace(' ', "|");
    KEY_FIRST.binary_search(&key.as_str()).is_ok()
}

/// The sanitised text: the command, the shown first argument, `?` for the others.
fn text(command: &str, args: u64, first: Option<&[u8]>) -> String {
    let mut text = command.to_owned();
    let mut placeholders = args;
    if let (Some(first), true) = (first, args > 0) {
        text.push(' ');
        text.extend(
            String::from_utf8_lossy(first)
                .chars()
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .take(MAX_KEY_CHARS),
        );
        placeholders -= 1;
    }
    for _ in 0..placeholders.min(MAX_PLACEHOLDERS) {
        text.push_str(" ?");
    }
    if placeholders > MAX_PLACEHOLDERS {
        text.push_str(" …");
    }
    text
}

/// A command or subcommand name in upper case, if it is a plain word.
fn word(bytes: &[u8]) -> Option<String> {
    let plain = !bytes.is_empty()
        && bytes.len() <= 32
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'|'));
    plain.then(|| String::from_utf8_lossy(bytes).to_ascii_uppercase())
}

fn count(args: u64) -> u32 {
    u32::try_from(args).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::super::frame::Kind;
    use super::*;

    fn frame(words: &[&str], elements: u64) -> Frame {
        Frame {
            kind: Kind::Array,
            error: None,
            elements,
            head: words
                .iter()
                .map(|w| Scalar::Text(w.as_bytes().to_vec()))
                .collect(),
            start: 0,
            end: 0,
        }
    }

    fn req(words: &[&str], elements: u64) -> (String, u32, String) {
        let r = request(&frame(words, elements));
        (r.command, r.args, r.text)
    }

    #[test]
    fn key_first_commands_show_the_key_only() {
        assert_eq!(
            req(&["set", "user:1", "secret"], 3),
            ("SET".into(), 2, "SET user:1 ?".into())
        );
        assert_eq!(req(&["GET", "k"], 2), ("GET".into(), 1, "GET k".into()));
        assert_eq!(
            req(&["hset", "h", "f"], 6),
            ("HSET".into(), 5, "HSET h ? ? ? ?".into())
        );
        assert_eq!(
            req(&["DEL", "a", "b"], 3),
            ("DEL".into(), 2, "DEL a ?".into())
        );
        assert_eq!(
            req(&["MSET", "a", "1"], 5),
            ("MSET".into(), 4, "MSET a ? ? ?".into())
        );
    }

    #[test]
    fn other_commands_show_no_argument() {
        assert_eq!(
            req(&["AUTH", "user", "pw"], 3),
            ("AUTH".into(), 2, "AUTH ? ?".into())
        );
        assert_eq!(
            req(&["HELLO", "3", "AUTH"], 5),
            ("HELLO".into(), 4, "HELLO ? ? ? ?".into())
        );
        assert_eq!(
            req(&["EVAL", "return 1", "0"], 3),
            ("EVAL".into(), 2, "EVAL ? ?".into())
        );
        assert_eq!(req(&["PING"], 1), ("PING".into(), 0, "PING".into()));
        assert_eq!(req(&["ECHO", "hi"], 2), ("ECHO".into(), 1, "ECHO ?".into()));
    }

    #[test]
    fn container_commands_keep_their_subcommand() {
        assert_eq!(
            req(&["config", "get", "save"], 3),
            ("CONFIG GET".into(), 1, "CONFIG GET ?".into())
        );
        assert_eq!(
            req(&["CLIENT", "SETNAME", "me"], 3),
            ("CLIENT SETNAME".into(), 1, "CLIENT SETNAME ?".into())
        );
        assert_eq!(
            req(&["OBJECT", "ENCODING", "k"], 3),
            ("OBJECT ENCODING".into(), 1, "OBJECT ENCODING k".into())
        );
        assert_eq!(
            req(&["XINFO", "STREAM", "s"], 4),
            ("XINFO STREAM".into(), 2, "XINFO STREAM s ?".into())
        );
        assert_eq!(
            req(&["COMMAND"], 1),
            ("COMMAND".into(), 0, "COMMAND".into())
        );
        // Not a word: no subcommand, the argument is a `?`.
        assert_eq!(
            req(&["CLIENT", "a b"], 2),
            ("CLIENT".into(), 1, "CLIENT ?".into())
        );
        // Only containers have subcommands.
        assert_eq!(
            req(&["ECHO", "GET"], 2),
            ("ECHO".into(), 1, "ECHO ?".into())
        );
    }

    #[test]
    fn channels_are_shown() {
        assert_eq!(
            req(&["SUBSCRIBE", "news", "x"], 3),
            ("SUBSCRIBE".into(), 2, "SUBSCRIBE news ?".into())
        );
        assert_eq!(
            req(&["PUBLISH", "news", "hi"], 3),
            ("PUBLISH".into(), 2, "PUBLISH news ?".into())
        );
        assert_eq!(
            req(&["message", "news", "hi"], 3),
            ("MESSAGE".into(), 2, "MESSAGE news ?".into())
        );
        assert_eq!(
            req(&["pmessage", "n*", "news"], 4),
            ("PMESSAGE".into(), 3, "PMESSAGE n* ? ?".into())
        );
    }

    #[test]
    fn long_argument_lists_and_odd_names_are_bounded() {
        let (_, args, text) = req(&["MSET", "k", "v"], 2001);
        assert_eq!(args, 2000);
        assert_eq!(text, format!("MSET k{} …", " ?".repeat(16)));
        assert_eq!(req(&["se\u{1}t", "k"], 2), ("?".into(), 1, "? ?".into()));
        let long_key = "k".repeat(300);
        let r = request(&frame(&["GET"], 2));
        assert_eq!(r.text, "GET ?", "key not kept: a `?`");
        let mut f = frame(&["GET", &long_key[..200]], 2);
        f.head[1] = Scalar::Text(long_key.as_bytes()[..200].to_vec());
        assert_eq!(
            request(&f).text.chars().count(),
            "GET ".len() + MAX_KEY_CHARS
        );
        let f = frame(&["GET", "a\r\nb"], 2);
        assert_eq!(request(&f).text, "GET a\u{fffd}\u{fffd}b");
    }

    #[test]
    fn key_table_is_sorted_and_lower_case() {
        assert!(KEY_FIRST.windows(2).all(|w| w[0] < w[1]));
        assert!(KEY_FIRST.iter().all(|k| k.to_ascii_lowercase() == *k));
    }
}

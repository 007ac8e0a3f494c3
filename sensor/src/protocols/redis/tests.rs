//! Redis parser cases, driven through the real `flow::stream::Stream` so that the skips the parser asks
//! for are applied exactly as the flow layer applies them.

use super::*;
use crate::model::Transport;
use crate::protocols::testing::{self, XorShift};

type Conn = testing::Conn<RedisParser>;

/// The parts of a call the cases assert on.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    command: String,
    args: u32,
    text: String,
    reply: Option<String>,
    error: Option<String>,
    status: CallStatus,
}

fn summary(call: ParsedCall) -> Summary {
    assert_eq!(call.protocol, Protocol::Redis);
    assert!(call.end >= call.start, "{call:?}");
    let Request::Redis(request) = call.request else {
        panic!("not a Redis request")
    };
    let (reply, error) = match call.response {
        Some(Response::Redis(r)) => (Some(r.kind), r.error),
        Some(other) => panic!("not a Redis response: {other:?}"),
        None => (None, None),
    };
    Summary {
        command: request.command,
        args: request.args,
        text: request.text,
        reply,
        error,
        status: call.status,
    }
}

fn ok(text: &str, args: u32, reply: &str) -> Summary {
    Summary {
        command: command_of(text),
        args,
        text: text.to_owned(),
        reply: Some(reply.to_owned()),
        error: None,
        status: CallStatus::Ok,
    }
}

fn err(text: &str, args: u32, error: &str) -> Summary {
    Summary {
        error: Some(error.to_owned()),
        status: CallStatus::Error,
        ..ok(text, args, "error")
    }
}

fn pushed(text: &str, args: u32) -> Summary {
    Summary {
        reply: None,
        ..ok(text, args, "")
    }
}

fn unanswered(text: &str, args: u32) -> Summary {
    Summary {
        status: CallStatus::NoResponse,
        ..pushed(text, args)
    }
}

/// The command of a sanitised text: its upper-case words before the first argument.
fn command_of(text: &str) -> String {
    let words: Vec<&str> = text.split(' ').collect();
    let two = words.len() > 1
        && words[1].chars().all(|c| c.is_ascii_uppercase())
        && command::CONTAINERS.contains(&words[0]);
    if two {
        format!("{} {}", words[0], words[1])
    } else {
        words[0].to_owned()
    }
}

/// A command as an array of bulk strings.
fn cmd(words: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for w in words {
        out.extend_from_slice(format!("${}\r\n", w.len()).as_bytes());
        out.extend_from_slice(w);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[test]
fn commands_and_replies_of_every_resp2_type() {
    let mut c = Conn::new();
    c.client(&cmd(&[b"SET", b"user:1", b"secret value"]));
    c.server(b"+OK\r\n");
    c.client(&cmd(&[b"get", b"user:1"]));
    c.server(b"$12\r\nsecret value\r\n");
    c.client(&cmd(&[b"INCR", b"n"]));
    c.server(b":42\r\n");
    c.client(&cmd(&[b"GET", b"missing"]));
    c.server(b"$-1\r\n");
    c.client(&cmd(&[b"LRANGE", b"l", b"0", b"-1"]));
    c.server(b"*2\r\n$1\r\na\r\n$1\r\nb\r\n");
    c.client(&cmd(&[b"BLPOP", b"l", b"1"]));
    c.server(b"*-1\r\n");
    c.client(&cmd(&[b"HSET", b"h", b"f", b"v"]));
    c.server(b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
    c.client(&cmd(&[b"AUTH", b"user", b"hunter2"]));
    c.server(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    c.close();
    assert_eq!(
        c.take(summary),
        vec![
            ok("SET user:1 ?", 2, "simple"),
            ok("GET user:1", 1, "bulk"),
            ok("INCR n", 1, "integer"),
            ok("GET missing", 1, "null"),
            ok("LRANGE l ? ?", 3, "array"),
            ok("BLPOP l ?", 2, "null"),
            err(
                "HSET h ? ?",
                3,
                "WRONGTYPE Operation against a key holding the wrong kind of value"
            ),
            err(
                "AUTH ? ?",
                2,
                "WRONGPASS invalid username-password pair or user is disabled."
            ),
        ]
    );
}

#[test]
fn call_times_are_first_command_byte_and_last_reply_byte() {
    let mut c = Conn::new();
    let set = cmd(&[b"SET", b"k", b"v"]);
    c.client(&set[..5]); // ts 2000
    c.client(&set[5..]); // ts 3000
    c.server(b"+O"); // ts 4000
    c.server(b"K\r\n"); // ts 5000
    assert_eq!(c.calls.len(), 1);
    assert_eq!((c.calls[0].start, c.calls[0].end), (2_000, 5_000));
    assert_eq!(c.calls[0].version, Some("2"));
}

#[test]
fn unknown_command_error_does_not_quote_the_arguments() {
    let mut c = Conn::new();
    c.client(&cmd(&[b"FOO", b"top-secret"]));
    c.server(b"-ERR unknown command 'FOO', with args beginning with: 'top-secret' \r\n");
    assert_eq!(
        c.take(summary),
        vec![err("FOO ?", 1, "ERR unknown command 'FOO'")]
    );
}

#[test]
fn inline_commands_with_quotes() {
    let mut c = Conn::new();
    c.client(b"PING\r\nPING\r\n\r\nset k \"a b\\x41\" \r\nPUBLISH Foo 'Hi there :)'\n");
    c.server(b"+PONG\r\n+PONG\r\n+OK\r\n:0\r\n");
    assert_eq!(
        c.take(summary),
        vec![
            ok("PING", 0, "simple"),
            ok("PING", 0, "simple"),
            ok("SET k ?", 2, "simple"),
            ok("PUBLISH Foo ?", 2, "integer"),
        ]
    );
    assert_eq!(c.parser.stats().malformed, 0);
}

#[test]
fn unbalanced_quotes_are_malformed_and_answered_by_an_error() {
    let mut c = Conn::new();
    c.client(b"SET k \"open\r\n");
    c.server(b"-ERR Protocol error: unbalanced quotes in request\r\n");
    c.client(&cmd(&[b"PING"]));
    c.server(b"+PONG\r\n");
    assert_eq!(c.take(summary), vec![ok("PING", 0, "simple")]);
    assert_eq!(c.parser.stats().malformed, 1);
}

#[test]
fn pipelines_match_replies_in_order() {
    let mut c = Conn::new();
    let mut commands = Vec::new();
    for i in 0..100 {
        commands.extend(cmd(&[b"SET", format!("key{i}").as_bytes(), b"v"]));
    }
    commands.extend(cmd(&[b"GET", b"key7"]));
    c.client(&commands);
    c.server(&b"+OK\r\n".repeat(100));
    c.server(b"$1\r\nv\r\n");
    let calls = c.take(summary);
    assert_eq!(calls.len(), 101);
    for (i, call) in calls[..100].iter().enumerate() {
        assert_eq!(*call, ok(&format!("SET key{i} ?"), 2, "simple"));
    }
    assert_eq!(calls[100], ok("GET key7", 1, "bulk"));
}

#[test]
fn empty_commands_get_no_reply() {
    let mut c = Conn::new();
    c.client(b"*0\r\n");
    c.client(&cmd(&[b"PING"]));
    c.server(b"+PONG\r\n");
    assert_eq!(c.take(summary), vec![ok("PING", 0, "simple")]);
}

#[test]
fn pending_commands_are_bounded() {
    let mut c = Conn::new();
    let ping = cmd(&[b"PING"]);
    let all: Vec<u8> = ping.repeat(MAX_PENDING + 10);
    c.client(&all);
    assert_eq!(c.parser.stats().pending_overflow, 10);
    c.close();
    assert_eq!(c.take(summary).len(), MAX_PENDING);
}

#[test]
fn container_commands_keep_the_subcommand() {
    let mut c = Conn::new();
    c.client(&cmd(&[b"CONFIG", b"GET", b"save"]));
    c.server(b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
    c.client(&cmd(&[b"CLIENT", b"SETNAME", b"me"]));
    c.server(b"+OK\r\n");
    c.client(&cmd(&[b"XINFO", b"STREAM", b"s"]));
    c.server(b"-ERR no such key\r\n");
    assert_eq!(
        c.take(summary),
        vec![
            ok("CONFIG GET ?", 1, "array"),
            ok("CLIENT SETNAME ?", 1, "simple"),
            err("XINFO STREAM s", 1, "ERR no such key"),
        ]
    );
}

#[test]
fn big_values_are_skipped_not_buffered() {
    let mut c = Conn::new();
    let value = vec![b'x'; 1_000_000];
    let set = cmd(&[b"SET", b"big", &value]);
    // The kernel copied only the start of each segment (--max-payload): the rest is inside the skip.
    for chunk in set.chunks(60_000) {
        let len = u32::try_from(chunk.len()).expect("fits");
        c.segment(Side::Client, len, &chunk[..chunk.len().min(100)]);
    }
    assert!(c.streams[0].buffered().len() < 1024);
    c.server(b"+OK\r\n");
    c.client(&cmd(&[b"GET", b"big"]));
    let mut reply = b"$1000000\r\n".to_vec();
    reply.extend_from_slice(&value);
    reply.extend_from_slice(b"\r\n");
    let chunks: Vec<&[u8]> = reply.chunks(65_000).collect();
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.iter().enumerate() {
        let len = u32::try_from(chunk.len()).expect("fits");
        c.segment(Side::Server, len, &chunk[..chunk.len().min(4096)]);
        if i < last {
            assert!(c.calls.len() < 2, "the GET completes with its last byte");
        }
    }
    c.client(&cmd(&[b"GET", b"small"]));
    c.server(b"$2\r\nhi\r\n");
    assert_eq!(
        c.take(summary),
        vec![
            ok("SET big ?", 2, "simple"),
            ok("GET big", 1, "bulk"),
            ok("GET small", 1, "bulk"),
        ]
    );
    assert_eq!(c.gaps(), 0);
    assert!(c.streams[1].buffered().len() < 1024);
}

#[test]
fn big_value_reply_ends_with_its_last_byte() {
    let mut c = Conn::new();
    c.client(&cmd(&[b"GET", b"big"])); // ts 2000
    let mut reply = b"$5000\r\n".to_vec();
    reply.extend(std::iter::repeat_n(b'y', 5000));
    reply.extend_from_slice(b"\r\n");
    c.server(&reply[..100]); // ts 3000
    c.server(&reply[100..3000]); // ts 4000
    assert!(c.calls.is_empty());
    c.server(&reply[3000..]); // ts 5000
    assert_eq!(c.calls.len(), 1);
    assert_eq!((c.calls[0].start, c.calls[0].end), (2_000, 5_000));
}

#[test]
fn big_elements_inside_arrays_are_skipped() {
    let mut c = Conn::new();
    let value = vec![b'z'; 10_000];
    c.client(&cmd(&[b"MGET", b"a", b"b", b"c"]));
    let mut reply = b"*3\r\n$1\r\na\r\n".to_vec();
    reply.extend_from_slice(b"$10000\r\n");
    reply.extend_from_slice(&value);
    reply.extend_from_slice(b"\r\n$-1\r\n");
    for chunk in reply.chunks(1500) {
        c.server(chunk);
    }
    c.client(&cmd(&[b"PING"]));
    c.server(b"+PONG\r\n");
    assert_eq!(
        c.take(summary),
        vec![ok("MGET a ? ?", 3, "array"), ok("PING", 0, "simple")]
    );
}

#[test]
fn subscribe_is_one_call_and_messages_are_one_way_resp2() {
    let mut c = Conn::new();
    c.client(&cmd(&[b"SUBSCRIBE", b"news", b"sport"]));
    c.server(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
    assert!(c.calls.is_empty(), "one confirmation per channel");
    c.server(b"*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:2\r\n");
    c.client(&cmd(&[b"PSUBSCRIBE", b"n*"]));
    c.server(b"*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:3\r\n");
    c.server(
        b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n\
          *4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$5\r\nhello\r\n",
    );
    c.client(&cmd(&[b"PING"]));
    c.server(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    c.client(&cmd(&[b"UNSUBSCRIBE"]));
    c.server(b"*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:2\r\n");
    c.server(b"*3\r\n$11\r\nunsubscribe\r\n$5\r\nsport\r\n:1\r\n");
    c.client(&cmd(&[b"PUNSUBSCRIBE"]));
    c.server(b"*3\r\n$12\r\npunsubscribe\r\n$2\r\nn*\r\n:0\r\n");
    c.client(&cmd(&[b"LRANGE", b"l", b"0", b"1"]));
    // No longer subscribed: an array whose first element is "message" is an ordinary reply.
    c.server(b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n");
    assert_eq!(
        c.take(summary),
        vec![
            ok("SUBSCRIBE news ?", 2, "array"),
            ok("PSUBSCRIBE n*", 1, "array"),
            pushed("MESSAGE news ?", 2),
            pushed("PMESSAGE n* ? ?", 3),
            ok("PING", 0, "array"),
            ok("UNSUBSCRIBE", 0, "array"),
            ok("PUNSUBSCRIBE", 0, "array"),
            ok("LRANGE l ? ?", 3, "array"),
        ]
    );
}

#[test]
fn unsubscribe_all_without_subscriptions_and_reset() {
    let mut c = Conn::new();
    c.client(&cmd(&[b"UNSUBSCRIBE"]));
    c.server(b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
    c.client(&cmd(&[b"SUBSCRIBE", b"a"]));
    c.server(b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n");
    c.client(&cmd(&[b"RESET"]));
    c.server(b"+RESET\r\n");
    c.client(&cmd(&[b"GET", b"k"]));
    c.server(b"$7\r\nmessage\r\n");
    assert_eq!(
        c.take(summary),
        vec![
            ok("UNSUBSCRIBE", 0, "array"),
            ok("SUBSCRIBE a", 1, "array"),
            ok("RESET", 0, "simple"),
            ok("GET k", 1, "bulk"),
        ]
    );
}

#[test]
fn unsubscribe_all_is_complete_when_another_reply_follows() {
    let mut c = Conn::new();
    c.client(&cmd(&[b"SUBSCRIBE", b"a", b"b"]));
    c.client(&cmd(&[b"PSUBSCRIBE", b"p*"]));
    c.server(
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n",
    );
    c.server(b"*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:3\r\n");
    c.client(&cmd(&[b"UNSUBSCRIBE"]));
    c.client(&cmd(&[b"PING"]));
    c.server(b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:2\r\n");
    c.server(b"*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:1\r\n");
    assert_eq!(
        c.calls.len(),
        2,
        "a pattern is left: the UNSUBSCRIBE may go on"
    );
    c.server(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    let calls = c.take(summary);
    assert_eq!(
        calls[2..],
        [ok("UNSUBSCRIBE", 0, "array"), ok("PING", 0, "array")]
    );
}

#[test]
fn resp3_types_pushes_and_version() {
    let mut c = Conn::new();
    c.client(&cmd(&[b"HELLO", b"3"]));
    c.server(
        b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.5\r\n$5\r\nproto\r\n:3\r\n\
          $2\r\nid\r\n:4\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n\
          $7\r\nmodules\r\n*0\r\n",
    );
    /// A command, its reply, the reply's type.
    type Exchange<'a> = (&'a [&'a [u8]], &'a [u8], &'a str);
    let replies: &[Exchange] = &[
        (&[b"GET", b"missing"], b"_\r\n", "null"),
        (&[b"ZSCORE", b"z", b"m"], b",3.5\r\n", "double"),
        (&[b"SISMEMBER", b"s", b"m"], b":1\r\n", "integer"),
        (&[b"EXISTS", b"k"], b"#t\r\n", "boolean"),
        (
            &[b"DEBUG", b"x"],
            b"(3492890328409238509324850943850943825024385\r\n",
            "big_number",
        ),
        (&[b"INFO"], b"=15\r\ntxt:Some string\r\n", "verbatim"),
        (&[b"SMEMBERS", b"s"], b"~2\r\n$1\r\na\r\n$1\r\nb\r\n", "set"),
        (&[b"HGETALL", b"h"], b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n", "map"),
        (
            &[b"GET", b"k"],
            b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n$1\r\nv\r\n",
            "bulk",
        ),
        (
            &[b"LRANGE", b"l", b"0", b"1"],
            b"*2\r\n$1\r\na\r\n_\r\n",
            "array",
        ),
        (
            &[b"FCALL", b"f", b"0"],
            b"!21\r\nSYNTAX invalid syntax\r\n",
            "error",
        ),
    ];
    for (command, reply, _) in replies {
        c.client(&cmd(command));
        c.server(reply);
    }
    c.client(&cmd(&[b"SUBSCRIBE", b"news"]));
    c.server(b">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
    c.server(b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n");
    c.client(&cmd(&[b"SET", b"k", b"v"]));
    c.server(b"+OK\r\n");
    c.server(b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n");
    let calls = c.take(summary);
    assert!(calls.iter().all(|c| c.status != CallStatus::NoResponse));
    assert_eq!(calls[0], ok("HELLO ?", 1, "map"));
    for (call, (_, _, kind)) in calls[1..12].iter().zip(replies) {
        assert_eq!(call.reply.as_deref(), Some(*kind), "{call:?}");
    }
    assert_eq!(calls[11].error.as_deref(), Some("SYNTAX invalid syntax"));
    assert_eq!(
        calls[12..],
        [
            ok("SUBSCRIBE news", 1, "push"),
            pushed("MESSAGE news ?", 2),
            ok("SET k ?", 2, "simple"),
            pushed("INVALIDATE ?", 1),
        ]
    );
    assert!(c.parser.server.resp3);
}

#[test]
fn resp3_version_is_on_the_record_and_hello_2_returns_to_resp2() {
    let mut c = Conn::new();
    c.client(&cmd(&[b"HELLO", b"3"]));
    c.server(b"%1\r\n$5\r\nproto\r\n:3\r\n");
    c.client(&cmd(&[b"HELLO", b"2"]));
    c.server(b"*2\r\n$5\r\nproto\r\n:2\r\n");
    c.client(&cmd(&[b"MGET", b"a", b"b"]));
    c.server(b"*2\r\n$-1\r\n$1\r\nx\r\n");
    let versions: Vec<_> = c.calls.iter().map(|call| call.version).collect();
    assert_eq!(versions, [Some("3"), Some("2"), Some("2")]);
    assert_eq!(c.take(summary)[2], ok("MGET a ?", 2, "array"));
}

#[test]
fn resp3_streamed_aggregates_and_strings() {
    let mut c = Conn::new();
    c.client(&cmd(&[b"HELLO", b"3"]));
    c.server(b"%0\r\n");
    c.client(&cmd(&[b"X1"]));
    c.client(&cmd(&[b"X2"]));
    c.client(&cmd(&[b"X3"]));
    c.server(b"*?\r\n:1\r\n*?\r\n:2\r\n.\r\n.\r\n");
    c.server(b"$?\r\n;4\r\nHell\r\n;2000\r\n");
    c.server(&[b'o'; 2000]);
    c.server(b"\r\n;0\r\n");
    c.server(b"%?\r\n+a\r\n:1\r\n.\r\n");
    assert_eq!(
        c.take(summary)[1..],
        [
            ok("X1", 0, "array"),
            ok("X2", 0, "bulk"),
            ok("X3", 0, "map"),
        ]
    );
}

#[test]
fn replies_without_a_command_are_passed_over() {
    // Joined mid-stream: the first bytes are replies to commands never seen.
    let mut c = Conn::new();
    c.server(b"+OK\r\n:1\r\n");
    c.client(&cmd(&[b"GET", b"a"]));
    c.server(b"$1\r\nb\r\n");
    assert_eq!(c.take(summary), vec![ok("GET a", 1, "bulk")]);
}

#[test]
fn lost_server_bytes_report_waiting_commands_without_response() {
    let mut c = Conn::new();
    c.client(&cmd(&[b"GET", b"a"]));
    c.client(&cmd(&[b"GET", b"b"]));
    c.server(b"$1\r\n");
    c.lose(Side::Server, 30);
    c.client(&cmd(&[b"GET", b"c"]));
    c.server(b"junk\r\n$1\r\nz\r\n");
    let calls = c.take(summary);
    assert_eq!(
        calls,
        vec![
            unanswered("GET a", 1),
            unanswered("GET b", 1),
            ok("GET c", 1, "bulk"),
        ]
    );
}

#[test]
fn lost_client_command_keeps_replies_in_step() {
    let mut c = Conn::new();
    c.client(&cmd(&[b"GET", b"a"]));
    c.lose(Side::Client, 20); // a whole command
    c.client(&cmd(&[b"GET", b"c"]));
    c.server(b"$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n");
    assert_eq!(
        c.take(summary),
        vec![ok("GET a", 1, "bulk"), ok("GET c", 1, "bulk")]
    );
}

#[test]
fn garbage_is_malformed_then_resynchronised() {
    let mut c = Conn::new();
    c.client(b"\x00\x01\x02garbage\xff\r\n");
    c.client(&cmd(&[b"PING"]));
    c.server(b"-ERR Protocol error\r\n+PONG\r\n");
    let calls = c.take(summary);
    assert_eq!(calls.last(), Some(&ok("PING", 0, "simple")));
    assert!(c.parser.stats().malformed >= 1);
}

#[test]
fn random_bytes_never_panic() {
    let pieces: &[&[u8]] = &[
        b"*3\r\n",
        b"*?\r\n",
        b"$3\r\nSET\r\n",
        b"$5000\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"%2\r\n",
        b">3\r\n$7\r\nmessage\r\n",
        b"$9\r\nsubscribe\r\n",
        b"|1\r\n",
        b"$?\r\n;3\r\nabc\r\n;0\r\n",
        b".\r\n",
        b"+OK\r\n",
        b"-ERR x\r\n",
        b":99999999999999999999999\r\n",
        b"PING\r\n",
        b"\"unbalanced\r\n",
        b"\r\n",
        b"\x00\xff\r",
    ];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3_000 {
        let mut c = Conn::new();
        c.send_random(&mut rng, 20, |rng| Conn::mix(rng, pieces, 8, 4));
        c.close();
        for call in &c.calls {
            assert!(call.end >= call.start);
        }
        assert!(c.parser.pending.len() <= MAX_PENDING);
        assert!(c.streams.iter().all(|s| s.buffered().len() <= 64 * 1024));
    }
}

#[test]
fn deep_nesting_is_malformed_not_a_stack_overflow() {
    let mut c = Conn::new();
    c.client(&cmd(&[b"GET", b"k"]));
    c.server(&b"*1\r\n".repeat(10_000));
    assert!(c.parser.stats().malformed >= 1);
}

// --- Detection -------------------------------------------------------------------------------

fn hints(sender_port: u16, receiver_port: u16) -> Hints {
    Hints {
        transport: Transport::Tcp,
        sender_port,
        receiver_port,
    }
}

fn matched(sender: Side) -> Detection {
    Detection::Match {
        protocol: Known::Redis,
        sender,
    }
}

#[test]
fn probe_detects_commands_on_any_port() {
    let any = hints(40000, 7000);
    let set = cmd(&[b"SET", b"k", b"v"]);
    assert_eq!(probe(&set, &any), matched(Side::Client));
    for cut in 0..9 {
        assert_eq!(probe(&set[..cut], &any), Detection::NeedMore, "{cut}");
    }
    // An array of bulk strings from the Redis port is a reply.
    assert_eq!(
        probe(b"*2\r\n$3\r\nfoo\r\n", &hints(PORT, 40000)),
        matched(Side::Server)
    );
    assert_eq!(probe(b"*2\r\n:1\r\n", &any), Detection::NoMatch);
    assert_eq!(probe(b"*x", &any), Detection::NoMatch);
}

#[test]
fn probe_detects_inline_commands_and_replies_only_on_the_redis_port() {
    let to_redis = hints(40000, PORT);
    let from_redis = hints(PORT, 40000);
    let other = hints(40000, 7000);
    assert_eq!(probe(b"PING\r\n", &to_redis), matched(Side::Client));
    assert_eq!(probe(b"PING\r\n", &other), Detection::NoMatch);
    assert_eq!(probe(b"set k \"v\"\r\n", &to_redis), matched(Side::Client));
    assert_eq!(probe(b"PIN", &to_redis), Detection::NeedMore);
    assert_eq!(probe(b"PING\r", &to_redis), Detection::NeedMore);
    for reply in [
        &b"+OK\r\n"[..],
        b"-ERR unknown\r\n",
        b":1\r\n",
        b"$5\r\nhello\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"%7\r\n$6\r\nserver",
        b">3\r\n",
        b"_\r\n",
        b"#t\r\n",
        b",1.5\r\n",
    ] {
        assert_eq!(
            probe(reply, &from_redis),
            matched(Side::Server),
            "{reply:?}"
        );
        assert_eq!(probe(reply, &other), Detection::NoMatch, "{reply:?}");
    }
    assert_eq!(probe(b"+O", &from_redis), Detection::NeedMore);
    assert_eq!(probe(b":x\r\n", &from_redis), Detection::NoMatch);
    assert_eq!(probe(b"$abc\r\n", &from_redis), Detection::NoMatch);
}

#[test]
fn probe_rejects_http_tls_and_random_bytes() {
    for port in [PORT, 8080] {
        for data in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            b"SSH-2.0-OpenSSH_9.2\r\n",
            b"\x00\x00\x00\x12\x00\x00\x00\x00",
        ] {
            let from = probe(data, &hints(port, 40000));
            assert_eq!(from, Detection::NoMatch, "{data:?} from {port}");
        }
    }
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    for _ in 0..100_000 {
        let len = 1 + rng.below(64) as usize;
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let found = probe(&data, &hints(40000, 7000));
        assert!(!matches!(found, Detection::Match { .. }), "{data:?}");
    }
}

#[test]
fn probe_order_keeps_http_first() {
    let detected = crate::protocols::detect::detect(b"GET / HTTP/1.1\r\n", &hints(40000, PORT));
    assert_eq!(
        detected,
        Detection::Match {
            protocol: Known::Http1,
            sender: Side::Client
        }
    );
    let detected = crate::protocols::detect::detect(&cmd(&[b"PING"]), &hints(40000, 80));
    assert_eq!(detected, matched(Side::Client));
}

// --- Split at every offset -------------------------------------------------------------------

/// A conversation of many shapes: RESP2 commands and replies, an inline pipeline, an error, a value
/// long enough to be skipped, pub/sub, then RESP3.
fn conversation() -> (Vec<u8>, Vec<u8>) {
    let big = vec![b'v'; 3000];
    let mut client = Vec::new();
    let mut server = Vec::new();
    let exchanges: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (cmd(&[b"SET", b"k", b"v"]), b"+OK\r\n".to_vec()),
        (b"PING\r\nPING\r\n".to_vec(), b"+PONG\r\n+PONG\r\n".to_vec()),
        (cmd(&[b"SET", b"big", &big]), b"+OK\r\n".to_vec()),
        (cmd(&[b"GET", b"big"]), [b"$3000\r\n".as_slice(), &big, b"\r\n"].concat()),
        (cmd(&[b"HSET", b"h", b"f"]), b"-ERR wrong number of arguments\r\n".to_vec()),
        (
            cmd(&[b"MGET", b"a", b"b"]),
            b"*2\r\n$1\r\n1\r\n$-1\r\n".to_vec(),
        ),
        (
            cmd(&[b"SUBSCRIBE", b"c1", b"c2"]),
            b"*3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nc2\r\n:2\r\n\
              *3\r\n$7\r\nmessage\r\n$2\r\nc1\r\n$3\r\nhey\r\n"
                .to_vec(),
        ),
        (cmd(&[b"RESET"]), b"+RESET\r\n".to_vec()),
        (
            cmd(&[b"HELLO", b"3"]),
            b"%1\r\n$5\r\nproto\r\n:3\r\n".to_vec(),
        ),
        (
            cmd(&[b"HGETALL", b"h"]),
            b"%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n*2\r\n_\r\n#f\r\n".to_vec(),
        ),
    ];
    for (c, s) in exchanges {
        client.extend(c);
        server.extend(s);
    }
    (client, server)
}

fn expected_conversation() -> Vec<Summary> {
    vec![
        ok("SET k ?", 2, "simple"),
        ok("PING", 0, "simple"),
        ok("PING", 0, "simple"),
        ok("SET big ?", 2, "simple"),
        ok("GET big", 1, "bulk"),
        err("HSET h ?", 2, "ERR wrong number of arguments"),
        ok("MGET a ?", 2, "array"),
        ok("SUBSCRIBE c1 ?", 2, "array"),
        pushed("MESSAGE c1 ?", 2),
        ok("RESET", 0, "simple"),
        ok("HELLO ?", 1, "map"),
        ok("HGETALL h", 1, "map"),
    ]
}

/// Delivers the client stream then the server stream, each cut at the given offsets.
fn deliver(client_cuts: &[usize], server_cuts: &[usize]) -> Vec<Summary> {
    let (client, server) = conversation();
    let mut c = Conn::with_seq([u32::MAX - 100, 7]);
    for (side, data, cuts) in [
        (Side::Client, &client, client_cuts),
        (Side::Server, &server, server_cuts),
    ] {
        let mut from = 0;
        for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
            c.send(side, &data[from..cut]);
            from = cut;
        }
    }
    c.close();
    assert_eq!(c.gaps(), 0);
    assert_eq!(c.parser.stats(), ParserStats::default());
    c.take(summary)
}

#[test]
fn conversation_delivered_whole() {
    assert_eq!(deliver(&[], &[]), expected_conversation());
}

#[test]
fn conversation_split_at_every_offset() {
    let (client, server) = conversation();
    let whole = expected_conversation();
    for cut in 0..=client.len() {
        assert_eq!(deliver(&[cut], &[]), whole, "client split at {cut}");
    }
    for cut in 0..=server.len() {
        assert_eq!(deliver(&[], &[cut]), whole, "server split at {cut}");
    }
}

#[test]
fn conversation_one_byte_at_a_time() {
    let (client, server) = conversation();
    let client: Vec<usize> = (1..client.len()).collect();
    let server: Vec<usize> = (1..server.len()).collect();
    assert_eq!(deliver(&client, &server), expected_conversation());
}

#[test]
fn reply_cut_short_by_the_close_completes_the_call() {
    let mut c = Conn::new();
    c.client(&cmd(&[b"GET", b"big"]));
    c.client(&cmd(&[b"GET", b"other"]));
    c.server(b"$5000\r\n");
    c.server(&[b'x'; 4000]);
    c.close();
    assert_eq!(
        c.take(summary),
        vec![ok("GET big", 1, "bulk"), unanswered("GET other", 1)]
    );
}

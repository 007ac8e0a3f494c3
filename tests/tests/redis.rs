//! podtap against real Redis traffic between pods: redis-server in pod b, redis-cli and
//! redis-benchmark in pod a. Every command is one record with both ends attributed; pushed pub/sub
//! messages are one-way records; no argument value leaves podtap. Each test also records the traffic
//! with tcpdump in pod b and replays the file through `podtap replay`: live and replay agree, call for
//! call. Needs root and the podtap binary (see `podtap::binary`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use podtap_tests::records::EndExpect;
use podtap_tests::redis::{
    by_connection, differences, redis_benchmark, redis_cli, tshark_commands, RedisCall,
    RedisServer, Subscriber,
};
use podtap_tests::tcpdump::{replay, Tcpdump};
use podtap_tests::util::TempDir;
use podtap_tests::{CgroupDriver, PodPair, Podtap};

/// podtap runs at most this long; tests stop it with SIGINT well before.
const RUN_S: u32 = 120;
/// How long to wait for records to show up after the traffic.
const SETTLE: Duration = Duration::from_secs(10);
const PORT: u16 = 6379;
/// The value of `SET big`: big enough that podtap must skip it (and ask the kernel to).
const BIG: usize = 1024 * 1024;

/// A test's traffic, seen live by podtap and recorded by tcpdump in the server's pod.
struct Recorded {
    tap: Podtap,
    tcpdump: Tcpdump,
}

impl Recorded {
    fn start(pair: &PodPair) -> Self {
        let tcpdump = Tcpdump::start(&pair.b, PORT).expect("tcpdump");
        let tap = Podtap::start(RUN_S, &[]).expect("podtap run");
        Self { tap, tcpdump }
    }

    /// Stops tcpdump once the last packets of the traffic had time to pass.
    fn stop_capture(&mut self) -> std::path::PathBuf {
        std::thread::sleep(Duration::from_millis(300));
        self.tcpdump.stop().expect("tcpdump stop").to_owned()
    }

    /// Waits for `n` records of the pair, stops podtap and tcpdump, checks podtap exited cleanly and
    /// that the replay of the capture gives the same calls per connection. Returns the live records.
    fn finish(mut self, pair: &PodPair, n: usize) -> Vec<Value> {
        self.tap.wait_records(&pair.ips(), n, SETTLE);
        let out = self.tap.stop().expect("stop");
        out.assert_clean_exit();
        let live = out.records_for(&pair.ips());
        let file = self.stop_capture();
        assert_eq!(
            self.tcpdump.dropped(),
            Some(0),
            "tcpdump lost packets: {:?}",
            self.tcpdump.log
        );
        let replayed = replay(&file).expect("podtap replay");
        let (live_calls, replayed_calls) = (by_connection(&live), by_connection(&replayed));
        assert!(
            live_calls == replayed_calls,
            "live and replay of the tcpdump capture differ (live vs replay):\n{}tcpdump: {:?}\n{}",
            differences(&live_calls, &replayed_calls),
            self.tcpdump.log,
            out.summary().unwrap_or_default()
        );
        live
    }
}

/// Checks the ends of every record: the client in pod a (a process named `process`; `pid` when one
/// process made them all), the Redis server in pod b.
fn check_ends(records: &[Value], pair: &PodPair, process: &str, pid: Option<u32>) {
    let server = EndExpect::new(pair.b.ip, Some(PORT), pair.b.container());
    let mut client = EndExpect::new(pair.a.ip, None, pair.a.container());
    client.process = Some(process.to_owned());
    client.pid = pid;
    for r in records {
        assert_eq!(r["protocol"], "redis", "{r}");
        assert_eq!(r["transport"], "tcp", "{r}");
        client.check(r, "client");
        server.check(r, "server");
    }
}

fn calls(records: &[Value]) -> Vec<RedisCall> {
    records.iter().map(RedisCall::of).collect()
}

/// No record carries any of `values` (argument values the clients sent).
fn assert_no_values(records: &[Value], values: &[&str]) {
    for r in records {
        let text = r.to_string();
        for v in values {
            assert!(!text.contains(v), "{v:?} leaked into {text}");
        }
    }
}

#[test]
fn a_redis_cli_commands_errors_a_big_value_and_resp3() {
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Cgroupfs).expect("pods");
    let server = RedisServer::start(&pair.b, 0, PORT).expect("redis-server");
    let dir = TempDir::new("podtap-redis-big").expect("temp dir");
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; BIG]).expect("big value");
    let rec = Recorded::start(&pair);
    let v2 = |text: &str, args, reply: &str| RedisCall::new(text, args, reply, "2");
    let steps: Vec<(Vec<&str>, Vec<RedisCall>)> = vec![
        (
            vec!["SET", "greeting", "hello"],
            vec![v2("SET greeting ?", 2, "simple")],
        ),
        (vec!["GET", "greeting"], vec![v2("GET greeting", 1, "bulk")]),
        (
            vec!["INCR", "counter"],
            vec![v2("INCR counter", 1, "integer")],
        ),
        (
            vec!["HSET", "user:1", "name", "alice", "age", "30"],
            vec![v2("HSET user:1 ? ? ? ?", 5, "integer")],
        ),
        (
            vec!["LPUSH", "greeting", "x"],
            vec![v2("LPUSH greeting ?", 2, "")
                .error("WRONGTYPE Operation against a key holding the wrong kind of value")],
        ),
        (
            vec!["AUTH", "nobody", "hunter2"],
            vec![v2("AUTH ? ?", 2, "")
                .error("WRONGPASS invalid username-password pair or user is disabled.")],
        ),
        (vec!["-x", "SET", "big"], vec![v2("SET big ?", 2, "simple")]),
        // Three 1 MiB replies on one connection: each skip must end exactly where the next reply starts.
        (
            vec!["-r", "3", "GET", "big"],
            vec![v2("GET big", 1, "bulk"); 3],
        ),
        (
            vec!["CONFIG", "GET", "maxmemory"],
            vec![v2("CONFIG GET ?", 1, "array")],
        ),
        (
            vec!["-3", "HGETALL", "user:1"],
            vec![
                RedisCall::new("HELLO ?", 1, "map", "3"),
                RedisCall::new("HGETALL user:1", 1, "map", "3"),
            ],
        ),
    ];
    let mut expected = Vec::new();
    for (args, calls) in &steps {
        let stdin = (args.first() == Some(&"-x")).then_some(big.as_path());
        let run = redis_cli(&pair.a, 0, &server, args, stdin).expect("redis-cli");
        if args.contains(&"GET") && args.contains(&"big") {
            assert_eq!(run.stdout.len(), 3 * (BIG + 1), "three values and newlines");
        }
        expected.extend(calls.iter().map(|c| (run.pid, c.clone())));
    }
    let records = rec.finish(&pair, expected.len());
    assert_eq!(
        calls(&records),
        expected.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>()
    );
    for (r, (pid, _)) in records.iter().zip(&expected) {
        check_ends(std::slice::from_ref(r), &pair, "redis-cli", Some(*pid));
        assert!(r["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{r}");
    }
    assert_no_values(&records, &["hello", "alice", "hunter2", "nobody", "xxxx"]);
}

#[test]
fn b_pub_sub_messages_are_one_way_records() {
    let pair = PodPair::new(CgroupDriver::Cgroupfs, CgroupDriver::Systemd).expect("pods");
    let server = RedisServer::start(&pair.b, 0, PORT).expect("redis-server");
    let rec = Recorded::start(&pair);
    let mut resp2 = Subscriber::start(&pair.a, 0, &server, false, "news").expect("subscriber");
    let mut resp3 = Subscriber::start(&pair.a, 0, &server, true, "news").expect("RESP3 subscriber");
    let mut publisher_pids = Vec::new();
    for message in ["first", "second"] {
        let run = redis_cli(&pair.a, 0, &server, &["PUBLISH", "news", message], None)
            .expect("redis-cli PUBLISH");
        assert_eq!(run.stdout.trim(), "2", "two subscribers");
        publisher_pids.push(run.pid);
        resp2
            .wait_for(&["message", "news", message])
            .expect("RESP2 message");
        resp3
            .wait_for(&["message", "news", message])
            .expect("RESP3 message");
    }
    let (pid2, pid3) = (resp2.pid(), resp3.pid());
    let records = rec.finish(&pair, 3 + 4 + 2);
    drop((resp2, resp3));
    let by_pid = |pid: u32| -> Vec<Value> {
        records
            .iter()
            .filter(|r| r["client"]["pid"] == pid)
            .cloned()
            .collect()
    };
    let message = |v: &str| RedisCall::new("MESSAGE news ?", 2, "", v).pushed();
    let subscriber2 = by_pid(pid2);
    assert_eq!(
        calls(&subscriber2),
        [
            RedisCall::new("SUBSCRIBE news", 1, "array", "2"),
            message("2"),
            message("2"),
        ]
    );
    let subscriber3 = by_pid(pid3);
    assert_eq!(
        calls(&subscriber3),
        [
            RedisCall::new("HELLO ?", 1, "map", "3"),
            RedisCall::new("SUBSCRIBE news", 1, "push", "3"),
            message("3"),
            message("3"),
        ]
    );
    for r in subscriber2.iter().chain(&subscriber3) {
        if r["request"]["command"] == "MESSAGE" {
            // One-way: no response, no duration, status ok.
            assert!(
                r.get("response").is_none() && r.get("duration_ms").is_none(),
                "{r}"
            );
        }
    }
    check_ends(&subscriber2, &pair, "redis-cli", Some(pid2));
    check_ends(&subscriber3, &pair, "redis-cli", Some(pid3));
    for pid in publisher_pids {
        let published = by_pid(pid);
        assert_eq!(
            calls(&published),
            [RedisCall::new("PUBLISH news ?", 2, "integer", "2")]
        );
        check_ends(&published, &pair, "redis-cli", Some(pid));
    }
    assert_eq!(records.len(), 3 + 4 + 2);
    assert_no_values(&records, &["first", "second"]);
}

#[test]
fn c_redis_benchmark_pipelined_every_command_reported() {
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Systemd).expect("pods");
    let server = RedisServer::start(&pair.b, 0, PORT).expect("redis-server");
    let mut rec = Recorded::start(&pair);
    let requests = 2000;
    let run = redis_benchmark(&pair.a, 0, &server, requests, 16, 4).expect("redis-benchmark");
    assert!(
        run.stdout.contains("SET") && run.stdout.contains("GET"),
        "{}",
        run.stdout
    );
    // redis-benchmark sends commands of its own (CONFIG GET save / appendonly), and the number of SETs
    // and GETs it writes is not -n (it stops once -n replies were read, with pipelines in flight, and
    // may close a connection before its last replies): the capture says exactly what went out.
    let file = rec.stop_capture();
    let sent = tshark_commands(&file, PORT).expect("tshark");
    for command in ["SET", "GET"] {
        assert!(sent.get(command).is_some_and(|&n| n > 1000), "{sent:?}");
    }
    let total: u64 = sent.values().sum();
    let records = rec.finish(&pair, total as usize);
    let mut reported: BTreeMap<String, u64> = BTreeMap::new();
    for r in &records {
        let command = r["request"]["command"].as_str().unwrap_or_default();
        *reported
            .entry(command.split(' ').next().unwrap_or_default().to_owned())
            .or_default() += 1;
        assert_ne!(r["status"], "error", "{r}");
    }
    assert_eq!(
        reported, sent,
        "podtap's commands (left) and tshark's (right)"
    );
    check_ends(&records, &pair, "redis-benchmark", Some(run.pid));
}

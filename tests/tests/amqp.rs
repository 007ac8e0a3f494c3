//! podtap against real AMQP 0-9-1 traffic: rabbitmq-server in one pod, a pika session from the other,
//! recorded by tcpdump in the broker's pod. podtap's live records must be exactly the session's methods
//! with their fields (checked against the session's script and against tshark's reading of the
//! capture), both ends attributed to their pods, and `podtap replay` of the capture must agree with the
//! live records. Needs root, the podtap binary, rabbitmq-server, pika, tcpdump and tshark.
//!
//! The broker is heavy (about 5 s to start), so the file starts it once, in its one test.

use std::time::Duration;

use podtap_tests::amqp::{
    assert_matches_tshark, pika_session, tshark_methods, AmqpRecord, RabbitMq, EXCHANGE,
    MISSING_QUEUE, QUEUE, ROUTING_KEY,
};
use podtap_tests::records::{involves, EndExpect};
use podtap_tests::tcpdump::{replay, Tcpdump};
use podtap_tests::{CgroupDriver, PodPair, Podtap};

/// podtap runs at most this long; the test stops it with SIGINT well before.
const RUN_S: u32 = 120;
/// How long to wait for records to show up after the traffic.
const SETTLE: Duration = Duration::from_secs(10);
const AMQP_PORT: u16 = 5672;
/// Messages per step of the pika session.
const N: u64 = 10;

/// What the pika session (`tests/python/amqp_client.py`) must produce, record by record, without the
/// ends (filled in by the caller).
fn expected_session(client: &(String, u16), server: &(String, u16)) -> Vec<AmqpRecord> {
    let rec = |method: &str, channel: u16, response: Option<(&str, Option<u16>)>, status: &str| {
        AmqpRecord {
            method: method.to_owned(),
            channel,
            exchange: None,
            routing_key: None,
            queue: None,
            delivery_tag: None,
            response: response.map(|(m, code)| (m.to_owned(), code)),
            status: status.to_owned(),
            client: client.clone(),
            server: server.clone(),
        }
    };
    let ok =
        |method: &str, channel: u16, answer: &str| rec(method, channel, Some((answer, None)), "ok");
    let with_queue = |mut r: AmqpRecord, queue: &str| {
        r.queue = Some(queue.to_owned());
        r
    };
    let routed = |mut r: AmqpRecord| {
        r.exchange = Some(EXCHANGE.to_owned());
        r.routing_key = Some(ROUTING_KEY.to_owned());
        r
    };
    let tagged = |mut r: AmqpRecord, tag: u64| {
        r.delivery_tag = Some(tag);
        r
    };
    let mut out = vec![
        ok("connection.start", 0, "connection.start-ok"),
        ok("connection.tune", 0, "connection.tune-ok"),
        ok("connection.open", 0, "connection.open-ok"),
        ok("channel.open", 1, "channel.open-ok"),
        {
            let mut r = ok("exchange.declare", 1, "exchange.declare-ok");
            r.exchange = Some(EXCHANGE.to_owned());
            r
        },
        with_queue(ok("queue.declare", 1, "queue.declare-ok"), QUEUE),
        with_queue(routed(ok("queue.bind", 1, "queue.bind-ok")), QUEUE),
        with_queue(ok("basic.consume", 1, "basic.consume-ok"), QUEUE),
        ok("basic.cancel", 1, "basic.cancel-ok"),
        with_queue(ok("basic.get", 1, "basic.get-ok"), QUEUE),
        with_queue(ok("basic.get", 1, "basic.get-empty"), QUEUE),
        // The passive declare of a missing queue: the broker closes the channel with 404, and pika
        // acknowledges the close.
        with_queue(
            rec(
                "queue.declare",
                1,
                Some(("channel.close", Some(404))),
                "error",
            ),
            MISSING_QUEUE,
        ),
        rec("channel.close-ok", 1, None, "ok"),
        // The second channel (pika reuses number 1): confirms on, a purge, a normal close (code 0).
        ok("channel.open", 1, "channel.open-ok"),
        ok("confirm.select", 1, "confirm.select-ok"),
        with_queue(ok("queue.purge", 1, "queue.purge-ok"), QUEUE),
        rec(
            "channel.close",
            1,
            Some(("channel.close-ok", Some(0))),
            "ok",
        ),
        rec(
            "connection.close",
            0,
            Some(("connection.close-ok", Some(200))),
            "ok",
        ),
    ];
    for tag in 1..=N {
        out.push(routed(rec("basic.publish", 1, None, "ok")));
        out.push(tagged(routed(rec("basic.deliver", 1, None, "ok")), tag));
        out.push(tagged(rec("basic.ack", 1, None, "ok"), tag));
        // Confirmed publishes: numbered on their channel, each answered by the broker's basic.ack.
        out.push(tagged(
            routed(rec("basic.publish", 1, Some(("basic.ack", None)), "ok")),
            tag,
        ));
    }
    // The message taken by basic.get, and its ack (delivery tag N + 1 on the first channel).
    out.push(routed(rec("basic.publish", 1, None, "ok")));
    out.push(tagged(rec("basic.ack", 1, None, "ok"), N + 1));
    out.sort();
    out
}

fn sorted(mut records: Vec<AmqpRecord>) -> Vec<AmqpRecord> {
    records.sort();
    records
}

#[test]
fn pika_session_against_rabbitmq_live_tshark_and_replay() {
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Cgroupfs).expect("pods");
    let rabbit = RabbitMq::start(&pair.b, 0, AMQP_PORT).expect("rabbitmq-server");
    let mut tcpdump = Tcpdump::start(&pair.b, AMQP_PORT).expect("tcpdump");
    let mut tap = Podtap::start(RUN_S, &[]).expect("podtap run");

    let session = pika_session(&pair.a, 0, rabbit.ip, rabbit.port, N as u32).expect("pika");
    let report = &session.report;
    assert_eq!(report["consumed"], N, "{report}");
    assert_eq!(report["get_tag"], N + 1, "{report}");
    assert_eq!(report["get_empty"], true, "{report}");
    assert_eq!(report["missing"], 404, "{report}");
    assert_eq!(report["confirmed"], N, "{report}");

    let ips = pair.ips();
    let records = {
        let client = (pair.a.ip.to_string(), 0);
        let server = (pair.b.ip.to_string(), AMQP_PORT);
        let want = expected_session(&client, &server).len();
        tap.wait_records(&ips, want, SETTLE);
        let out = tap.stop().expect("stop podtap");
        out.assert_clean_exit();
        out.records_for(&ips)
    };
    let pcap = tcpdump.stop().expect("stop tcpdump").to_owned();

    // Live: exactly the session, both ends attributed.
    let live: Vec<AmqpRecord> = records.iter().map(AmqpRecord::from_json).collect();
    let client_port = live.first().map(|r| r.client.1).expect("records");
    let client = (pair.a.ip.to_string(), client_port);
    let server = (pair.b.ip.to_string(), AMQP_PORT);
    assert_eq!(
        sorted(live.clone()),
        expected_session(&client, &server),
        "live records:\n{records:#?}"
    );
    let client_end =
        EndExpect::new(pair.a.ip, None, pair.a.container()).process(session.pid, &session.process);
    let server_end = EndExpect::new(pair.b.ip, Some(AMQP_PORT), pair.b.container());
    for r in &records {
        for (name, end) in [("client", &client_end), ("server", &server_end)] {
            assert_eq!(r[name]["pod_uid"], end.pod_uid.as_str(), "{name} in {r}");
            assert_eq!(
                r[name]["container_id"],
                end.container_id.as_str(),
                "{name} in {r}"
            );
        }
        assert_eq!(r["client"]["pid"], session.pid, "{r}");
        assert_eq!(r["client"]["process"], session.process.as_str(), "{r}");
    }

    // tshark on the capture of the same session.
    let methods = tshark_methods(&pcap).expect("tshark");
    assert!(methods.len() > 4 * N as usize, "{methods:#?}");
    assert_matches_tshark(&live, &methods);

    // The capture replayed: the same records.
    let replayed: Vec<AmqpRecord> = replay(&pcap)
        .expect("podtap replay")
        .iter()
        .filter(|r| involves(r, &ips))
        .map(AmqpRecord::from_json)
        .collect();
    assert_eq!(sorted(replayed), sorted(live), "replay vs live");
    drop(rabbit);
}

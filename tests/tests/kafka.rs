//! podtap against a real Kafka session between pods: the tansu broker in pod b, a kafka-python session
//! in pod a (metadata, produce N messages, fetch them back with `assign()`), recorded by tcpdump in
//! pod a. podtap's calls must be exactly those tshark finds in the recording, field by field (api,
//! version, correlation id, client id, topics, error code, answered or not), both ends attributed to
//! their pod; and `podtap replay` of the recording must give the same calls as the live run. Once with
//! short messages, once with 100 KB ones: Produce requests and Fetch responses far larger than podtap
//! buffers and than the kernel copies of a packet (read from their first bytes, the rest skipped).
//! Needs root and the podtap binary (see `podtap::binary`).

use std::time::Duration;

use podtap_tests::kafka::{calls_of_records, calls_of_tshark, count, kafka_session, Tansu};
use podtap_tests::tcpdump::{replay, Tcpdump};
use podtap_tests::{CgroupDriver, PodPair, Podtap};

/// podtap runs at most this long; the test stops it with SIGINT well before.
const RUN_S: u32 = 180;
/// How long to wait for records to show up after the traffic.
const SETTLE: Duration = Duration::from_secs(15);
/// The broker's port (Kafka's well-known one; detection does not need it, the requests are enough).
const PORT: u16 = 9092;

#[test]
fn a_produce_fetch_metadata_session_matches_tshark_live_and_replayed() {
    session(10, 0, CgroupDriver::Systemd, CgroupDriver::Cgroupfs);
}

#[test]
fn b_hundred_kilobyte_messages_are_read_from_their_start() {
    session(6, 100 * 1024, CgroupDriver::Cgroupfs, CgroupDriver::Systemd);
}

/// `messages` messages of `size` bytes (short ones for 0), each waited for (one Produce call each),
/// then fetched back.
fn session(messages: usize, size: usize, driver_a: CgroupDriver, driver_b: CgroupDriver) {
    let pair = PodPair::new(driver_a, driver_b).expect("pods");
    let broker = Tansu::start(&pair.b, 0, PORT).expect("tansu");
    let mut tap = Podtap::start(RUN_S, &[]).expect("podtap run");
    let mut dump =
        Tcpdump::record(&pair.a, 0, "any", &format!("tcp port {PORT}")).expect("tcpdump");
    let topic = format!("podtap-{}-{size}", std::process::id());
    let session = kafka_session(&pair.a, 0, &broker.address(), &topic, messages, size)
        .expect("kafka-python session");
    let said: serde_json::Value =
        serde_json::from_str(session.stdout.trim()).expect("the session's JSON line");
    let fetched = said["fetched"].as_array().map_or(0, Vec::len);
    assert_eq!(fetched, messages, "fetched back: {}", session.stdout);
    dump.stop().expect("tcpdump stops");
    let tcpdump_said = dump.log.join("\n");

    let tshark = calls_of_tshark(&dump.file, PORT).expect("tshark");
    tap.wait_records(&pair.ips(), tshark.len(), SETTLE);
    let out = tap.stop().expect("stop");
    out.assert_clean_exit();
    let records = out.records_for(&pair.ips());
    let live = calls_of_records(&records);

    // Exactly the session tshark sees, call by call.
    assert_eq!(
        live, tshark,
        "podtap (left) and tshark (right) on the same session; tcpdump: {tcpdump_said}"
    );
    assert_eq!(records.len(), live.len(), "only Kafka calls: {records:?}");
    assert_eq!(count(&live, "Produce"), messages);
    for api in ["Fetch", "Metadata", "ApiVersions"] {
        assert!(count(&live, api) >= 1, "{api}: {live:#?}");
    }
    assert_eq!(
        live.len(),
        ["Produce", "Fetch", "Metadata", "ApiVersions"]
            .iter()
            .map(|api| count(&live, api))
            .sum::<usize>(),
        "no other api: {live:#?}"
    );
    for call in live.iter().filter(|c| c.api == "Produce") {
        assert_eq!(call.topics, std::slice::from_ref(&topic), "{call:?}");
        assert_eq!(call.client_id, "podtap-producer", "{call:?}");
        assert_eq!(call.error_code, Some(Some(0)), "{call:?}");
    }
    for call in live.iter().filter(|c| c.api == "Fetch") {
        assert_eq!(call.topics, std::slice::from_ref(&topic), "{call:?}");
        assert_eq!(call.client_id, "podtap-consumer", "{call:?}");
    }
    // Every call answered, but perhaps the consumer's last long poll (cut by its close).
    let unanswered: Vec<_> = live.iter().filter(|c| c.error_code.is_none()).collect();
    assert!(
        unanswered.iter().all(|c| c.api == "Fetch") && unanswered.len() <= 1,
        "{unanswered:#?}"
    );

    // Both ends named: the python client in pod a, the broker in pod b.
    for r in &records {
        let (client, server) = (&r["client"], &r["server"]);
        assert_eq!(client["ip"], pair.a.ip.to_string().as_str(), "{r}");
        assert_eq!(
            client["pod_uid"],
            pair.a.container().pod_uid.as_str(),
            "{r}"
        );
        assert_eq!(
            client["container_id"],
            pair.a.container().id.as_str(),
            "{r}"
        );
        assert_eq!(client["pid"], session.pid, "{r}");
        assert_eq!(server["ip"], pair.b.ip.to_string().as_str(), "{r}");
        assert_eq!(server["port"], PORT, "{r}");
        assert_eq!(
            server["pod_uid"],
            pair.b.container().pod_uid.as_str(),
            "{r}"
        );
        assert_eq!(
            server["container_id"],
            pair.b.container().id.as_str(),
            "{r}"
        );
        assert_eq!(r["transport"], "tcp", "{r}");
        let expect_status = match (r["response"].is_object(), &r["response"]["error_code"]) {
            (false, _) => "no_response",
            (true, code) if code.as_i64().is_some_and(|c| c != 0) => "error",
            _ => "ok",
        };
        assert_eq!(r["status"], expect_status, "{r}");
    }

    // The recording replayed: the same calls.
    let replayed = calls_of_records(&replay(&dump.file).expect("podtap replay"));
    assert_eq!(replayed, live, "replay (left) and live (right)");
    let summary = out.summary().unwrap_or_default().to_owned();
    assert_eq!(out.summary_counter("malformed"), Some(0), "{summary}");
    if size > 0 {
        // The kernel cut the large packets (it copies 4096 bytes of each) or skipped their bytes
        // at podtap's request: podtap saw the bodies' first bytes only.
        let cut = out.summary_counter("payload_truncated").unwrap_or(0)
            + out.summary_counter("bytes_skipped").unwrap_or(0);
        assert!(cut > 0, "{summary}");
    }
    drop(broker);
}

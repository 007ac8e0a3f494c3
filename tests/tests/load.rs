//! podtap under load: wrk for 2 s against nginx, every completed request is reported.
//!
//! Exact equality is not possible: wrk counts only requests whose response it read before its timer
//! stopped; requests in flight at that moment (at most one per connection) were sent, and may even have
//! been answered, so podtap rightly reports them (as `ok` or `no_response`). Hence
//! `completed <= reported <= completed + connections`.

use std::time::Duration;

use podtap_tests::clients::wrk;
use podtap_tests::{CgroupDriver, Nginx, PodPair, Podtap};

#[test]
fn i_wrk_two_seconds_every_request_reported() {
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Cgroupfs).expect("pods");
    let nginx = Nginx::start(&pair.b, 0, 8080).expect("nginx");
    let mut tap = Podtap::start(120, &[]).expect("podtap run");
    let connections = 4;
    let r = wrk(&pair.a, 0, &nginx.url("/items/1"), connections, 2).expect("wrk");
    assert_eq!(r.errors, 0, "{r:?}");
    assert!(r.requests > 0, "{r:?}");
    tap.wait_records(&pair.ips(), r.requests as usize, Duration::from_secs(20));
    // Let the last in-flight calls settle before stopping.
    std::thread::sleep(Duration::from_secs(1));
    let out = tap.stop().expect("stop");
    out.assert_clean_exit();
    let records = out.records_for(&pair.ips());
    let reported = records.len() as u64;
    let ok = records.iter().filter(|x| x["status"] == "ok").count() as u64;
    eprintln!(
        "wrk completed {} requests, podtap reported {reported} ({ok} ok); {}",
        r.requests,
        out.summary().unwrap_or("")
    );
    assert!(
        reported >= r.requests && reported <= r.requests + u64::from(connections),
        "wrk completed {} requests on {connections} connections, podtap reported {reported}",
        r.requests
    );
    assert!(
        ok >= r.requests,
        "wrk completed {} requests, podtap reported only {ok} as ok",
        r.requests
    );
    for x in &records {
        assert_eq!(x["request"]["path"], "/items/1", "{x}");
        assert_eq!(x["client"]["pod_uid"], pair.a.uid(), "{x}");
        assert_eq!(x["server"]["pod_uid"], pair.b.uid(), "{x}");
        assert_eq!(x["client"]["process"], "wrk", "{x}");
        assert_eq!(x["server"]["port"], 8080, "{x}");
    }
    if let Some(drops) = out.summary_counter("drops") {
        assert_eq!(
            drops,
            0,
            "podtap dropped events: {}",
            out.summary().unwrap_or("")
        );
    }
}

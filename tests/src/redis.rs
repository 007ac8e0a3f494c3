//! Redis peers in pods: `redis-server` (no persistence, foreground, bound to the pod's address),
//! `redis-cli` runs and long-lived subscribers, `redis-benchmark`; tshark's count of the commands in a
//! capture; and the parts of podtap's Redis records the tests compare.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::clients::{run_client, ClientRun};
use crate::netns::{Pod, PodProcess};
use crate::util::{require_tool, run, wait_until, TempDir};

const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// `redis-server` listening on `ip:port` in a pod.
#[derive(Debug)]
pub struct RedisServer {
    pub ip: Ipv4Addr,
    pub port: u16,
    // Field order: the process dies before its directory is removed.
    pub process: PodProcess,
    pub dir: TempDir,
}

impl RedisServer {
    /// `redis-server --bind IP --port PORT --save "" --appendonly no --protected-mode no` in the
    /// foreground; returns once it accepts connections.
    pub fn start(pod: &Pod, container: usize, port: u16) -> Result<Self> {
        Self::start_with(pod, container, port, &["--port", &port.to_string()])
    }

    /// The same with `listen` in place of `--port PORT` (what the server listens on: `port` is where
    /// it is waited for), e.g. a TLS port.
    pub fn start_with(pod: &Pod, container: usize, port: u16, listen: &[&str]) -> Result<Self> {
        let server = require_tool("redis-server")?.to_string_lossy().into_owned();
        let dir = TempDir::new("podtap-redis")?;
        let ip = pod.ip.to_string();
        let d = dir.path().to_string_lossy().into_owned();
        let log = dir.path().join("redis.log");
        let log_s = log.to_string_lossy().into_owned();
        let mut args = vec!["--bind", &ip];
        args.extend_from_slice(listen);
        args.extend_from_slice(&[
            "--save",
            "",
            "--appendonly",
            "no",
            // Clients come from the other pod, and there is no password.
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--dir",
            &d,
            "--logfile",
            &log_s,
        ]);
        let process = pod.spawn(container, &server, &args)?;
        let mut this = Self {
            ip: pod.ip,
            port,
            process,
            dir,
        };
        if let Err(e) = pod.wait_listening(pod.ip, port, READY_TIMEOUT) {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let status = this.process.child.try_wait().ok().flatten();
            return Err(e.context(format!(
                "redis-server {listen:?} did not start (exit: {status:?}); log:\n{log}"
            )));
        }
        Ok(this)
    }

    /// `-h IP -p PORT`, the address arguments of redis-cli and redis-benchmark.
    fn address(&self) -> [String; 4] {
        [
            "-h".into(),
            self.ip.to_string(),
            "-p".into(),
            self.port.to_string(),
        ]
    }
}

/// Runs `redis-cli -h IP -p PORT args...` in the pod and waits for it; `stdin`: a file read by `-x`.
pub fn redis_cli(
    pod: &Pod,
    container: usize,
    server: &RedisServer,
    args: &[&str],
    stdin: Option<&Path>,
) -> Result<ClientRun> {
    let cli = require_tool("redis-cli")?.to_string_lossy().into_owned();
    let address = server.address();
    let all: Vec<&str> = address
        .iter()
        .map(String::as_str)
        .chain(args.iter().copied())
        .collect();
    let mut cmd = pod.command(container, &cli, &all)?;
    match stdin {
        Some(path) => {
            cmd.stdin(std::fs::File::open(path).with_context(|| path.display().to_string())?)
        }
        None => cmd.stdin(Stdio::null()),
    };
    run_client(&mut cmd, &format!("redis-cli {args:?}"))
}

/// A `redis-cli SUBSCRIBE` left running; its output lines are collected as they come.
#[derive(Debug)]
pub struct Subscriber {
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    pub process: PodProcess,
}

impl Subscriber {
    /// `redis-cli [-3] SUBSCRIBE channel`; returns once the server confirmed the subscription.
    pub fn start(
        pod: &Pod,
        container: usize,
        server: &RedisServer,
        resp3: bool,
        channel: &str,
    ) -> Result<Self> {
        let cli = require_tool("redis-cli")?.to_string_lossy().into_owned();
        let address = server.address();
        let mut args: Vec<&str> = address.iter().map(String::as_str).collect();
        if resp3 {
            args.push("-3");
        }
        args.extend(["SUBSCRIBE", channel]);
        let mut process = pod.spawn(container, &cli, &args)?;
        let stdout = process.child.stdout.take().context("redis-cli stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut this = Self {
            lines: rx,
            seen: Vec::new(),
            process,
        };
        // redis-cli prints the confirmation as three lines: `subscribe`, the channel, the count.
        this.wait_for(&["subscribe", channel])?;
        Ok(this)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Waits until the lines in `want` were printed one after the other (after what was awaited so far).
    pub fn wait_for(&mut self, want: &[&str]) -> Result<()> {
        let found = wait_until(READY_TIMEOUT, || {
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            let tail: Vec<&str> = self.seen.iter().map(|l| l.trim()).collect();
            let at = tail.windows(want.len()).position(|w| w == want)?;
            self.seen.drain(..at + want.len());
            Some(())
        });
        if found.is_none() {
            bail!(
                "the subscriber did not print {want:?}; it printed {:?}",
                self.seen
            );
        }
        Ok(())
    }
}

/// `redis-benchmark -h IP -p PORT -P pipeline -n requests -c clients -t set,get -q` in the pod.
pub fn redis_benchmark(
    pod: &Pod,
    container: usize,
    server: &RedisServer,
    requests: u32,
    pipeline: u32,
    clients: u32,
) -> Result<ClientRun> {
    let bench = require_tool("redis-benchmark")?
        .to_string_lossy()
        .into_owned();
    let address = server.address();
    let (p, n, c) = (
        pipeline.to_string(),
        requests.to_string(),
        clients.to_string(),
    );
    let mut args: Vec<&str> = address.iter().map(String::as_str).collect();
    args.extend(["-P", &p, "-n", &n, "-c", &c, "-t", "set,get", "-q"]);
    run_client(
        pod.command(container, &bench, &args)?.stdin(Stdio::null()),
        "redis-benchmark",
    )
}

/// How many commands of each name (upper case) the clients sent to `port` in a capture, as tshark
/// dissects them: per packet, `resp.array.length` lists the arrays and `resp.bulk_string.value` their
/// elements in order, so each command's name is the value at the running sum of the lengths. Only for
/// captures whose commands each fit in one segment (tshark lists a command it reassembles from several
/// segments once per segment).
pub fn tshark_commands(file: &Path, port: u16) -> Result<BTreeMap<String, u64>> {
    require_tool("tshark")?;
    let filter = format!("tcp.dstport=={port} && resp.array");
    let decode = format!("tcp.port=={port},resp");
    let out = run(Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-d", &decode, "-Y", &filter, "-T", "fields"])
        .args(["-e", "resp.array.length", "-e", "resp.bulk_string.value"]))?;
    let mut counts = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (lengths, values) = line.split_once('\t').context("two fields")?;
        let values: Vec<&str> = values.split(',').collect();
        let mut at = 0;
        for length in lengths.split(',') {
            let length: usize = length
                .parse()
                .with_context(|| format!("array length in {line}"))?;
            let name = values.get(at).context("a command name")?;
            let name = hex(name).with_context(|| format!("hex {name}"))?;
            *counts.entry(name.to_ascii_uppercase()).or_insert(0) += 1;
            at += length;
        }
    }
    Ok(counts)
}

fn hex(text: &str) -> Option<String> {
    let bytes = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// What a test asserts of one Redis record: `command`, `args`, `text`, reply `type` (empty without
/// one), `error` (empty without one), `status`, `version`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RedisCall {
    pub command: String,
    pub args: u64,
    pub text: String,
    pub reply: String,
    pub error: String,
    pub status: String,
    pub version: String,
}

impl RedisCall {
    pub fn of(r: &Value) -> Self {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        Self {
            command: text(&r["request"]["command"]),
            args: r["request"]["args"].as_u64().unwrap_or(u64::MAX),
            text: text(&r["request"]["text"]),
            reply: text(&r["response"]["type"]),
            error: text(&r["response"]["error"]),
            status: text(&r["status"]),
            version: text(&r["version"]),
        }
    }

    /// A call answered by a reply of type `reply`.
    pub fn new(text: &str, args: u64, reply: &str, version: &str) -> Self {
        let words: Vec<&str> = text.split(' ').collect();
        let command = if words.len() > 1 && words[1].chars().all(|c| c.is_ascii_uppercase()) {
            format!("{} {}", words[0], words[1])
        } else {
            words[0].to_owned()
        };
        Self {
            command,
            args,
            text: text.to_owned(),
            reply: reply.to_owned(),
            error: String::new(),
            status: "ok".to_owned(),
            version: version.to_owned(),
        }
    }

    /// The same call answered by an error.
    pub fn error(mut self, error: &str) -> Self {
        self.reply = "error".to_owned();
        self.error = error.to_owned();
        self.status = "error".to_owned();
        self
    }

    /// A pushed message: no reply.
    pub fn pushed(mut self) -> Self {
        self.reply.clear();
        self
    }
}

/// The calls of each connection (keyed by client port), in time order: live and replayed records of
/// the same traffic must give the same map.
pub fn by_connection(records: &[Value]) -> BTreeMap<u64, Vec<RedisCall>> {
    let mut map: BTreeMap<u64, Vec<RedisCall>> = BTreeMap::new();
    for r in records {
        let port = r["client"]["port"].as_u64().unwrap_or_default();
        map.entry(port).or_default().push(RedisCall::of(r));
    }
    map
}

/// The connections whose calls differ between two `by_connection` maps, for a failure message.
pub fn differences(
    left: &BTreeMap<u64, Vec<RedisCall>>,
    right: &BTreeMap<u64, Vec<RedisCall>>,
) -> String {
    let mut out = String::new();
    for port in left
        .keys()
        .chain(right.keys().filter(|p| !left.contains_key(p)))
    {
        let (l, r) = (left.get(port), right.get(port));
        if l == r {
            continue;
        }
        let (l, r) = (
            l.map_or(&[][..], Vec::as_slice),
            r.map_or(&[][..], Vec::as_slice),
        );
        let first = l
            .iter()
            .zip(r)
            .position(|(a, b)| a != b)
            .unwrap_or(l.len().min(r.len()));
        out.push_str(&format!(
            "client port {port}: {} calls vs {}; first difference at call {first}: {:?} vs {:?}\n",
            l.len(),
            r.len(),
            l.get(first),
            r.get(first)
        ));
    }
    out
}

//! AMQP 0-9-1 end to end: RabbitMQ started in a pod, a pika session run from another pod, tcpdump
//! recording the session in a pod, tshark's reading of that capture, and podtap's AMQP records in a
//! comparable form.
//!
//! RabbitMQ runs as root with everything in a temp dir (`HOME`, mnesia, logs, Erlang cookie) and its
//! own epmd in the pod's network namespace, so it touches nothing of the host's. Drop stops it
//! (`rabbitmqctl stop`, then `epmd -kill`); the pod's cgroup kill takes whatever is left.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;

use crate::netns::{Pod, PodProcess};
use crate::util::{python, python_with, require_tool, run, wait_until, workspace_root, TempDir};

/// The RabbitMQ scripts that run as the calling user (`/usr/sbin/rabbitmq*` switch to the `rabbitmq`
/// user and its home, and so its Erlang cookie).
const RABBITMQ_BIN: &str = "/usr/lib/rabbitmq/bin";
/// A first boot (new mnesia database) takes about 5 s here.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The harness's pika session (`python/amqp_client.py`).
pub const CLIENT_PY: &str = include_str!("../python/amqp_client.py");
/// The exchange, queue, routing key and missing queue the pika session uses.
pub const EXCHANGE: &str = "podtap-ex";
pub const QUEUE: &str = "podtap-q";
pub const ROUTING_KEY: &str = "podtap-key";
pub const MISSING_QUEUE: &str = "podtap-missing";

/// rabbitmq-server 3.x listening on `ip:port` in a pod.
#[derive(Debug)]
pub struct RabbitMq<'p> {
    pub ip: Ipv4Addr,
    pub port: u16,
    pod: &'p Pod,
    container: usize,
    // Field order: the server dies before its directory is removed.
    process: Option<PodProcess>,
    dir: TempDir,
}

impl<'p> RabbitMq<'p> {
    /// Starts the broker in `pod` and returns once it accepts AMQP connections. The guest user may log
    /// in from other pods (`loopback_users = none`).
    pub fn start(pod: &'p Pod, container: usize, port: u16) -> Result<Self> {
        let server = Path::new(RABBITMQ_BIN).join("rabbitmq-server");
        ensure!(
            server.is_file(),
            "{} not found: rabbitmq-server not installed (run `cargo xtask setup`)",
            server.display()
        );
        require_tool("epmd")?;
        let dir = TempDir::new("podtap-rabbitmq")?;
        let config = dir.path().join("rabbitmq.conf");
        std::fs::write(
            &config,
            format!(
                "listeners.tcp.default = {}:{port}\nloopback_users = none\n",
                pod.ip
            ),
        )?;
        let mut this = Self {
            ip: pod.ip,
            port,
            pod,
            container,
            process: None,
            dir,
        };
        let mut cmd = this.command(&server.to_string_lossy(), &[])?;
        cmd.env("RABBITMQ_CONFIG_FILE", &config)
            .env("RABBITMQ_NODE_IP_ADDRESS", pod.ip.to_string())
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().context("starting rabbitmq-server")?;
        this.process = Some(PodProcess { child });
        if let Err(e) = pod.wait_listening(pod.ip, port, START_TIMEOUT) {
            let status = this
                .process
                .as_mut()
                .and_then(|p| p.child.try_wait().ok().flatten());
            return Err(e.context(format!(
                "rabbitmq-server did not start (exit: {status:?}); log:\n{}",
                this.log()
            )));
        }
        Ok(this)
    }

    /// A command run in the broker's pod and container with its environment.
    fn command(&self, program: &str, args: &[&str]) -> Result<Command> {
        let d = self.dir.path();
        let mut cmd = self.pod.command(self.container, program, args)?;
        cmd.current_dir(d)
            .env("HOME", d)
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_NODENAME", "rabbit@localhost")
            .env("ERL_EPMD_ADDRESS", self.ip.to_string());
        Ok(cmd)
    }

    /// The broker's log, for error messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/rabbit@localhost.log"))
            .unwrap_or_default()
    }

    /// `rabbitmqctl stop`, then `epmd -kill`; each bounded in time.
    fn stop(&mut self) -> Result<()> {
        let ctl = Path::new(RABBITMQ_BIN).join("rabbitmqctl");
        let mut stop = self.command(&ctl.to_string_lossy(), &["stop"])?;
        run_bounded(&mut stop, STOP_TIMEOUT).context("rabbitmqctl stop")?;
        if let Some(mut process) = self.process.take() {
            wait_until(STOP_TIMEOUT, || process.child.try_wait().ok().flatten());
        }
        let mut epmd = self.command("epmd", &["-kill"])?;
        run_bounded(&mut epmd, STOP_TIMEOUT).context("epmd -kill")?;
        Ok(())
    }
}

impl Drop for RabbitMq<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("podtap-tests: stopping rabbitmq: {e:#}");
        }
        // Whatever did not stop is killed with the pod's cgroup.
    }
}

/// Runs `cmd` (stdio null) and waits at most `timeout`; killed and an error past that or on failure.
fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<()> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    match wait_until(timeout, || child.try_wait().ok().flatten()) {
        Some(status) if status.success() => Ok(()),
        Some(status) => bail!("{cmd:?} failed: {status}"),
        None => {
            child.kill().ok();
            child.wait().ok();
            bail!("{cmd:?} did not finish within {timeout:?}")
        }
    }
}

/// What the pika session reports about itself.
#[derive(Debug)]
pub struct PikaSession {
    pub pid: u32,
    /// The process name podtap should report (`/proc/self/comm`).
    pub process: String,
    pub report: Value,
}

/// Runs `python/amqp_client.py` in `pod` against `host:port` with `n` messages per step; waits for it.
pub fn pika_session(
    pod: &Pod,
    container: usize,
    host: Ipv4Addr,
    port: u16,
    n: u32,
) -> Result<PikaSession> {
    let py = python_with("pika")?;
    let dir = TempDir::new("podtap-pika")?;
    let script = dir.path().join("amqp_client.py");
    std::fs::write(&script, CLIENT_PY)?;
    let mut cmd = pod.command(
        container,
        &py.to_string_lossy(),
        &[
            &script.to_string_lossy(),
            &host.to_string(),
            &port.to_string(),
            &n.to_string(),
        ],
    )?;
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .context("running the pika session")?;
    if !out.status.success() {
        bail!(
            "pika session failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("pika session report: {stdout}"))?;
    Ok(PikaSession {
        pid: report["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .context("pid")?,
        process: report["process"].as_str().context("process")?.to_owned(),
        report,
    })
}

/// AMQP 0-9-1 method names by (class id, method id), as the specification writes them.
pub fn method_name(class: u16, method: u16) -> Option<String> {
    let class_name = match class {
        10 => "connection",
        20 => "channel",
        30 => "access",
        40 => "exchange",
        50 => "queue",
        60 => "basic",
        85 => "confirm",
        90 => "tx",
        _ => return None,
    };
    let method_name = match (class, method) {
        (10, 10) => "start",
        (10, 11) => "start-ok",
        (10, 20) => "secure",
        (10, 21) => "secure-ok",
        (10, 30) => "tune",
        (10, 31) => "tune-ok",
        (10, 40) | (20, 10) | (30, 10) => match class {
            30 => "request",
            _ => "open",
        },
        (10, 41) | (20, 11) | (30, 11) => match class {
            30 => "request-ok",
            _ => "open-ok",
        },
        (10, 50) | (20, 40) => "close",
        (10, 51) | (20, 41) => "close-ok",
        (10, 60) => "blocked",
        (10, 61) => "unblocked",
        (10, 70) => "update-secret",
        (10, 71) => "update-secret-ok",
        (20, 20) => "flow",
        (20, 21) => "flow-ok",
        (40 | 50, 10) => "declare",
        (40 | 50, 11) => "declare-ok",
        (85 | 90, 10) => "select",
        (85 | 90, 11) => "select-ok",
        (40, 20) | (50, 40) => "delete",
        (40, 21) | (50, 41) => "delete-ok",
        (40, 30) | (50, 20) => "bind",
        (40, 31) | (50, 21) => "bind-ok",
        (40, 40) | (50, 50) => "unbind",
        (40 | 50, 51) => "unbind-ok",
        (50, 30) => "purge",
        (50, 31) => "purge-ok",
        (60, 10) => "qos",
        (60, 11) => "qos-ok",
        (60, 20) => "consume",
        (60, 21) => "consume-ok",
        (60, 30) => "cancel",
        (60, 31) => "cancel-ok",
        (60, 40) => "publish",
        (60, 50) => "return",
        (60, 60) => "deliver",
        (60, 70) => "get",
        (60, 71) => "get-ok",
        (60, 72) => "get-empty",
        (60, 80) => "ack",
        (60, 90) => "reject",
        (60, 100) => "recover-async",
        (60, 110) => "recover",
        (60, 111) => "recover-ok",
        (60, 120) => "nack",
        (90, 20) => "commit",
        (90, 21) => "commit-ok",
        (90, 30) => "rollback",
        (90, 31) => "rollback-ok",
        _ => return None,
    };
    Some(format!("{class_name}.{method_name}"))
}

/// One method frame as tshark dissected it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsharkMethod {
    pub frame: u64,
    pub src_port: u16,
    pub dst_port: u16,
    pub method: String,
    pub channel: u16,
    /// Empty when absent (tshark does not tell an empty argument from a missing one).
    pub exchange: String,
    pub routing_key: String,
    pub queue: String,
    pub delivery_tag: Option<u64>,
    pub reply_code: Option<u16>,
}

/// Every AMQP method frame tshark finds in `pcap` (`python/tshark_amqp.py`).
pub fn tshark_methods(pcap: &Path) -> Result<Vec<TsharkMethod>> {
    require_tool("tshark")?;
    let script = workspace_root().join("tests/python/tshark_amqp.py");
    let out = run(Command::new(python()?).arg(&script).arg(pcap))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(parse_tshark_line)
        .collect()
}

fn parse_tshark_line(line: &str) -> Result<TsharkMethod> {
    let f: Vec<&str> = line.split('\t').collect();
    ensure!(
        f.len() == 11,
        "tshark line with {} columns: {line}",
        f.len()
    );
    let number = |s: &str| -> Result<u16> { s.parse().with_context(|| format!("{s:?} in {line}")) };
    let (class, method) = (number(f[4])?, number(f[5])?);
    Ok(TsharkMethod {
        frame: f[0].parse().context("frame")?,
        src_port: number(f[1])?,
        dst_port: number(f[2])?,
        method: method_name(class, method)
            .with_context(|| format!("unknown method {class}/{method}"))?,
        channel: number(f[3])?,
        exchange: f[6].to_owned(),
        routing_key: f[7].to_owned(),
        queue: f[8].to_owned(),
        delivery_tag: (!f[9].is_empty())
            .then(|| f[9].parse())
            .transpose()
            .context("delivery tag")?,
        reply_code: (!f[10].is_empty()).then(|| number(f[10])).transpose()?,
    })
}

/// An AMQP call record reduced to what both live and replayed records must agree on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AmqpRecord {
    pub method: String,
    pub channel: u16,
    pub exchange: Option<String>,
    pub routing_key: Option<String>,
    pub queue: Option<String>,
    pub delivery_tag: Option<u64>,
    pub response: Option<(String, Option<u16>)>,
    pub status: String,
    pub client: (String, u16),
    pub server: (String, u16),
}

impl AmqpRecord {
    /// Reads a JSON call record; panics (with the record) when it is not a well-formed AMQP one.
    pub fn from_json(r: &Value) -> Self {
        let ctx = || serde_json::to_string(r).unwrap_or_default();
        assert_eq!(r["protocol"], "amqp", "{}", ctx());
        assert_eq!(r["transport"], "tcp", "{}", ctx());
        let request = &r["request"];
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let end = |name: &str| {
            (
                r[name]["ip"].as_str().unwrap_or_default().to_owned(),
                r[name]["port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or_default(),
            )
        };
        let response = r.get("response").map(|resp| {
            (
                resp["method"].as_str().unwrap_or_default().to_owned(),
                resp["reply_code"]
                    .as_u64()
                    .and_then(|c| u16::try_from(c).ok()),
            )
        });
        assert_eq!(
            r.get("duration_ms").is_some(),
            response.is_some(),
            "duration_ms exactly when a response: {}",
            ctx()
        );
        Self {
            method: request["method"].as_str().unwrap_or_default().to_owned(),
            channel: request["channel"]
                .as_u64()
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(u16::MAX),
            exchange: text(&request["exchange"]),
            routing_key: text(&request["routing_key"]),
            queue: text(&request["queue"]),
            delivery_tag: request["delivery_tag"].as_u64(),
            response,
            status: r["status"].as_str().unwrap_or_default().to_owned(),
            client: end("client"),
            server: end("server"),
        }
    }
}

fn counts<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for name in names {
        *out.entry(name.to_owned()).or_default() += 1;
    }
    out
}

/// Asserts that `records` report exactly the method frames tshark saw: every method once (as a request,
/// a response or a one-way record), each request with the channel, exchange, routing key, queue and
/// delivery tag of a distinct tshark line of that method on the same connection, and the closes' reply
/// codes in the responses.
pub fn assert_matches_tshark(records: &[AmqpRecord], methods: &[TsharkMethod]) {
    let dump = || {
        records
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let ours = counts(records.iter().flat_map(|r| {
        std::iter::once(r.method.as_str()).chain(r.response.as_ref().map(|(m, _)| m.as_str()))
    }));
    let theirs = counts(methods.iter().map(|m| m.method.as_str()));
    assert_eq!(ours, theirs, "method counts, podtap vs tshark:\n{}", dump());
    let mut unused: Vec<&TsharkMethod> = methods.iter().collect();
    for r in records {
        let at = unused.iter().position(|m| {
            m.method == r.method
                && m.channel == r.channel
                && m.exchange == r.exchange.clone().unwrap_or_default()
                && m.routing_key == r.routing_key.clone().unwrap_or_default()
                && m.queue == r.queue.clone().unwrap_or_default()
                // A confirmed publish's number is podtap's count, not on the wire.
                && (m.delivery_tag == r.delivery_tag
                    || (m.method == "basic.publish" && m.delivery_tag.is_none()))
                && (m.src_port == r.client.1 || m.src_port == r.server.1)
        });
        let Some(at) = at else {
            panic!("no tshark line for {r:?} among {unused:#?}");
        };
        unused.remove(at);
    }
    let mut want: Vec<u16> = methods
        .iter()
        .filter(|m| m.method.ends_with(".close"))
        .filter_map(|m| m.reply_code)
        .collect();
    let mut got: Vec<u16> = records
        .iter()
        .filter_map(|r| r.response.as_ref().and_then(|(_, code)| *code))
        .collect();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want, "reply codes:\n{}", dump());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_methods_as_the_specification() {
        assert_eq!(method_name(10, 10).as_deref(), Some("connection.start"));
        assert_eq!(method_name(20, 41).as_deref(), Some("channel.close-ok"));
        assert_eq!(method_name(40, 51).as_deref(), Some("exchange.unbind-ok"));
        assert_eq!(method_name(50, 40).as_deref(), Some("queue.delete"));
        assert_eq!(method_name(60, 72).as_deref(), Some("basic.get-empty"));
        assert_eq!(method_name(85, 11).as_deref(), Some("confirm.select-ok"));
        assert_eq!(method_name(90, 20).as_deref(), Some("tx.commit"));
        assert_eq!(method_name(60, 5), None);
    }

    #[test]
    fn reads_a_tshark_line() {
        let m =
            parse_tshark_line("58\t5672\t42162\t1\t60\t60\texchange-1\trk-1\t\t1\t").expect("line");
        assert_eq!(m.method, "basic.deliver");
        assert_eq!((m.src_port, m.dst_port, m.channel), (5672, 42162, 1));
        assert_eq!(m.exchange, "exchange-1");
        assert_eq!(m.delivery_tag, Some(1));
        assert_eq!(m.reply_code, None);
        assert!(parse_tshark_line("1\t2").is_err());
    }
}

//! Real Prometheus (Debian `prometheus`, 2.42) as a child process: scrapes given targets and evaluates
//! given rule files every second, on a free loopback port with its own temporary storage; stopped on
//! drop. Also `promtool` for the rule files' checks and unit tests.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::util::{require_tool, run, wait_until, TempDir};

/// How long Prometheus may take to answer `/-/ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The alert rules podtap ships (README, "Sensitive calls and alerts").
pub fn shipped_rules() -> PathBuf {
    crate::util::workspace_root().join("dashboards/prometheus/podtap-rules.yaml")
}

/// Their `promtool test rules` unit tests.
pub fn shipped_rule_tests() -> PathBuf {
    crate::util::workspace_root().join("dashboards/prometheus/podtap-rules.test.yaml")
}

/// `promtool check rules FILE`: the output, or an error with it.
pub fn promtool_check_rules(file: &Path) -> Result<String> {
    let promtool = require_tool("promtool")?;
    let out = run(Command::new(promtool).args(["check", "rules"]).arg(file))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `promtool test rules FILE` (run in the file's directory, as its `rule_files` are relative).
pub fn promtool_test_rules(file: &Path) -> Result<String> {
    let promtool = require_tool("promtool")?;
    let dir = file.parent().context("test file has no directory")?;
    let out = run(Command::new(promtool)
        .current_dir(dir)
        .args(["test", "rules"])
        .arg(file))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A loopback port nobody listens on right now (the kernel picks it).
pub fn free_local_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding port 0")?;
    Ok(listener.local_addr()?.port())
}

/// A running Prometheus, killed on drop.
#[derive(Debug)]
pub struct Prometheus {
    child: Option<Child>,
    pub addr: SocketAddr,
    dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`, path `/metrics`) and evaluating
    /// `rule_files`, both every second.
    pub fn start(targets: &[String], rule_files: &[PathBuf]) -> Result<Self> {
        let bin = require_tool("prometheus")?;
        let dir = TempDir::new("podtap-prometheus")?;
        let config = dir.path().join("prometheus.yml");
        let targets_yaml: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let rules_yaml: Vec<String> = rule_files
            .iter()
            .map(|r| format!("  - '{}'\n", r.display()))
            .collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n{}\
                 scrape_configs:\n  - job_name: podtap\n    static_configs:\n      - targets: [{}]\n",
                rules_yaml.concat(),
                targets_yaml.join(", ")
            ),
        )?;
        let storage = dir.path().join("data");
        // The port is free now; if someone takes it before Prometheus binds, Prometheus exits and
        // the readiness wait below reports it.
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_local_port()?));
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", storage.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting prometheus")?;
        let mut this = Self {
            child: Some(child),
            addr,
            dir,
        };
        let ready = wait_until(READY_TIMEOUT, || {
            if let Some(child) = this.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(Err(anyhow::anyhow!("prometheus exited: {status}")));
                }
            }
            match this.get_raw("/-/ready") {
                Ok((200, _)) => Some(Ok(())),
                _ => None,
            }
        });
        match ready {
            Some(Ok(())) => Ok(this),
            Some(Err(e)) => Err(e).context(this.log()),
            None => bail!(
                "prometheus not ready on {addr} after {READY_TIMEOUT:?}; log:\n{}",
                this.log()
            ),
        }
    }

    /// Prometheus's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET path` on the HTTP API: status and body.
    fn get_raw(&self, path: &str) -> Result<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .context("HTTP response without a header end")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("HTTP response without a status")?;
        Ok((status, body.to_owned()))
    }

    /// `GET path` on the HTTP API, `data` of a successful JSON answer.
    pub fn api(&self, path: &str) -> Result<Value> {
        let (status, body) = self.get_raw(path)?;
        let v: Value = serde_json::from_str(&body)
            .with_context(|| format!("GET {path}: {status}, not JSON: {body}"))?;
        if status != 200 || v["status"] != "success" {
            bail!("GET {path}: {status} {body}");
        }
        Ok(v["data"].clone())
    }

    /// Every alert Prometheus holds now (`/api/v1/alerts`: pending and firing).
    pub fn alerts(&self) -> Result<Vec<Value>> {
        let data = self.api("/api/v1/alerts")?;
        Ok(data["alerts"].as_array().cloned().unwrap_or_default())
    }

    /// An instant query's result vector.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(expr)))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The scrape targets and their health (`/api/v1/targets`), for failure messages.
    pub fn targets(&self) -> Result<Value> {
        self.api("/api/v1/targets")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            if wait_until(Duration::from_secs(10), || child.try_wait().ok().flatten()).is_none() {
                child.kill().ok();
                child.wait().ok();
            }
        }
    }
}

fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

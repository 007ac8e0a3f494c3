//! HTTP/2 and gRPC peers for the end-to-end tests, and a packet recorder:
//!
//! - `Nghttpd`: nghttp2's server without TLS (prior knowledge only: it does not do the h2c upgrade).
//! - `GoH2c`: a Go `net/http` server behind `x/net/http2/h2c` (`go/src/h2c-server`), which does both the
//!   `Upgrade: h2c` exchange and prior knowledge.
//! - `GrpcServer`: grpcio with a generic handler (`python/grpc_server.py`).
//! - `grpc_client`: a grpc-go client (`go/src/grpc-client`).
//! - `h2load`, and curl through `clients::curl`.
//! - `Tcpdump`: records a pod's traffic to a pcap file, which `replay` runs through `podtap replay`.
//!
//! The Go programs are built from Debian's Go packages (golang-google-grpc-dev, golang-golang-x-net-dev,
//! under /usr/share/gocode) in GOPATH mode, offline, once per source version, into
//! `target/podtap-tests/go/<hash>/`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use crate::netns::{Pod, PodProcess};
use crate::util::{duration_us, python_with, require_tool, run, workspace_root, TempDir};

const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Body of `/small.txt` served by nghttpd.
pub const SMALL_BODY: &str = "hello over HTTP/2\n";

/// Where Debian's Go packages keep their sources (GOPATH layout).
const DEBIAN_GOPATH: &str = "/usr/share/gocode";

/// Builds (once per source version) the Go program `name` of `tests/go/src/` and returns its path.
pub fn go_binary(name: &str) -> Result<PathBuf> {
    build_go(name, GoSymbols::Kept)
}

/// Whether a Go build keeps its symbol table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoSymbols {
    Kept,
    /// `-ldflags=-s -w`: no `.symtab`, no DWARF; only `.gopclntab` still names the functions.
    Stripped,
}

/// `go_binary` with or without symbols (each its own cached file).
pub fn build_go(name: &str, symbols: GoSymbols) -> Result<PathBuf> {
    let go = require_tool("go")?;
    let gopath = workspace_root().join("tests/go");
    let source = gopath.join("src").join(name).join("main.go");
    let text = std::fs::read(&source).with_context(|| format!("reading {}", source.display()))?;
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    let version =
        String::from_utf8_lossy(&run(Command::new(&go).arg("version"))?.stdout).into_owned();
    version.hash(&mut hasher);
    let ldflags = match symbols {
        GoSymbols::Kept => "",
        GoSymbols::Stripped => "-s -w",
    };
    ldflags.hash(&mut hasher);
    let out_dir = workspace_root()
        .join("target/podtap-tests/go")
        .join(format!("{:016x}", hasher.finish()));
    let binary = out_dir.join(name);
    if binary.is_file() {
        return Ok(binary);
    }
    for (package, debian) in [
        ("google.golang.org/grpc", "golang-google-grpc-dev"),
        ("golang.org/x/net/http2/h2c", "golang-golang-x-net-dev"),
    ] {
        if !Path::new(DEBIAN_GOPATH).join("src").join(package).is_dir() {
            bail!("Go package {package} missing under {DEBIAN_GOPATH} (run `cargo xtask setup`: {debian})");
        }
    }
    std::fs::create_dir_all(&out_dir)?;
    // Tests run in parallel: build to a private name, then rename into place.
    let partial = out_dir.join(format!("{name}.{}.partial", std::process::id()));
    run(Command::new(&go)
        .args(["build", "-ldflags", ldflags, "-o"])
        .arg(&partial)
        .arg(name)
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOPATH", format!("{}:{DEBIAN_GOPATH}", gopath.display()))
        .env(
            "GOCACHE",
            workspace_root().join("target/podtap-tests/go/cache"),
        )
        .env("CGO_ENABLED", "0"))
    .with_context(|| format!("building {name} with go (GOPATH mode, offline)"))?;
    std::fs::rename(&partial, &binary)?;
    Ok(binary)
}

/// Size of `/big.bin` served by nghttpd.
pub const BIG_FILE_BYTES: usize = 10 * 1024 * 1024;

/// `nghttpd --no-tls` on `ip:port` serving `/small.txt`, `/big.bin` and `/items/1..=9`.
#[derive(Debug)]
pub struct Nghttpd {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub process: PodProcess,
    pub dir: TempDir,
}

impl Nghttpd {
    pub fn start(pod: &Pod, container: usize, port: u16) -> Result<Self> {
        let nghttpd = require_tool("nghttpd")?;
        let dir = TempDir::new("podtap-nghttpd")?;
        std::fs::write(dir.path().join("small.txt"), SMALL_BODY)?;
        std::fs::write(dir.path().join("big.bin"), vec![b'x'; BIG_FILE_BYTES])?;
        std::fs::create_dir_all(dir.path().join("items"))?;
        for i in 1..=9 {
            std::fs::write(
                dir.path().join("items").join(i.to_string()),
                format!("item {i}\n"),
            )?;
        }
        let process = pod.spawn(
            container,
            &nghttpd.to_string_lossy(),
            &[
                "--no-tls",
                "-a",
                &pod.ip.to_string(),
                "-d",
                &dir.path().to_string_lossy(),
                &port.to_string(),
            ],
        )?;
        pod.wait_listening(pod.ip, port, READY_TIMEOUT)
            .context("nghttpd did not start")?;
        Ok(Self {
            ip: pod.ip,
            port,
            process,
            dir,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, self.port)
    }
}

/// The Go h2c server (`go/src/h2c-server`): `/items/...` 200, `/big` 10 MiB, `/fail` 503, else 404.
#[derive(Debug)]
pub struct GoH2c {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub process: PodProcess,
}

impl GoH2c {
    pub fn start(pod: &Pod, container: usize, port: u16) -> Result<Self> {
        let binary = go_binary("h2c-server")?;
        let process = pod.spawn(
            container,
            &binary.to_string_lossy(),
            &[&format!("{}:{port}", pod.ip)],
        )?;
        pod.wait_listening(pod.ip, port, READY_TIMEOUT)
            .context("the Go h2c server did not start")?;
        Ok(Self {
            ip: pod.ip,
            port,
            process,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, self.port)
    }
}

/// The grpcio server (`python/grpc_server.py`), service `podtap.Test`.
#[derive(Debug)]
pub struct GrpcServer {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub process: PodProcess,
    pub dir: TempDir,
}

/// The grpcio server's script.
pub const GRPC_SERVER_PY: &str = include_str!("../python/grpc_server.py");

impl GrpcServer {
    pub fn start(pod: &Pod, container: usize, port: u16) -> Result<Self> {
        let python = python_with("grpc")?;
        let dir = TempDir::new("podtap-grpc")?;
        let script = dir.path().join("grpc_server.py");
        std::fs::write(&script, GRPC_SERVER_PY)?;
        let process = pod.spawn(
            container,
            &python.to_string_lossy(),
            &[
                &script.to_string_lossy(),
                &pod.ip.to_string(),
                &port.to_string(),
            ],
        )?;
        pod.wait_listening(pod.ip, port, READY_TIMEOUT)
            .context("the grpcio server did not start")?;
        Ok(Self {
            ip: pod.ip,
            port,
            process,
            dir,
        })
    }
}

/// What the grpc-go client did: its pid and, per call, (method, status code, messages received).
#[derive(Debug)]
pub struct GrpcRun {
    pub pid: u32,
    pub calls: Vec<(String, u32, u64)>,
}

/// Runs the grpc-go client against `target` (`ip:port`) from the pod.
pub fn grpc_client(pod: &Pod, container: usize, target: &str) -> Result<GrpcRun> {
    let binary = go_binary("grpc-client")?;
    let mut cmd = pod.command(container, &binary.to_string_lossy(), &[target])?;
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the grpc-go client")?;
    let pid = child.id();
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "grpc client failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let calls = stdout
        .lines()
        .map(|line| {
            let mut parts = line.split_whitespace();
            let method = parts.next().context("method")?.to_owned();
            let code = parts.next().context("code")?.parse()?;
            let received = parts.next().context("received")?.parse()?;
            Ok((method, code, received))
        })
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("grpc client output: {stdout}"))?;
    Ok(GrpcRun { pid, calls })
}

/// h2load's summary.
#[derive(Debug, Clone, Copy)]
pub struct H2loadResult {
    pub pid: u32,
    pub done: u64,
    pub succeeded: u64,
    pub status_2xx: u64,
    /// From `finished in 20.05ms, 9975.06 req/s, ...`.
    pub requests_per_sec: f64,
    /// Mean of the `time for request:` row, microseconds.
    pub request_mean_us: Option<f64>,
}

/// `h2load -n requests -c clients -m streams url` in the pod.
pub fn h2load(
    pod: &Pod,
    container: usize,
    url: &str,
    requests: u32,
    clients: u32,
    streams: u32,
) -> Result<H2loadResult> {
    run_h2load(
        pod,
        container,
        &["-n", &requests.to_string()],
        url,
        clients,
        streams,
    )
}

/// `h2load -D seconds -c clients -m streams url` in the pod: load for a fixed time (over TLS with an
/// `https://` URL, ALPN h2; h2load does not verify the certificate).
pub fn h2load_for(
    pod: &Pod,
    container: usize,
    url: &str,
    seconds: u32,
    clients: u32,
    streams: u32,
) -> Result<H2loadResult> {
    run_h2load(
        pod,
        container,
        &["-D", &seconds.to_string()],
        url,
        clients,
        streams,
    )
}

fn run_h2load(
    pod: &Pod,
    container: usize,
    amount: &[&str],
    url: &str,
    clients: u32,
    streams: u32,
) -> Result<H2loadResult> {
    require_tool("h2load")?;
    let (c, m) = (clients.to_string(), streams.to_string());
    let mut args = amount.to_vec();
    args.extend(["-c", &c, "-m", &m, "-t", "1", url]);
    let mut cmd = pod.command(container, "h2load", &args)?;
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id();
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("h2load failed ({}): {text}", out.status);
    }
    parse_h2load(&text, pid).with_context(|| format!("parsing h2load output:\n{text}"))
}

/// Reads `requests: N total, N started, N done, N succeeded, ...` and `status codes: N 2xx, ...`.
pub fn parse_h2load(text: &str, pid: u32) -> Result<H2loadResult> {
    let number_before = |line: &str, word: &str| -> Option<u64> {
        line.split(',').map(str::trim).find_map(|part| {
            part.strip_suffix(word)?
                .trim()
                .rsplit(' ')
                .next()?
                .parse()
                .ok()
        })
    };
    let requests = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .context("no requests line")?;
    let codes = text
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .context("no status codes line")?;
    let requests_per_sec = text
        .lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| {
            l.split(',')
                .find_map(|part| part.trim().strip_suffix(" req/s")?.parse().ok())
        })
        .context("no req/s in the `finished in` line")?;
    // "time for request:       51us      3.58ms       301us ...": min, max, mean.
    let request_mean_us = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("time for request:"))
        .and_then(|rest| rest.split_whitespace().nth(2))
        .and_then(duration_us);
    Ok(H2loadResult {
        pid,
        done: number_before(requests, "done").context("done")?,
        succeeded: number_before(requests, "succeeded").context("succeeded")?,
        status_2xx: number_before(codes, "2xx").context("2xx")?,
        requests_per_sec,
        request_mean_us,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_h2load_summary() {
        let text = "finished in 20.05ms, 9975.06 req/s, 1.06MB/s\nrequests: 200 total, 200 started, 200 done, 199 succeeded, 1 failed, 0 errored, 0 timeout\nstatus codes: 199 2xx, 0 3xx, 1 4xx, 0 5xx\ntraffic: 21.72KB (22243) total\n                     min         max         mean         sd        +/- sd\ntime for request:       51us      3.58ms       301us       186us    85.66%\n";
        let r = super::parse_h2load(text, 7).expect("parse");
        assert_eq!(
            (r.pid, r.done, r.succeeded, r.status_2xx),
            (7, 200, 199, 199)
        );
        assert!((r.requests_per_sec - 9975.06).abs() < 1e-6, "{r:?}");
        assert!(
            r.request_mean_us.is_some_and(|m| (m - 301.0).abs() < 1e-6),
            "{r:?}"
        );
    }
}

//! Real HTTP clients run inside a pod: curl, wrk and small Python clients (pipelining, a keep-alive
//! connection driven step by step over stdin/stdout).

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{bail, Context as _, Result};

use crate::netns::{Pod, PodProcess};
use crate::util::{duration_us, python, require_tool, run};

/// What a finished client run reports: its pid (as podtap should see it) and its stdout.
#[derive(Debug)]
pub struct ClientRun {
    pub pid: u32,
    pub stdout: String,
}

/// Runs a client to completion (stdout and stderr piped; stdin as `cmd` has it, else inherited):
/// its pid and stdout. A failure names `what` and carries the client's stderr.
pub fn run_client(cmd: &mut Command, what: &str) -> Result<ClientRun> {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let pid = child.id();
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(ClientRun {
        pid,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    })
}

/// Runs curl in the pod with `args` and waits for it. The pid is curl's own (`ip netns exec` execs it).
pub fn curl(pod: &Pod, container: usize, args: &[&str]) -> Result<ClientRun> {
    require_tool("curl")?;
    run_client(
        &mut pod.command(container, "curl", args)?,
        &format!("curl {args:?}"),
    )
}

/// `curl -sS -o /dev/null -w '%{http_code}\n' urls...`: one connection reused for all URLs of one host.
/// Returns the pid and the status codes, in order.
pub fn curl_codes(pod: &Pod, container: usize, urls: &[String]) -> Result<(u32, Vec<u16>)> {
    let mut args: Vec<&str> = vec!["-sS", "-w", "%{http_code}\\n"];
    for u in urls {
        args.extend(["-o", "/dev/null", u.as_str()]);
    }
    let run = curl(pod, container, &args)?;
    let codes = run
        .stdout
        .lines()
        .map(|l| l.trim().parse::<u16>())
        .collect::<Result<Vec<_>, _>>()?;
    if codes.len() != urls.len() {
        bail!(
            "curl printed {} status codes for {} URLs: {}",
            codes.len(),
            urls.len(),
            run.stdout
        );
    }
    Ok((run.pid, codes))
}

/// wrk's summary.
#[derive(Debug, Clone, Copy)]
pub struct WrkResult {
    /// Requests whose response wrk read completely ("N requests in ...").
    pub requests: u64,
    pub connections: u32,
    /// Connect/read/write/timeout errors plus non-2xx/3xx responses.
    pub errors: u64,
    pub requests_per_sec: f64,
    /// Mean latency ("Latency" row of the thread stats), microseconds.
    pub latency_mean_us: Option<f64>,
    /// 99th percentile latency (the `--latency` distribution), microseconds.
    pub latency_p99_us: Option<f64>,
}

/// Runs `wrk -t1 -c<connections> -d<seconds>s --latency url` in the pod and parses its summary.
/// An `https://` URL works too: wrk speaks TLS through OpenSSL and does not verify the certificate.
pub fn wrk(
    pod: &Pod,
    container: usize,
    url: &str,
    connections: u32,
    seconds: u32,
) -> Result<WrkResult> {
    require_tool("wrk")?;
    let c = format!("-c{connections}");
    let d = format!("-d{seconds}s");
    let out = run(&mut pod.command(container, "wrk", &["-t1", &c, &d, "--latency", url])?)?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    parse_wrk(&text, connections).with_context(|| format!("parsing wrk output:\n{text}"))
}

/// Parses wrk's text summary.
pub fn parse_wrk(text: &str, connections: u32) -> Result<WrkResult> {
    let mut requests = None;
    let mut errors = 0u64;
    let mut rps = 0.0;
    let mut latency_mean_us = None;
    let mut latency_p99_us = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Latency ") {
            // "Latency   123.00us   45.00us   1.20ms   90.00%": the first column is the mean (the
            // "Latency Distribution" heading that `--latency` adds has none).
            if let Some(mean) = rest.split_whitespace().next().and_then(duration_us) {
                latency_mean_us = Some(mean);
            }
        } else if let Some(rest) = line.strip_prefix("99%") {
            latency_p99_us = duration_us(rest.trim());
        } else if line.contains(" requests in ") {
            requests = line.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "Socket errors: connect 0, read 0, write 0, timeout 0"
            errors += rest
                .split(',')
                .filter_map(|p| {
                    p.split_whitespace()
                        .last()
                        .and_then(|n| n.parse::<u64>().ok())
                })
                .sum::<u64>();
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += rest.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("Requests/sec:") {
            rps = rest.trim().parse().unwrap_or(0.0);
        }
    }
    let requests = requests.context("no 'N requests in' line")?;
    Ok(WrkResult {
        requests,
        connections,
        errors,
        requests_per_sec: rps,
        latency_mean_us,
        latency_p99_us,
    })
}

/// Sends `requests` (raw HTTP/1.1 text) in ONE write on one connection and reads until the server
/// closes (the last request should carry `Connection: close`). Returns the pid and the raw responses.
pub fn python_pipelined(
    pod: &Pod,
    container: usize,
    ip: &str,
    port: u16,
    requests: &str,
) -> Result<ClientRun> {
    const SCRIPT: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(sys.argv[3].encode())
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.decode("latin-1"))
"#;
    let py = python()?.to_string_lossy().into_owned();
    let port = port.to_string();
    run_client(
        &mut pod.command(container, &py, &["-c", SCRIPT, ip, &port, requests])?,
        "pipelining client",
    )
}

/// A Python `http.client` keep-alive connection driven over stdin: each line written is a path to GET
/// on the same connection; it answers each with one line `<status> <body bytes>`.
#[derive(Debug)]
pub struct KeepAliveClient {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub process: PodProcess,
}

impl KeepAliveClient {
    pub fn start(pod: &Pod, container: usize, ip: &str, port: u16) -> Result<Self> {
        const SCRIPT: &str = r#"
import http.client, sys
conn = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=10)
for line in sys.stdin:
    conn.request("GET", line.strip())
    r = conn.getresponse()
    body = r.read()
    print(r.status, len(body), flush=True)
"#;
        let py = python()?.to_string_lossy().into_owned();
        let port = port.to_string();
        let mut cmd = pod.command(container, &py, &["-c", SCRIPT, ip, &port])?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().context("starting the keep-alive client")?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("stdout")?);
        Ok(Self {
            stdin,
            stdout,
            process: PodProcess { child },
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// GETs `path` on the connection; returns the status code.
    pub fn get(&mut self, path: &str) -> Result<u16> {
        writeln!(self.stdin, "{path}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("keep-alive client exited");
        }
        line.split_whitespace()
            .next()
            .context("empty answer")?
            .parse()
            .context("status")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_wrk_summary() {
        let text = "Running 2s test @ http://10.1.2.2:8080/items/1\n  1 threads and 4 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   123.00us   45.00us   1.20ms   90.00%\n    Req/Sec    30.12k     1.00k   32.00k    80.00%\n  Latency Distribution\n     50%  245.00us\n     75%  389.00us\n     90%  564.00us\n     99%    3.97ms\n  60123 requests in 2.00s, 9.12MB read\n  Socket errors: connect 0, read 1, write 0, timeout 2\n  Non-2xx or 3xx responses: 4\nRequests/sec:  30061.50\nTransfer/sec:      4.56MB\n";
        let r = super::parse_wrk(text, 4).expect("parse");
        assert_eq!(r.requests, 60123);
        assert_eq!(r.errors, 7);
        assert!((r.requests_per_sec - 30061.5).abs() < 1e-6);
        let close = |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() < 1e-6);
        assert!(close(r.latency_mean_us, 123.0), "{r:?}");
        assert!(close(r.latency_p99_us, 3970.0), "{r:?}");
    }
}

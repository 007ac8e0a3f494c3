//! Developer tasks: `cargo xtask setup | run | test | bench overhead | bench replay | fuzz`.
//!
//! Every task is idempotent: `setup` checks before it installs and prints one line per thing it installed.

mod bench;
mod bench_replay;
mod fuzz;
mod setup;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "podtap developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing (apt packages, rust-src for nightly, bpf-linker 0.13.0) and mount
    /// tracefs and bpffs.
    Setup,
    /// Setup, build podtap (release) and run `podtap run ARGS` (default: `--output pretty`).
    Run {
        /// Arguments for `podtap run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup, fmt check, clippy, release build, the whole test suite as root, then a leftover check.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        which: BenchKind,
    },
    /// Run the cargo-fuzz targets (nightly; installs cargo-fuzz if missing) and report what they find.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Targets to run (default: all of pcap_reader, parsers, flow_table).
        targets: Vec<String>,
    },
}

#[derive(Subcommand)]
enum BenchKind {
    /// Throughput and latency with and without podtap, podtap's CPU per 1,000 calls, peak RSS, calls
    /// reported.
    Overhead {
        /// Seconds of load per phase.
        #[arg(long, default_value_t = 10)]
        seconds: u32,
        /// Client connections (default: 4 in the clear, 16 over TLS).
        #[arg(long)]
        connections: Option<u32>,
        /// Over TLS: nginx with a self-signed certificate, wrk over HTTPS (HTTP/1.1).
        #[arg(long)]
        tls: bool,
        /// With --tls: h2load over TLS (ALPN h2) instead of wrk.
        #[arg(long, requires = "tls")]
        h2: bool,
        /// Phases with podtap, each between two without; the ratio and latencies are the median over
        /// rounds (more rounds of fewer seconds ride out a noisy machine better).
        #[arg(long, default_value_t = 1)]
        rounds: u32,
    },
    /// `podtap replay` on large recorded captures (HTTP/1.1, Redis) against tshark, one core.
    Replay {
        /// HTTP/1.1 calls to record (at least).
        #[arg(long, default_value_t = 120_000)]
        http_calls: u64,
        /// Redis commands to record (at least).
        #[arg(long, default_value_t = 120_000)]
        redis_commands: u64,
        /// Record the captures again instead of using the ones cached in target/bench/.
        #[arg(long)]
        refresh: bool,
        /// The core podtap and tshark are pinned to.
        #[arg(long, default_value_t = 1)]
        cpu: u32,
        /// podtap runs per capture (the median counts).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Setup => setup::setup(),
        Task::Run { args } => run(args),
        Task::Test { args } => test(&args),
        Task::Bench { which } => {
            setup::setup()?;
            // PODTAP_BIN: benchmark that binary instead of building the release one.
            let bin = match std::env::var_os("PODTAP_BIN") {
                Some(b) => PathBuf::from(b),
                None => {
                    build_release()?;
                    release_binary()
                }
            };
            match which {
                BenchKind::Overhead {
                    seconds,
                    connections,
                    tls,
                    h2,
                    rounds,
                } => {
                    let traffic = match (tls, h2) {
                        (false, _) => bench::Traffic::Plain,
                        (true, false) => bench::Traffic::Tls,
                        (true, true) => bench::Traffic::TlsH2,
                    };
                    let connections = connections.unwrap_or_else(|| traffic.default_connections());
                    bench::overhead(
                        &bin,
                        &bench::OverheadOptions {
                            seconds,
                            connections,
                            traffic,
                            rounds,
                        },
                    )
                }
                BenchKind::Replay {
                    http_calls,
                    redis_commands,
                    refresh,
                    cpu,
                    runs,
                } => bench_replay::replay(
                    &bin,
                    &bench_replay::ReplayOptions {
                        http_calls,
                        redis_commands,
                        refresh,
                        cpu,
                        runs,
                    },
                ),
            }
        }
        Task::Fuzz { seconds, targets } => fuzz::fuzz(seconds, &targets),
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// The release binary `cargo build --release -p podtap` leaves.
pub fn release_binary() -> PathBuf {
    root().join("target/release/podtap")
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs a command, failing with its name when it fails.
fn step(what: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {what}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Passed and failed tests, summed over cargo's `test result:` lines.
#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
}

/// Runs `cargo test`, passing its output through while adding up its result lines.
fn run_tests(cmd: &mut Command) -> Result<Totals> {
    use std::io::{BufRead as _, BufReader, Write as _};
    eprintln!("xtask: cargo test --release");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let mut totals = Totals::default();
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        writeln!(out, "{line}")?;
        if let Some(rest) = line.strip_prefix("test result: ") {
            totals.passed += count_before(rest, " passed");
            totals.failed += count_before(rest, " failed");
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() {
        bail!(
            "cargo test --release failed ({status}): {} passed, {} failed",
            totals.passed,
            totals.failed
        );
    }
    Ok(totals)
}

/// The number just before `label` in `ok. 90 passed; 0 failed; ...`.
fn count_before(text: &str, label: &str) -> u64 {
    text.split(';')
        .find_map(|part| part.trim().strip_suffix(label.trim_start()).map(str::trim))
        .and_then(|n| n.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn build_release() -> Result<()> {
    step(
        "cargo build --release -p podtap",
        cargo().args(["build", "--release", "-p", "podtap"]),
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run(args: Vec<String>) -> Result<()> {
    setup::setup()?;
    build_release()?;
    if !is_root() {
        eprintln!(
            "xtask: not running as root: podtap needs root, or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN \
             (e.g. `sudo -E cargo xtask run`); trying anyway"
        );
    }
    let args = if args.is_empty() {
        vec!["--output".to_owned(), "pretty".to_owned()]
    } else {
        args
    };
    let bin = release_binary();
    let err = std::os::unix::process::CommandExt::exec(Command::new(&bin).arg("run").args(&args));
    Err(err).with_context(|| format!("exec {}", bin.display()))
}

fn test(extra: &[String]) -> Result<()> {
    if !is_root() {
        bail!("the test suite needs root (network namespaces, cgroups, eBPF): run `sudo -E cargo xtask test`");
    }
    setup::setup()?;
    step(
        "cargo fmt --all -- --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    step(
        "cargo clippy --all-targets -- -D warnings",
        cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]),
    )?;
    build_release()?;
    let bin = release_binary();
    let tests = run_tests(
        cargo()
            .args(["test", "--release"])
            .args(extra)
            .env("PODTAP_BIN", &bin),
    );
    let leftovers = check_leftovers();
    let totals = tests?;
    leftovers?;
    // One plain line for whoever reads the end of the log: cargo's last lines are doc-test summaries.
    println!("tests: {} passed, {} failed", totals.passed, totals.failed);
    if totals.failed > 0 || totals.passed == 0 {
        bail!("{} tests failed, {} passed", totals.failed, totals.passed);
    }
    eprintln!("xtask: all tests passed, nothing left behind");
    Ok(())
}

/// After the tests: no test network namespace and no orphaned podtap eBPF program may remain. Tracing
/// programs are freed after an RCU grace period once their link closes, so a few seconds are allowed.
fn check_leftovers() -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match leftovers() {
            Err(error) if std::time::Instant::now() < deadline => {
                log_retry(&error);
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            result => return result,
        }
    }
}

fn log_retry(error: &anyhow::Error) {
    eprintln!("xtask: waiting for the kernel to release: {error}");
}

fn leftovers() -> Result<()> {
    let mut problems = Vec::new();
    let ns = podtap_tests::netns::leftover_namespaces()?;
    if !ns.is_empty() {
        problems.push(format!("network namespaces left behind: {ns:?}"));
    }
    for p in podtap_tests::bpf::podtap_programs()? {
        if p.pids.is_empty() {
            problems.push(format!(
                "eBPF program {} (id {}) still loaded with no owner",
                p.name, p.id
            ));
        } else {
            // A podtap someone else runs on this node right now: not ours, only mention it.
            eprintln!(
                "xtask: note: {} (id {}) held by running process(es) {:?}",
                p.name, p.id, p.pids
            );
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("leftovers after the tests:\n  {}", problems.join("\n  "))
    }
}

#[cfg(test)]
mod tests {
    use super::count_before;

    #[test]
    fn reads_cargo_result_lines() {
        let line =
            "FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 2.37s";
        assert_eq!(count_before(line, " passed"), 3);
        assert_eq!(count_before(line, " failed"), 1);
        assert_eq!(
            count_before("ok. 90 passed; 0 failed; 0 ignored", " passed"),
            90
        );
    }
}

//! `cargo xtask fuzz [--seconds N] [TARGET...]`: runs the cargo-fuzz targets of `sensor/fuzz` (the
//! harnesses are `podtap::fuzz`), each for N seconds, and reports what they found. Installs cargo-fuzz
//! when it is missing; needs the nightly toolchain (the one `cargo xtask setup` checks for). Not part
//! of CI.
//!
//! Each target keeps its corpus in `sensor/fuzz/corpus/<target>/` (not committed) and starts from the
//! inputs kept in `sensor/tests/fixtures/fuzz/<target>/` plus, for `pcap_reader`, the capture fixtures.
//! A crash, hang or out-of-memory input lands in `sensor/fuzz/artifacts/<target>/`; once fixed, keep it
//! in `sensor/tests/fixtures/fuzz/<target>/`, where `cargo test` replays it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use crate::root;

/// The targets of `sensor/fuzz/Cargo.toml`.
pub const TARGETS: &[&str] = &["pcap_reader", "parsers", "flow_table"];

struct Outcome {
    target: String,
    seconds: f64,
    runs: Option<u64>,
    corpus: usize,
    findings: Vec<PathBuf>,
}

pub fn fuzz(seconds: u64, targets: &[String]) -> Result<()> {
    let targets: Vec<String> = if targets.is_empty() {
        TARGETS.iter().map(|t| (*t).to_owned()).collect()
    } else {
        targets.to_vec()
    };
    for target in &targets {
        if !TARGETS.contains(&target.as_str()) {
            bail!(
                "no fuzz target {target:?} (targets: {})",
                TARGETS.join(", ")
            );
        }
    }
    ensure_cargo_fuzz()?;
    let root = root();
    let sensor = root.join("sensor");
    let fuzz_dir = sensor.join("fuzz");
    let target_dir = root.join("target/fuzz");
    std::fs::create_dir_all(&target_dir)?;
    crate::step(
        "cargo +nightly fuzz build",
        cargo_fuzz(&sensor, &target_dir).arg("build"),
    )?;
    let mut outcomes = Vec::new();
    for target in &targets {
        outcomes.push(run_target(
            &sensor,
            &fuzz_dir,
            &target_dir,
            target,
            seconds,
        )?);
    }
    println!();
    println!(
        "{:<12} {:>8} {:>14} {:>8}  findings",
        "target", "seconds", "runs", "corpus"
    );
    let mut found = 0;
    for o in &outcomes {
        println!(
            "{:<12} {:>8.0} {:>14} {:>8}  {}",
            o.target,
            o.seconds,
            o.runs.map_or_else(|| "?".to_owned(), |r| r.to_string()),
            o.corpus,
            if o.findings.is_empty() {
                "none".to_owned()
            } else {
                o.findings.len().to_string()
            }
        );
        for finding in &o.findings {
            found += 1;
            println!("    {}", finding.display());
        }
    }
    if found > 0 {
        println!(
            "\nReproduce one with `cd sensor && cargo +nightly fuzz run --sanitizer none TARGET FILE`; once it \
             is fixed, copy it to sensor/tests/fixtures/fuzz/TARGET/ (replayed by \
             `cargo test -p podtap --test fuzz_regressions`)."
        );
        bail!("the fuzz targets found {found} failing input(s)");
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<()> {
    let present = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    crate::step(
        "cargo install cargo-fuzz --locked",
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())).args([
            "install",
            "cargo-fuzz",
            "--locked",
        ]),
    )?;
    println!("installed cargo-fuzz");
    Ok(())
}

/// `cargo +nightly fuzz` in `sensor/`, without a sanitizer (podtap's fuzzed code is safe Rust: the
/// fuzzer runs twice as fast without ASan), into the workspace's target directory.
fn cargo_fuzz(sensor: &Path, target_dir: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(sensor).args(["+nightly", "fuzz"]);
    // `cargo +nightly` picks the toolchain through rustup; a CARGO or RUSTC from the stable cargo
    // running xtask would override it.
    cmd.env_remove("CARGO").env_remove("RUSTC");
    cmd.env("CARGO_TARGET_DIR", target_dir);
    cmd
}

fn run_target(
    sensor: &Path,
    fuzz_dir: &Path,
    target_dir: &Path,
    target: &str,
    seconds: u64,
) -> Result<Outcome> {
    let corpus = fuzz_dir.join("corpus").join(target);
    let artifacts = fuzz_dir.join("artifacts").join(target);
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&artifacts)?;
    let before = list(&artifacts);
    let mut seeds = vec![sensor.join("tests/fixtures/fuzz").join(target)];
    if target == "pcap_reader" {
        seeds.push(sensor.join("tests/fixtures/corpus/http1"));
        seeds.push(sensor.join("tests/fixtures/replay"));
    }
    let log_path = target_dir.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path)?;
    eprintln!(
        "xtask: fuzzing {target} for {seconds} s (libFuzzer log: {})",
        log_path.display()
    );
    let mut cmd = cargo_fuzz(sensor, target_dir);
    cmd.args(["run", "--sanitizer", "none", target])
        .arg(&corpus);
    for seed in seeds.iter().filter(|s| s.is_dir()) {
        cmd.arg(seed);
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-max_len=65536")
        .arg("-print_final_stats=1")
        .arg(format!(
            "-dict={}",
            fuzz_dir.join("dictionaries/podtap.dict").display()
        ))
        .stdout(log.try_clone()?)
        .stderr(log);
    let started = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("starting cargo fuzz run {target}"))?;
    let elapsed = started.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let runs = text
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok());
    let findings: Vec<PathBuf> = list(&artifacts)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    if !status.success() && findings.is_empty() {
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        bail!(
            "cargo fuzz run {target} failed ({status}) without leaving an input:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(Outcome {
        target: target.to_owned(),
        seconds: elapsed,
        runs,
        corpus: list(&corpus).len(),
        findings,
    })
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

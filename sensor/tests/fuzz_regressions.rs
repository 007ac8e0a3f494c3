//! Every input a fuzz target ever crashed, hung or broke a bound on, replayed through the same harness
//! (`podtap::fuzz`) as a normal test. Each lives in `fixtures/fuzz/<target>/`; `cargo xtask fuzz`
//! tells how to add one (see also `fixtures/fuzz/README.md`).

use std::path::Path;

use podtap::fuzz::TARGETS;

#[test]
fn every_kept_fuzz_input_passes_its_harness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let mut ran = 0;
    for (target, harness) in TARGETS {
        let dir = root.join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue; // no input kept for this target yet
        };
        let mut inputs: Vec<_> = entries
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.is_file() && path.extension().is_none_or(|e| e != "md"))
            .collect();
        inputs.sort();
        for input in inputs {
            let bytes = std::fs::read(&input).expect("fuzz input");
            eprintln!("{target}: {}", input.display());
            harness(&bytes);
            ran += 1;
        }
    }
    eprintln!("{ran} fuzz inputs replayed");
}

/// The harnesses themselves run on the capture corpus (as the fuzzer's seeds do) and on nothing.
#[test]
fn harnesses_accept_seeds_and_empty_input() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus/http1");
    for entry in std::fs::read_dir(corpus).expect("corpus") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "pcap") {
            let bytes = std::fs::read(&path).expect("capture");
            for (_, harness) in TARGETS {
                harness(&bytes);
            }
        }
    }
    for (_, harness) in TARGETS {
        harness(&[]);
    }
}

//! Shared by the corpus tests (`mod common;`): where the fixtures are, replaying a capture through the
//! production path (`podtap::app::replay`) into memory, and reading the tshark field output recorded
//! beside each capture.

// Each corpus test is its own crate and uses only part of this.
#![allow(dead_code)]

use std::{
    io,
    path::{Path, PathBuf},
};

use podtap::{
    app::{replay, AppError, Summary},
    export::Sink,
    flow::FlowConfig,
    model::Call,
};

/// A sink that keeps every call.
#[derive(Default)]
pub struct Collect(pub Vec<Call>);

impl Sink for Collect {
    fn write(&mut self, call: &Call) -> io::Result<()> {
        self.0.push(call.clone());
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `name` in `tests/fixtures/corpus/<dir>`.
pub fn fixture(dir: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/corpus")
        .join(dir)
        .join(name)
}

/// Replays a capture file with the default flow settings; the calls in the order they were written.
pub fn try_replay(path: &Path) -> Result<(Vec<Call>, Summary), AppError> {
    let mut sink = Collect::default();
    let summary = replay(path, FlowConfig::default(), &mut sink)?;
    Ok((sink.0, summary))
}

/// Replays a capture file; the calls in time order (the order tshark lists requests in) and the
/// replay's summary.
pub fn replay_sorted(path: &Path) -> (Vec<Call>, Summary) {
    let (mut calls, summary) = try_replay(path).expect("replay");
    calls.sort_by_key(|c| c.time);
    (calls, summary)
}

/// The lines of a tab-separated tshark output recorded as `tests/fixtures/corpus/<dir>/<file>`, each
/// split into its fields.
pub fn tsv_rows(dir: &str, file: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(fixture(dir, file)).expect("fixture");
    text.lines()
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect()
}

//! `--output jsonl`: one call record per line, in the DESIGN.md call record shape.

use std::io::{self, Write};

use super::Sink;
use crate::model::Call;

pub struct JsonLines<W: Write> {
    out: W,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn write(&mut self, call: &Call) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, call)?;
        self.out.write_all(b"\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

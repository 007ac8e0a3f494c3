//! Sinks: where finished `Call`s go. Each sink is built from its own options and writes calls in order.

pub mod jsonl;
pub mod pretty;

use std::io;

use crate::model::Call;

/// A destination for calls.
pub trait Sink {
    /// Writes one call.
    ///
    /// # Errors
    /// The destination failed (a closed pipe, a full disk).
    fn write(&mut self, call: &Call) -> io::Result<()>;

    /// Pushes out whatever is buffered.
    ///
    /// # Errors
    /// As `write`.
    fn flush(&mut self) -> io::Result<()>;
}

/// A sink that drops everything (`--output none`): capture and metrics only.
pub struct Discard;

impl Sink for Discard {
    fn write(&mut self, _call: &Call) -> io::Result<()> {
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

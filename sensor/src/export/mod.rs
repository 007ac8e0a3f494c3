//! Sinks: where finished `Call`s go. Each sink is built from its own options and writes calls in order.

pub mod jsonl;
pub mod metrics;
pub mod otlp;
pub mod pretty;

use std::io;

use crate::{app::Summary, model::Call};

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

    /// Sees podtap's own counters (about once a second during a live run).
    fn health(&mut self, _summary: &Summary) {}
}

/// Every call to each of several sinks, in order.
pub struct Fanout(pub Vec<Box<dyn Sink>>);

impl Sink for Fanout {
    fn write(&mut self, call: &Call) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|sink| sink.write(call))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|sink| sink.flush())
    }

    fn health(&mut self, summary: &Summary) {
        for sink in &mut self.0 {
            sink.health(summary);
        }
    }
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

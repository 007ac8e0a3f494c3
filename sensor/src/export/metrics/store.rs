//! The storage under every metric family: series keyed by their label values, behind one mutex per
//! family (the capture thread writes, the `/metrics` handler and the OTLP task read). A family holds
//! at most [`MAX_SERIES`] series: beyond it new series are dropped and counted, old ones keep counting.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash, Hasher},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
};

use super::{FamilySnapshot, Kind, Point, Unit, Value};
use crate::model::UnixNanos;

/// Series kept per family. High enough for a busy node's edges and methods, low enough that a flood
/// of odd label values (random gRPC methods, Redis commands) costs a few MB at most.
pub const MAX_SERIES: usize = 4096;

/// What a family is, fixed at build time.
#[derive(Clone, Copy, Debug)]
pub struct Desc {
    pub otel_name: &'static str,
    pub prom_name: &'static str,
    pub unit: Unit,
    pub help: &'static str,
    pub kind: Kind,
    /// Attribute names, in the order `record` takes their values.
    pub labels: &'static [&'static str],
    /// Histogram bucket bounds (empty for counters and gauges).
    pub bounds: &'static [f64],
}

impl Desc {
    /// A family without bucket bounds (a counter or a gauge; histograms add theirs).
    #[must_use]
    pub const fn new(
        otel_name: &'static str,
        prom_name: &'static str,
        unit: Unit,
        kind: Kind,
        labels: &'static [&'static str],
        help: &'static str,
    ) -> Self {
        Self {
            otel_name,
            prom_name,
            unit,
            help,
            kind,
            labels,
            bounds: &[],
        }
    }

    /// The same family with these histogram bucket bounds.
    #[must_use]
    pub const fn with_bounds(self, bounds: &'static [f64]) -> Self {
        Self { bounds, ..self }
    }
}

#[derive(Debug)]
enum Cell {
    Number(f64),
    Histogram {
        count: u64,
        sum: f64,
        buckets: Box<[u64]>,
    },
}

#[derive(Debug)]
struct Series {
    values: Box<[String]>,
    start: UnixNanos,
    cell: Cell,
}

/// Label values hash with a fixed seed (no per-process randomness needed: the map is bounded and a
/// collision only costs a comparison).
type Seed = foldhash::fast::FixedState;

/// One family and its series.
#[derive(Debug)]
pub struct Family {
    pub desc: Desc,
    series: Mutex<HashMap<u64, Vec<Series>, Seed>>,
    len: AtomicU64,
    /// Series refused because the family was full.
    pub dropped: AtomicU64,
}

impl Family {
    #[must_use]
    pub fn new(desc: Desc) -> Self {
        Self {
            desc,
            series: Mutex::new(HashMap::with_hasher(Seed::default())),
            len: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Vec<Series>, Seed>> {
        // A panic while holding the lock leaves plain numbers behind: keep using them.
        self.series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on the series of `values` (created if there is room). No allocation when it exists.
    fn with(&self, values: &[&str], now: UnixNanos, f: impl FnOnce(&mut Cell)) {
        debug_assert_eq!(values.len(), self.desc.labels.len());
        let mut hasher = Seed::default().build_hasher();
        for value in values {
            value.hash(&mut hasher);
        }
        let hash = hasher.finish();
        let mut map = self.lock();
        let bucket = map.entry(hash).or_default();
        if let Some(series) = bucket.iter_mut().find(|s| {
            s.values
                .iter()
                .map(String::as_str)
                .eq(values.iter().copied())
        }) {
            f(&mut series.cell);
            return;
        }
        if self.len.load(Ordering::Relaxed) >= MAX_SERIES as u64 {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if bucket.is_empty() {
                map.remove(&hash);
            }
            return;
        }
        let cell = match self.desc.kind {
            Kind::Histogram => Cell::Histogram {
                count: 0,
                sum: 0.0,
                buckets: vec![0; self.desc.bounds.len() + 1].into_boxed_slice(),
            },
            Kind::Counter | Kind::Gauge => Cell::Number(0.0),
        };
        let mut series = Series {
            values: values.iter().map(|v| (*v).to_owned()).collect(),
            start: now,
            cell,
        };
        f(&mut series.cell);
        bucket.push(series);
        self.len.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds to a counter.
    pub fn add(&self, values: &[&str], delta: f64, now: UnixNanos) {
        self.with(values, now, |cell| {
            if let Cell::Number(n) = cell {
                *n += delta;
            }
        });
    }

    /// Sets a gauge, or a counter kept elsewhere (cumulative).
    pub fn set(&self, values: &[&str], value: f64, now: UnixNanos) {
        self.with(values, now, |cell| {
            if let Cell::Number(n) = cell {
                *n = value;
            }
        });
    }

    /// Records one observation of a histogram.
    pub fn observe(&self, values: &[&str], value: f64, now: UnixNanos) {
        let bounds = self.desc.bounds;
        self.with(values, now, |cell| {
            if let Cell::Histogram {
                count,
                sum,
                buckets,
            } = cell
            {
                *count += 1;
                *sum += value;
                // First bucket whose upper bound is >= value (Prometheus `le`).
                let index = bounds.partition_point(|&b| b < value);
                if let Some(b) = buckets.get_mut(index) {
                    *b += 1;
                }
            }
        });
    }

    /// Series now held.
    #[must_use]
    pub fn len(&self) -> usize {
        usize::try_from(self.len.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The family as it is now; empty label values are left out (absent knowledge).
    #[must_use]
    pub fn snapshot(&self) -> FamilySnapshot {
        let d = &self.desc;
        let map = self.lock();
        let mut points: Vec<Point> = map
            .values()
            .flatten()
            .map(|s| Point {
                attributes: d
                    .labels
                    .iter()
                    .zip(s.values.iter())
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (*k, v.clone()))
                    .collect(),
                start_time: s.start,
                value: match &s.cell {
                    Cell::Number(n) if d.kind == Kind::Gauge => Value::Gauge(*n),
                    Cell::Number(n) => Value::Counter(*n),
                    Cell::Histogram {
                        count,
                        sum,
                        buckets,
                    } => Value::Histogram {
                        count: *count,
                        sum: *sum,
                        bounds: d.bounds,
                        buckets: buckets.to_vec(),
                    },
                },
            })
            .collect();
        drop(map);
        // Stable output order, for people and for diffs.
        points.sort_by(|a, b| a.attributes.cmp(&b.attributes));
        FamilySnapshot {
            otel_name: d.otel_name,
            prom_name: d.prom_name,
            unit: d.unit,
            help: d.help,
            kind: d.kind,
            points,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: &[f64] = &[0.1, 1.0];

    fn desc(kind: Kind) -> Desc {
        Desc {
            otel_name: "t",
            prom_name: "t",
            unit: Unit::None,
            help: "t",
            kind,
            labels: &["a", "b"],
            bounds: if kind == Kind::Histogram { BOUNDS } else { &[] },
        }
    }

    #[test]
    fn histogram_buckets_are_le() {
        let f = Family::new(desc(Kind::Histogram));
        for v in [0.05, 0.1, 0.5, 1.0, 2.0] {
            f.observe(&["x", ""], v, 1);
        }
        let snap = f.snapshot();
        assert_eq!(snap.points.len(), 1);
        assert_eq!(snap.points[0].attributes, vec![("a", "x".to_owned())]);
        let Value::Histogram {
            count,
            buckets,
            sum,
            ..
        } = &snap.points[0].value
        else {
            panic!("not a histogram");
        };
        assert_eq!(*count, 5);
        assert_eq!(buckets, &vec![2, 2, 1]);
        assert!((sum - 3.65).abs() < 1e-9);
    }

    #[test]
    fn series_are_bounded_and_drops_counted() {
        let f = Family::new(desc(Kind::Counter));
        for i in 0..MAX_SERIES + 10 {
            f.add(&[&i.to_string(), "y"], 1.0, 1);
        }
        // Existing series still count.
        f.add(&["0", "y"], 1.0, 1);
        assert_eq!(f.len(), MAX_SERIES);
        assert_eq!(f.dropped.load(Ordering::Relaxed), 10);
        let snap = f.snapshot();
        assert_eq!(snap.points.len(), MAX_SERIES);
        let zero = snap
            .points
            .iter()
            .find(|p| p.attributes[0].1 == "0")
            .map(|p| p.value.clone());
        assert_eq!(zero, Some(Value::Counter(2.0)));
    }
}

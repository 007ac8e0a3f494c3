//! podtap's own health: what the capture loop counted (`Summary`, about once a second), what the OTLP
//! exporter reports, and the process's memory and CPU. Counters here mirror cumulative counts kept
//! elsewhere, so they are set, not added to.

use super::store::{Desc, Family};
use super::{ExportStats, Kind, Unit};
use crate::{app::Summary, model::UnixNanos};

/// The protocols of `podtap_parse_errors_total`, in `FlowStats::malformed_by_protocol` order.
pub const PROTOCOLS: [&str; 6] = ["http", "grpc", "dns", "redis", "kafka", "amqp"];

#[derive(Debug)]
pub struct Health {
    events: Family,
    calls: Family,
    drops: Family,
    connections: Family,
    parse_errors: Family,
    tls_files: Family,
    tls_probes: Family,
    export_items: Family,
    export_failed: Family,
    export_queue: Family,
    rss: Family,
    cpu: Family,
    pub series_dropped: Family,
}

impl Default for Health {
    fn default() -> Self {
        use Kind::{Counter, Gauge};
        Self {
            events: Family::new(Desc::new(
                "podtap.events",
                "podtap_events",
                Unit::None,
                Counter,
                &["source"],
                "Records read from the kernel: packets, TLS plaintext records.",
            )),
            calls: Family::new(Desc::new(
                "podtap.calls",
                "podtap_calls",
                Unit::None,
                Counter,
                &[],
                "Calls rebuilt and handed to the sinks.",
            )),
            drops: Family::new(Desc::new(
                "podtap.drops",
                "podtap_drops",
                Unit::None,
                Counter,
                &["reason"],
                "Things podtap dropped or lost, by reason (ring buffers full, payload truncated, \
                 stream and pending-request bounds, evicted connections, gaps, undecodable records).",
            )),
            connections: Family::new(Desc::new(
                "podtap.connections.tracked",
                "podtap_connections_tracked",
                Unit::None,
                Gauge,
                &[],
                "Connections and UDP flows in the flow table now.",
            )),
            parse_errors: Family::new(Desc::new(
                "podtap.parse.errors",
                "podtap_parse_errors",
                Unit::None,
                Counter,
                &["protocol"],
                "Messages that did not parse (counted when their connection closes).",
            )),
            tls_files: Family::new(Desc::new(
                "podtap.tls.files",
                "podtap_tls_files",
                Unit::None,
                Gauge,
                &["state"],
                "Files with TLS code: hooked now, or found but not hookable.",
            )),
            tls_probes: Family::new(Desc::new(
                "podtap.tls.probes.attached",
                "podtap_tls_probes_attached",
                Unit::None,
                Gauge,
                &[],
                "TLS uprobes attached now.",
            )),
            export_items: Family::new(Desc::new(
                "podtap.export.items",
                "podtap_export_items",
                Unit::None,
                Counter,
                &["signal", "outcome"],
                "OTLP items (spans, data points) exported or dropped.",
            )),
            export_failed: Family::new(Desc::new(
                "podtap.export.failed_requests",
                "podtap_export_failed_requests",
                Unit::None,
                Counter,
                &["signal"],
                "OTLP export requests that failed.",
            )),
            export_queue: Family::new(Desc::new(
                "podtap.export.queue_depth",
                "podtap_export_queue_depth",
                Unit::None,
                Gauge,
                &["signal"],
                "OTLP items waiting to be sent.",
            )),
            rss: Family::new(Desc::new(
                "podtap.process.resident_memory",
                "podtap_process_resident_memory",
                Unit::Bytes,
                Gauge,
                &[],
                "Resident memory of the podtap process.",
            )),
            cpu: Family::new(Desc::new(
                "podtap.process.cpu.time",
                "podtap_process_cpu",
                Unit::Seconds,
                Counter,
                &[],
                "CPU time (user + system) of the podtap process.",
            )),
            series_dropped: Family::new(Desc::new(
                "podtap.metric.series.dropped",
                "podtap_metric_series_dropped",
                Unit::None,
                Counter,
                &["family"],
                "Observations not recorded because their family had reached its series limit.",
            )),
        }
    }
}

impl Health {
    pub fn families(&self) -> [&Family; 13] {
        [
            &self.events,
            &self.calls,
            &self.drops,
            &self.connections,
            &self.parse_errors,
            &self.tls_files,
            &self.tls_probes,
            &self.export_items,
            &self.export_failed,
            &self.export_queue,
            &self.rss,
            &self.cpu,
            &self.series_dropped,
        ]
    }

    pub fn summary(&self, s: &Summary, now: UnixNanos) {
        let k = &s.kernel;
        let f = &s.flow;
        self.events.set(&["packet"], k.packets as f64, now);
        self.events.set(&["tls"], k.tls_records as f64, now);
        self.calls.set(&[], s.calls_written as f64, now);
        for (reason, n) in [
            ("ring_buffer_full", k.ring_buffer_full),
            ("owner_ring_buffer_full", k.owner_ring_buffer_full),
            ("tls_ring_buffer_full", k.tls_ring_buffer_full),
            ("process_ring_buffer_full", k.process_ring_buffer_full),
            ("payload_truncated", k.payload_truncated),
            ("tls_unbound", k.tls_unbound),
            ("stream_overflow", f.streams.overflow_drops),
            ("gap", f.streams.gaps),
            ("pending_overflow", f.parsers.pending_overflow),
            ("unmatched_response", f.parsers.unmatched_responses),
            ("evicted", f.connections_evicted),
            ("decode_error", s.decode_errors),
            ("tls_scan_dropped", s.tls.scans_dropped),
        ] {
            self.drops.set(&[reason], n as f64, now);
        }
        self.connections.set(&[], s.connections_tracked as f64, now);
        for (protocol, n) in PROTOCOLS.iter().zip(f.malformed_by_protocol) {
            self.parse_errors.set(&[protocol], n as f64, now);
        }
        self.tls_files
            .set(&["hooked"], s.tls.files_hooked as f64, now);
        self.tls_files
            .set(&["unhookable"], s.tls.files_unhookable as f64, now);
        self.tls_probes.set(&[], s.tls.probes_attached as f64, now);
        if let Some(p) = process_stats() {
            self.rss.set(&[], p.rss_bytes, now);
            self.cpu.set(&[], p.cpu_seconds, now);
        }
    }

    pub fn export(&self, e: &ExportStats, now: UnixNanos) {
        self.export_items
            .set(&[e.signal, "exported"], e.exported as f64, now);
        self.export_items
            .set(&[e.signal, "dropped"], e.dropped as f64, now);
        self.export_failed
            .set(&[e.signal], e.failed_requests as f64, now);
        self.export_queue
            .set(&[e.signal], e.queue_depth as f64, now);
    }
}

struct ProcessStats {
    rss_bytes: f64,
    cpu_seconds: f64,
}

/// RSS and CPU time of this process from /proc/self (none where it cannot be read).
fn process_stats() -> Option<ProcessStats> {
    // SAFETY: sysconf only reads configuration values.
    let (page, ticks) = unsafe {
        (
            libc::sysconf(libc::_SC_PAGESIZE),
            libc::sysconf(libc::_SC_CLK_TCK),
        )
    };
    if page <= 0 || ticks <= 0 {
        return None;
    }
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some(ProcessStats {
        rss_bytes: resident * page as f64,
        cpu_seconds: (utime + stime) / ticks as f64,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_process() {
        let p = super::process_stats().expect("/proc/self readable");
        assert!(p.rss_bytes > 1e6);
        assert!(p.cpu_seconds >= 0.0);
    }
}

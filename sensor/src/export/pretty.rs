//! `--output pretty`: one aligned line per call for a person at a terminal.
//!
//! `10:00:00.123456  http  GET api:8080/items/1  200  1.23ms  10.0.0.5:41234 curl [pod 4f0c1e2d] -> 10.0.0.9:8080 nginx`

use std::io::{self, Write};

use super::Sink;
use crate::model::{Call, CallStatus, Endpoint, Request, Response};

pub struct Pretty<W: Write> {
    out: W,
}

impl<W: Write> Pretty<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }
}

fn endpoint(end: &Endpoint) -> String {
    let mut text = format!("{}", std::net::SocketAddr::new(end.ip, end.port));
    if let Some(process) = &end.process {
        text.push(' ');
        text.push_str(process);
    }
    match (&end.namespace, &end.pod, &end.pod_uid) {
        (Some(namespace), Some(pod), _) => text.push_str(&format!(" [{namespace}/{pod}]")),
        (_, _, Some(uid)) => text.push_str(&format!(" [pod {}]", uid.get(..8).unwrap_or(uid))),
        _ => {}
    }
    text
}

impl<W: Write> Sink for Pretty<W> {
    fn write(&mut self, call: &Call) -> io::Result<()> {
        let time = crate::model::format_time(call.time);
        let clock = time.get(11..26).unwrap_or(&time);
        let request = match &call.request {
            Request::Http(r) => {
                format!("{} {}{}", r.method, r.host.as_deref().unwrap_or(""), r.path)
            }
        };
        let response = match (&call.response, call.status) {
            (Some(Response::Http(r)), _) => r.status.to_string(),
            (None, CallStatus::NoResponse) => "-".to_owned(),
            (None, _) => "ok".to_owned(),
        };
        let duration = call
            .duration_ms
            .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.2}ms"));
        writeln!(
            self.out,
            "{clock}  {:<5} {:<40} {:>4} {:>9}  {} -> {}",
            serde_json::to_value(call.protocol)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            request,
            response,
            duration,
            endpoint(&call.client),
            endpoint(&call.server),
        )
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

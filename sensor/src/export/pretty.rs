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

/// The request in a few words: what a person scanning a call list looks for first.
fn request_text(request: &Request) -> String {
    match request {
        Request::Http(r) => format!("{} {}{}", r.method, r.host.as_deref().unwrap_or(""), r.path),
        Request::Grpc(r) => format!("{}{}", r.authority.as_deref().unwrap_or(""), r.method),
        Request::Dns(r) => format!("{} {} #{}", r.kind, r.name, r.id),
        Request::Redis(r) => r.text.clone(),
        Request::Kafka(r) => {
            let mut text = format!("{} v{} #{}", r.api, r.api_version, r.correlation_id);
            if !r.topics.is_empty() {
                text.push(' ');
                text.push_str(&r.topics.join(","));
            }
            text
        }
        Request::Amqp(r) => {
            let mut text = format!("{} ch{}", r.method, r.channel);
            for value in [&r.exchange, &r.routing_key, &r.queue]
                .into_iter()
                .flatten()
            {
                text.push(' ');
                text.push_str(value);
            }
            text
        }
    }
}

fn response_text(response: &Response) -> String {
    match response {
        Response::Http(r) => r.status.to_string(),
        Response::Grpc(r) => r
            .grpc_status
            .map_or_else(|| "?".to_owned(), |code| format!("grpc {code}")),
        Response::Dns(r) => {
            if r.answers.is_empty() {
                r.rcode.clone()
            } else {
                format!("{} {}", r.rcode, r.answers.join(","))
            }
        }
        Response::Redis(r) => r.error.clone().unwrap_or_else(|| r.kind.clone()),
        Response::Kafka(r) => r
            .error_code
            .map_or_else(|| "?".to_owned(), |code| format!("err {code}")),
        Response::Amqp(r) => match r.reply_code {
            Some(code) => format!("{} {code}", r.method),
            None => r.method.clone(),
        },
    }
}

impl<W: Write> Sink for Pretty<W> {
    fn write(&mut self, call: &Call) -> io::Result<()> {
        let time = crate::model::format_time(call.time);
        let clock = time.get(11..26).unwrap_or(&time);
        let request = request_text(&call.request);
        let response = match (&call.response, call.status) {
            (Some(response), _) => response_text(response),
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

//! Assertions on podtap's JSON call records: filtering by the test's own addresses and checking each
//! field against what the test knows (both ends' address, pod uid, container id, client pid).

use std::net::{IpAddr, Ipv4Addr};

use serde_json::Value;

use crate::cgroup::Container;

/// True when the record's client or server address is one of `ips`.
pub fn involves(r: &Value, ips: &[Ipv4Addr]) -> bool {
    ["client", "server"].iter().any(|end| {
        r[end]["ip"]
            .as_str()
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
            .is_some_and(|ip| ips.contains(&ip))
    })
}

/// Sorts records by their `time` (RFC 3339 with fixed-width fraction sorts as text).
pub fn sorted_by_time(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by(|a, b| {
        a["time"]
            .as_str()
            .unwrap_or("")
            .cmp(b["time"].as_str().unwrap_or(""))
    });
    v
}

/// One end of a call as the test knows it.
#[derive(Clone, Debug)]
pub struct EndExpect {
    pub ip: IpAddr,
    /// None: any port (client ephemeral ports are not known to the test).
    pub port: Option<u16>,
    pub pod_uid: String,
    pub container_id: String,
    /// Known for clients the test started itself.
    pub pid: Option<u32>,
    pub process: Option<String>,
}

impl EndExpect {
    pub fn new(ip: Ipv4Addr, port: Option<u16>, c: &Container) -> Self {
        Self::at(IpAddr::V4(ip), port, c)
    }

    /// `new` for any address (IPv6 too).
    pub fn at(ip: IpAddr, port: Option<u16>, c: &Container) -> Self {
        Self {
            ip,
            port,
            pod_uid: c.pod_uid.clone(),
            container_id: c.id.clone(),
            pid: None,
            process: None,
        }
    }

    pub fn process(mut self, pid: u32, name: &str) -> Self {
        self.pid = Some(pid);
        self.process = Some(name.to_owned());
        self
    }
}

/// What one call record must say.
#[derive(Clone, Debug)]
pub struct CallExpect {
    pub method: String,
    pub path: String,
    /// None: do not check `request.host`.
    pub host: Option<String>,
    pub status: u16,
    pub client: EndExpect,
    pub server: EndExpect,
    /// The record's `tls` flag: plaintext taken from a TLS library rather than from packets.
    pub tls: bool,
}

impl CallExpect {
    /// The same call, seen in the plaintext of a TLS connection.
    pub fn over_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Panics with the whole record when a field differs.
    pub fn check(&self, r: &Value) {
        let ctx = || serde_json::to_string(r).unwrap_or_default();
        assert_eq!(r["protocol"], "http", "protocol in {}", ctx());
        assert_eq!(r["transport"], "tcp", "transport in {}", ctx());
        assert_eq!(r["tls"], self.tls, "tls in {}", ctx());
        assert!(
            r["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "time in {}",
            ctx()
        );
        assert!(
            r["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
            "duration_ms in {}",
            ctx()
        );
        assert_eq!(
            r["request"]["method"],
            self.method.as_str(),
            "method in {}",
            ctx()
        );
        assert_eq!(
            r["request"]["path"],
            self.path.as_str(),
            "path in {}",
            ctx()
        );
        if let Some(h) = &self.host {
            assert_eq!(r["request"]["host"], h.as_str(), "host in {}", ctx());
        }
        assert_eq!(
            r["response"]["status"],
            self.status,
            "response.status in {}",
            ctx()
        );
        let expect_status = if self.status >= 500 { "error" } else { "ok" };
        assert_eq!(r["status"], expect_status, "status in {}", ctx());
        self.client.check(r, "client");
        self.server.check(r, "server");
    }
}

impl EndExpect {
    /// Panics with the whole record when its `name` end (`client` or `server`) differs.
    pub fn check(&self, r: &Value, name: &str) {
        let ctx = || serde_json::to_string(r).unwrap_or_default();
        let end = &r[name];
        assert_eq!(
            end["ip"],
            self.ip.to_string().as_str(),
            "{name}.ip in {}",
            ctx()
        );
        let port = end["port"].as_u64();
        assert!(
            port.is_some_and(|p| p > 0 && p < 65536),
            "{name}.port in {}",
            ctx()
        );
        if let Some(p) = self.port {
            assert_eq!(port, Some(u64::from(p)), "{name}.port in {}", ctx());
        }
        assert_eq!(
            end["pod_uid"],
            self.pod_uid.as_str(),
            "{name}.pod_uid in {}",
            ctx()
        );
        assert_eq!(
            end["container_id"],
            self.container_id.as_str(),
            "{name}.container_id in {}",
            ctx()
        );
        if let Some(pid) = self.pid {
            assert_eq!(end["pid"], pid, "{name}.pid in {}", ctx());
        }
        if let Some(p) = &self.process {
            assert_eq!(end["process"], p.as_str(), "{name}.process in {}", ctx());
        }
    }
}

/// Asserts `records` are exactly `expected` (as a multiset by path+method, then field by field, matched
/// in time order per path).
pub fn assert_calls(records: &[Value], expected: &[CallExpect]) {
    assert_each_matched(
        records,
        expected,
        |e, r| {
            r["request"]["path"] == e.path.as_str() && r["request"]["method"] == e.method.as_str()
        },
        |e| format!("{} {}", e.method, e.path),
        CallExpect::check,
    );
}

/// Asserts `records` are exactly `expected`: as many, each expected one (in order) matched by the
/// first record of its own that `matches` it, and then checked field by field by `check`; `name`
/// says which expected one had no record.
pub fn assert_each_matched<E>(
    records: &[Value],
    expected: &[E],
    matches: impl Fn(&E, &Value) -> bool,
    name: impl Fn(&E) -> String,
    check: impl Fn(&E, &Value),
) {
    let dump = || {
        records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        records.len(),
        expected.len(),
        "expected {} calls, podtap reported {}:\n{}",
        expected.len(),
        records.len(),
        dump()
    );
    let mut used = vec![false; records.len()];
    for e in expected {
        let Some(i) = (0..records.len()).find(|&i| !used[i] && matches(e, &records[i])) else {
            panic!("no record for {} among:\n{}", name(e), dump());
        };
        used[i] = true;
        check(e, &records[i]);
    }
}

/// Shorthand for a GET with a 200-ish status from `client` to `server`.
pub fn call(
    method: &str,
    path: &str,
    host: Option<String>,
    status: u16,
    client: EndExpect,
    server: EndExpect,
) -> CallExpect {
    CallExpect {
        method: method.to_owned(),
        path: path.to_owned(),
        host,
        status,
        client,
        server,
        tls: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, uid: &str) -> Container {
        Container {
            id: id.to_owned(),
            pod_uid: uid.to_owned(),
            dir: std::path::PathBuf::new(),
        }
    }

    #[test]
    fn checks_a_contract_record() {
        let r: Value = serde_json::from_str(
            r#"{"time":"2026-11-21T10:00:00.123456Z","duration_ms":1.234,"protocol":"http","version":"1.1","transport":"tcp","tls":false,"client":{"ip":"10.0.0.5","port":41234,"pod_uid":"u1","container_id":"c1","pid":1234,"process":"curl"},"server":{"ip":"10.0.0.9","port":8080,"pod_uid":"u2","container_id":"c2","pid":99,"process":"nginx"},"request":{"method":"GET","path":"/items/1","host":"api:8080"},"response":{"status":200},"status":"ok"}"#,
        )
        .expect("json");
        let client = EndExpect::new(
            "10.0.0.5".parse().expect("ip"),
            None,
            &container("c1", "u1"),
        )
        .process(1234, "curl");
        let server = EndExpect::new(
            "10.0.0.9".parse().expect("ip"),
            Some(8080),
            &container("c2", "u2"),
        );
        let e = call(
            "GET",
            "/items/1",
            Some("api:8080".into()),
            200,
            client,
            server,
        );
        assert!(involves(&r, &["10.0.0.9".parse().expect("ip")]));
        assert!(!involves(&r, &["10.0.0.1".parse().expect("ip")]));
        assert_calls(std::slice::from_ref(&r), std::slice::from_ref(&e));
        let mut wrong = r;
        wrong["server"]["container_id"] = "other".into();
        assert!(std::panic::catch_unwind(|| e.check(&wrong)).is_err());
    }
}

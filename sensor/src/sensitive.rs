//! Sensitive calls: requests to cloud instance metadata services (and, apart, their credential paths)
//! and Kubernetes API reads of Secrets. Classified once per call in `enrich`; counted by the metrics
//! and marked on spans.
//!
//! Only HTTP calls (HTTP/1.x and HTTP/2, plaintext or TLS capture) can be sensitive: gRPC, DNS and the
//! rest never are (a DNS query the GCP metadata server answers on 169.254.169.254:53 hands out nothing).
//!
//! Cloud metadata: the server is 169.254.169.254 or fd00:ec2::254 (any port: AWS, Azure and GCP use
//! 80, GKE's metadata server 988), or the `Host`/`:authority` names one (`metadata.google.internal`,
//! `169.254.169.254`, `[fd00:ec2::254]`, any port: the call may go through a proxy or a DNAT). Among
//! those, the paths that hand out credentials are `CloudCredentials`, the rest `CloudMetadata`:
//! - AWS: `/<version>/meta-data/iam/security-credentials[/<role>]` (the role listing is step one of
//!   every credential fetch) and `/<version>/meta-data/identity-credentials/ec2/security-credentials/...`.
//!   The IMDSv2 session token (`PUT /latest/api/token`) is *not* credentials: it only unlocks reads of
//!   the metadata service itself, and every IMDSv2 client fetches one (an SDK reading its region), so
//!   counting it as credentials would make the credential alert fire for every AWS pod. The credential
//!   GET that follows it is counted.
//! - Azure: `/metadata/identity/oauth2/token` (managed identity access tokens).
//! - GCP: `/computeMetadata/<version>/instance/service-accounts/<sa>/token` (OAuth2 access token) and
//!   `.../identity` (OIDC identity token).
//!
//! Kubernetes Secrets: a `GET` (get, list, and watch, which is a list with `?watch=true`; the query
//! is dropped by the parsers, so a watch looks like a list) of `/api/v1/secrets`,
//! `/api/v1/namespaces/<ns>/secrets[/<name>]`, or the same under the legacy `/api/v1/watch/`. Other
//! resources and writes are not reads of Secrets. The path alone decides (podtap does not know which
//! server is the API server); it is specific enough.
//!
//! Percent-encoded paths are decoded first (the API server decodes them, so `%73ecrets` is `secrets`).

use std::{
    borrow::Cow,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use crate::model::{Call, Request, SensitiveCategory};

/// The IPv4 link-local address of the AWS, Azure, GCP (and other) metadata services.
const METADATA_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// The IPv6 address of the AWS metadata service (Nitro instances).
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// The category of a call, if it is sensitive.
#[must_use]
pub fn classify(call: &Call) -> Option<SensitiveCategory> {
    let Request::Http(request) = &call.request else {
        return None;
    };
    let path = decode_path(&request.path);
    if is_metadata_ip(call.server.ip) || request.host.as_deref().is_some_and(is_metadata_host) {
        return Some(if is_credential_path(&path) {
            SensitiveCategory::CloudCredentials
        } else {
            SensitiveCategory::CloudMetadata
        });
    }
    (request.method == "GET" && is_secret_read(&path)).then_some(SensitiveCategory::K8sSecret)
}

fn is_metadata_ip(ip: IpAddr) -> bool {
    // A dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d.
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4 == METADATA_V4,
        IpAddr::V6(v6) => v6 == METADATA_V6,
    }
}

/// `Host` or `:authority`, with or without a port, in any case.
fn is_metadata_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("metadata.google.internal")
        || name.parse::<IpAddr>().is_ok_and(is_metadata_ip)
}

/// Path segments, empty ones (doubled or trailing slashes) skipped.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn is_credential_path(path: &str) -> bool {
    let mut s = segments(path);
    match (s.next(), s.next(), s.next()) {
        // AWS: /<version>/meta-data/...
        (Some(_version), Some("meta-data"), Some("iam")) => {
            s.next() == Some("security-credentials")
        }
        (Some(_version), Some("meta-data"), Some("identity-credentials")) => {
            s.next() == Some("ec2") && s.next() == Some("security-credentials")
        }
        // Azure
        (Some("metadata"), Some("identity"), Some("oauth2")) => s.next() == Some("token"),
        // GCP: /computeMetadata/<version>/instance/service-accounts/<sa>/{token,identity}
        (Some("computeMetadata"), Some(_version), Some("instance")) => {
            s.next() == Some("service-accounts")
                && s.next().is_some()
                && matches!(s.next(), Some("token" | "identity"))
                && s.next().is_none()
        }
        _ => false,
    }
}

fn is_secret_read(path: &str) -> bool {
    let mut s = segments(path);
    if s.next() != Some("api") || s.next() != Some("v1") {
        return false;
    }
    let mut next = s.next();
    if next == Some("watch") {
        next = s.next();
    }
    let resource = match next {
        Some("namespaces") => {
            if s.next().is_none() {
                return false;
            }
            s.next()
        }
        other => other,
    };
    if resource != Some("secrets") {
        return false;
    }
    // The collection, or one Secret by name (Secrets have no subresources).
    let _name = s.next();
    s.next().is_none()
}

/// The path with `%XX` escapes decoded (invalid escapes are kept as they are). Borrowed, and free,
/// when there is nothing to decode: the common case.
fn decode_path(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let hex = |b: u8| (b as char).to_digit(16);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        CallStatus, DnsRequest, Endpoint, GrpcRequest, HttpRequest, ParsedCall, Protocol, Transport,
    };

    const C: Option<SensitiveCategory> = Some(SensitiveCategory::CloudCredentials);
    const M: Option<SensitiveCategory> = Some(SensitiveCategory::CloudMetadata);
    const S: Option<SensitiveCategory> = Some(SensitiveCategory::K8sSecret);

    /// (server, port, method, path, Host, expected)
    type Case = (
        &'static str,
        u16,
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<SensitiveCategory>,
    );

    fn call_to(server: &str, port: u16, request: Request) -> Call {
        let parsed = ParsedCall {
            protocol: Protocol::Http,
            version: Some("1.1"),
            start: 1,
            end: 2,
            request,
            response: None,
            status: CallStatus::NoResponse,
        };
        Call::new(
            parsed,
            Transport::Tcp,
            Endpoint::new("10.1.0.5".parse().expect("ip"), 40000),
            Endpoint::new(server.parse().expect("ip"), port),
        )
    }

    fn http(server: &str, port: u16, method: &str, path: &str, host: Option<&str>) -> Call {
        call_to(
            server,
            port,
            Request::Http(HttpRequest {
                method: method.into(),
                path: path.into(),
                host: host.map(Into::into),
            }),
        )
    }

    #[test]
    fn metadata_services() {
        let ip = "169.254.169.254";
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // AWS
            (ip, 80, "GET", "/latest/meta-data/", Some(ip), M),
            (ip, 80, "GET", "/latest/meta-data/placement/region", None, M),
            (ip, 80, "GET", "/latest/user-data", None, M),
            (ip, 80, "GET", "/latest/dynamic/instance-identity/document", None, M),
            (ip, 80, "PUT", "/latest/api/token", Some(ip), M),
            (ip, 80, "GET", "/latest/meta-data/iam/info", None, M),
            (ip, 80, "GET", "/latest/meta-data/iam/security-credentials/", None, C),
            (ip, 80, "GET", "/latest/meta-data/iam/security-credentials", None, C),
            (ip, 80, "GET", "/latest/meta-data/iam/security-credentials/web-role", None, C),
            (ip, 80, "GET", "/2021-07-15/meta-data/iam/security-credentials/web-role", None, C),
            (ip, 80, "GET", "/latest/meta-data/identity-credentials/ec2/security-credentials/ec2-instance", None, C),
            (ip, 80, "GET", "/latest/meta-data/identity-credentials/ec2/info", None, M),
            ("fd00:ec2::254", 80, "GET", "/latest/meta-data/iam/security-credentials/r", None, C),
            ("fd00:ec2::254", 80, "GET", "/latest/meta-data/ami-id", None, M),
            ("::ffff:169.254.169.254", 80, "GET", "/latest/meta-data/ami-id", None, M),
            // Azure
            (ip, 80, "GET", "/metadata/instance", Some(ip), M),
            (ip, 80, "GET", "/metadata/instance/compute/location", None, M),
            (ip, 80, "GET", "/metadata/identity/oauth2/token", None, C),
            (ip, 80, "GET", "/metadata/identity/info", None, M),
            (ip, 80, "GET", "/metadata/attested/document", None, M),
            // GCP, by address and by name (GKE's metadata server listens on 988)
            (ip, 80, "GET", "/computeMetadata/v1/project/project-id", Some("metadata.google.internal"), M),
            (ip, 80, "GET", "/computeMetadata/v1/instance/service-accounts/default/email", None, M),
            (ip, 80, "GET", "/computeMetadata/v1/instance/service-accounts/default/", None, M),
            (ip, 80, "GET", "/computeMetadata/v1/instance/service-accounts/default/token", None, C),
            (ip, 988, "GET", "/computeMetadata/v1/instance/service-accounts/sa@p.iam.gserviceaccount.com/token", None, C),
            (ip, 80, "GET", "/computeMetadata/v1/instance/service-accounts/default/identity", None, C),
            ("10.0.0.9", 988, "GET", "/computeMetadata/v1/instance/service-accounts/default/token", Some("metadata.google.internal"), C),
            ("10.0.0.9", 80, "GET", "/computeMetadata/v1/instance/zone", Some("METADATA.google.internal."), M),
            ("10.0.0.9", 80, "GET", "/computeMetadata/v1/instance/zone", Some("metadata.google.internal:80"), M),
            ("10.0.0.9", 3128, "GET", "/latest/meta-data/iam/security-credentials/r", Some("169.254.169.254:80"), C),
            ("10.0.0.9", 3128, "GET", "/latest/meta-data/", Some("[fd00:ec2::254]:80"), M),
            ("10.0.0.9", 3128, "GET", "/latest/meta-data/", Some("[fd00:ec2::254]"), M),
            // Any path on a metadata address is metadata, even one podtap could not decode.
            (ip, 80, "GET", "/", None, M),
            (ip, 80, "", "", None, M),
            (ip, 80, "GET", "/latest/meta-data/iam/%73ecurity-credentials/r", None, C),
            // Not metadata services
            ("169.254.169.253", 80, "GET", "/latest/meta-data/iam/security-credentials/r", None, None),
            ("10.0.0.9", 80, "GET", "/latest/meta-data/iam/security-credentials/r", Some("api.example.com"), None),
            ("10.0.0.9", 80, "GET", "/computeMetadata/v1/instance/service-accounts/default/token", Some("metadata.google.internal.evil.com"), None),
            ("10.0.0.9", 80, "GET", "/metadata/identity/oauth2/token", None, None),
        ];
        for &(server, port, method, path, host, want) in cases {
            let call = http(server, port, method, path, host);
            assert_eq!(
                classify(&call),
                want,
                "{method} {path} to {server}:{port} host {host:?}"
            );
        }
    }

    #[test]
    fn kubernetes_secret_reads() {
        let api = "10.96.0.1";
        #[rustfmt::skip]
        let cases: &[(&str, &str, Option<SensitiveCategory>)] = &[
            ("GET", "/api/v1/secrets", S),
            ("GET", "/api/v1/namespaces/x/secrets", S),
            ("GET", "/api/v1/namespaces/x/secrets/", S),
            ("GET", "/api/v1/namespaces/x/secrets/y", S),
            ("GET", "/api/v1/namespaces/kube-system/secrets/bootstrap-token-abcdef", S),
            ("GET", "/api/v1/watch/secrets", S),
            ("GET", "/api/v1/watch/namespaces/x/secrets", S),
            ("GET", "/api/v1/watch/namespaces/x/secrets/y", S),
            ("GET", "/api/v1/namespaces/x/%73ecrets/y", S),
            // Writes are not reads.
            ("POST", "/api/v1/namespaces/x/secrets", None),
            ("PUT", "/api/v1/namespaces/x/secrets/y", None),
            ("PATCH", "/api/v1/namespaces/x/secrets/y", None),
            ("DELETE", "/api/v1/namespaces/x/secrets/y", None),
            ("", "/api/v1/namespaces/x/secrets/y", None),
            // Other resources and paths.
            ("GET", "/api/v1/namespaces/x/configmaps/y", None),
            ("GET", "/api/v1/namespaces/secrets", None),
            ("GET", "/api/v1/namespaces/secrets/pods", None),
            ("GET", "/api/v1/namespaces/x/pods/secrets", None),
            ("GET", "/api/v1/namespaces/x/secrets/y/z", None),
            ("GET", "/api/v1/namespaces/x", None),
            ("GET", "/api/v1/pods", None),
            ("GET", "/api/v2/secrets", None),
            ("GET", "/apis/v1/secrets", None),
            ("GET", "/secrets", None),
            ("GET", "/api/v1/secretsx", None),
            ("GET", "/", None),
            ("GET", "", None),
        ];
        for &(method, path, want) in cases {
            for host in [None, Some("kubernetes.default.svc:443")] {
                let call = http(api, 443, method, path, host);
                assert_eq!(classify(&call), want, "{method} {path}");
            }
        }
    }

    #[test]
    fn tls_and_http2_are_classified_alike() {
        let mut call = http(
            "10.96.0.1",
            443,
            "GET",
            "/api/v1/namespaces/x/secrets/y",
            None,
        );
        call.tls = true;
        call.version = Some("2");
        assert_eq!(classify(&call), S);
    }

    #[test]
    fn other_protocols_are_never_sensitive() {
        let grpc = call_to(
            "169.254.169.254",
            80,
            Request::Grpc(GrpcRequest {
                method: "/api/v1/secrets".into(),
                authority: Some("metadata.google.internal".into()),
                messages: 1,
            }),
        );
        assert_eq!(classify(&grpc), None);
        let dns = call_to(
            "169.254.169.254",
            53,
            Request::Dns(DnsRequest {
                id: 1,
                name: "metadata.google.internal".into(),
                kind: "A".into(),
            }),
        );
        assert_eq!(classify(&dns), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(decode_path("/a%2Fb"), "/a/b");
        assert_eq!(decode_path("/a%2"), "/a%2");
        assert_eq!(decode_path("/a%zz%"), "/a%zz%");
        assert_eq!(decode_path("%ff"), "\u{fffd}");
        assert!(matches!(decode_path("/plain"), Cow::Borrowed(_)));
    }
}

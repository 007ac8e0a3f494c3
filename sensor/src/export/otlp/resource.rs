//! The resource of a span: the pod, container and process at one local end of a call, from the
//! Kubernetes metadata when podtap has it and from the cgroup and the socket's owner otherwise.

use opentelemetry_proto::tonic::{
    common::v1::{any_value, AnyValue, KeyValue},
    resource::v1::Resource,
};

use crate::model::Endpoint;

/// A string attribute.
pub(crate) fn string(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// An integer attribute.
pub(crate) fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// An array-of-strings attribute.
pub(crate) fn strings(key: &str, values: &[String]) -> KeyValue {
    let values = values
        .iter()
        .map(|v| AnyValue {
            value: Some(any_value::Value::StringValue(v.clone())),
        })
        .collect();
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::ArrayValue(
                opentelemetry_proto::tonic::common::v1::ArrayValue { values },
            )),
        }),
        ..Default::default()
    }
}

/// The resource of a local end (`node`: this node's name, for ends without metadata).
pub(crate) fn of_endpoint(end: &Endpoint, node: Option<&str>) -> Resource {
    let mut attributes = Vec::with_capacity(12);
    let meta = end.meta.as_deref();
    let service = meta
        .map(|m| m.service_name.clone())
        .filter(|s| !s.is_empty())
        .or_else(|| end.service.clone())
        .unwrap_or_else(|| match &end.process {
            // The OpenTelemetry default for a service without a name.
            Some(process) => format!("unknown_service:{process}"),
            None => "unknown_service".to_owned(),
        });
    attributes.push(string("service.name", service));
    if let Some(namespace) = meta
        .map(|m| m.service_namespace.clone())
        .filter(|s| !s.is_empty())
    {
        attributes.push(string("service.namespace", namespace));
    }
    let namespace = meta.map(|m| m.namespace.clone()).or(end.namespace.clone());
    if let Some(namespace) = namespace.filter(|s| !s.is_empty()) {
        attributes.push(string("k8s.namespace.name", namespace));
    }
    let pod = meta.map(|m| m.name.clone()).or(end.pod.clone());
    if let Some(pod) = pod.filter(|s| !s.is_empty()) {
        attributes.push(string("k8s.pod.name", pod));
    }
    let uid = meta.map(|m| m.uid.clone()).or(end.pod_uid.clone());
    if let Some(uid) = uid.filter(|s| !s.is_empty()) {
        attributes.push(string("k8s.pod.uid", uid));
    }
    if let Some(node) = meta.and_then(|m| m.node.as_deref()).or(node) {
        attributes.push(string("k8s.node.name", node));
    }
    let container = meta
        .zip(end.container_id.as_deref())
        .and_then(|(m, id)| m.container(id))
        .map(|c| c.name.clone())
        .or(end.container.clone());
    if let Some(container) = container.filter(|s| !s.is_empty()) {
        attributes.push(string("k8s.container.name", container));
    }
    if let Some(id) = &end.container_id {
        attributes.push(string("container.id", id.clone()));
    }
    if let Some(owner) = meta.and_then(|m| m.owner.as_ref()) {
        attributes.push(string(owner.kind.name_attribute(), owner.name.clone()));
    }
    if let Some(pid) = end.pid {
        attributes.push(int("process.pid", i64::from(pid)));
    }
    if let Some(process) = &end.process {
        attributes.push(string("process.executable.name", process.clone()));
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// The resource of podtap itself (its metrics).
pub(crate) fn of_sensor(node: Option<&str>) -> Resource {
    let mut attributes = vec![
        string("service.name", "podtap"),
        string("service.version", env!("CARGO_PKG_VERSION")),
    ];
    if let Some(node) = node {
        attributes.push(string("k8s.node.name", node));
    }
    if let Ok(host) = rustix::system::uname().nodename().to_str() {
        attributes.push(string("host.name", host));
    }
    attributes.push(int("process.pid", i64::from(std::process::id())));
    Resource {
        attributes,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::k8s::meta::{ContainerMeta, PodMeta, Workload, WorkloadKind};

    fn get<'a>(resource: &'a Resource, key: &str) -> Option<&'a any_value::Value> {
        resource
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    fn text<'a>(resource: &'a Resource, key: &str) -> Option<&'a str> {
        match get(resource, key) {
            Some(any_value::Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    #[test]
    fn pod_with_metadata() {
        let mut end = Endpoint::new("10.0.0.5".parse().expect("address"), 41234);
        end.pod_uid = Some("uid-1".into());
        end.container_id = Some("c0ffee".into());
        end.pid = Some(42);
        end.process = Some("python3".into());
        end.meta = Some(Arc::new(PodMeta {
            uid: "uid-1".into(),
            name: "web-7d9f".into(),
            namespace: "shop".into(),
            node: Some("node-a".into()),
            owner: Some(Workload {
                kind: WorkloadKind::Deployment,
                name: "web".into(),
            }),
            service_name: "web".into(),
            service_namespace: "shop".into(),
            containers: vec![ContainerMeta {
                name: "app".into(),
                id: Some("c0ffee".into()),
            }],
            ..Default::default()
        }));
        let r = of_endpoint(&end, Some("other"));
        assert_eq!(text(&r, "service.name"), Some("web"));
        assert_eq!(text(&r, "service.namespace"), Some("shop"));
        assert_eq!(text(&r, "k8s.pod.name"), Some("web-7d9f"));
        assert_eq!(text(&r, "k8s.pod.uid"), Some("uid-1"));
        assert_eq!(text(&r, "k8s.namespace.name"), Some("shop"));
        assert_eq!(text(&r, "k8s.node.name"), Some("node-a"));
        assert_eq!(text(&r, "k8s.container.name"), Some("app"));
        assert_eq!(text(&r, "container.id"), Some("c0ffee"));
        assert_eq!(text(&r, "k8s.deployment.name"), Some("web"));
        assert_eq!(
            get(&r, "process.pid"),
            Some(&any_value::Value::IntValue(42))
        );
        assert_eq!(text(&r, "process.executable.name"), Some("python3"));
    }

    #[test]
    fn without_metadata_only_what_is_known() {
        let mut end = Endpoint::new("10.0.0.5".parse().expect("address"), 41234);
        end.pod_uid = Some("uid-2".into());
        end.process = Some("curl".into());
        let r = of_endpoint(&end, Some("node-b"));
        assert_eq!(text(&r, "service.name"), Some("unknown_service:curl"));
        assert_eq!(text(&r, "k8s.pod.uid"), Some("uid-2"));
        assert_eq!(text(&r, "k8s.node.name"), Some("node-b"));
        assert_eq!(text(&r, "k8s.pod.name"), None);
        assert_eq!(text(&r, "container.id"), None);
    }
}

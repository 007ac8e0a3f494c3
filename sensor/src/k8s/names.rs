//! Names derived from pod metadata: the owner workload (through ReplicaSet -> Deployment and
//! Job -> CronJob) and `service.name` / `service.namespace` in the order of the OpenTelemetry semantic
//! conventions ("Specify resource attributes using Kubernetes annotations", non-normative k8s page):
//!
//! - `service.name`: the pod annotation `resource.opentelemetry.io/service.name`, the labels
//!   `app.kubernetes.io/instance`, then `app.kubernetes.io/name`, then the owner workload's name
//!   (`k8s.deployment.name`, `k8s.replicaset.name`, `k8s.statefulset.name`, `k8s.daemonset.name`,
//!   `k8s.cronjob.name`, `k8s.job.name`), then the pod name (the container name, last in that list, is
//!   never reached: every pod has a name).
//! - `service.namespace`: the annotation `resource.opentelemetry.io/service.namespace`, else the pod's
//!   namespace.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::meta::{MetadataStore, OwnerMap, Workload, WorkloadKind};

pub const SERVICE_NAME_ANNOTATION: &str = "resource.opentelemetry.io/service.name";
pub const SERVICE_NAMESPACE_ANNOTATION: &str = "resource.opentelemetry.io/service.namespace";
const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
const NAME_LABEL: &str = "app.kubernetes.io/name";

fn non_empty<'a>(map: Option<&'a BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
    map?.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

/// `service.name` of a pod (see the module comment for the order).
#[must_use]
pub fn service_name(
    pod_name: &str,
    annotations: Option<&BTreeMap<String, String>>,
    labels: Option<&BTreeMap<String, String>>,
    owner: Option<&Workload>,
) -> String {
    non_empty(annotations, SERVICE_NAME_ANNOTATION)
        .or_else(|| non_empty(labels, INSTANCE_LABEL))
        .or_else(|| non_empty(labels, NAME_LABEL))
        .or_else(|| owner.map(|w| w.name.as_str()))
        .unwrap_or(pod_name)
        .to_string()
}

/// `service.namespace` of a pod.
#[must_use]
pub fn service_namespace(
    namespace: &str,
    annotations: Option<&BTreeMap<String, String>>,
) -> String {
    non_empty(annotations, SERVICE_NAMESPACE_ANNOTATION)
        .unwrap_or(namespace)
        .to_string()
}

/// The workload at the top of a pod's owner chain: its controller reference (or, without one, its
/// first), a ReplicaSet replaced by its Deployment and a Job by its CronJob when the store knows them.
/// Owners of other kinds (a Node for static pods, custom controllers) give none.
#[must_use]
pub fn owner_workload(
    namespace: &str,
    refs: &[OwnerReference],
    store: &MetadataStore,
) -> Option<Workload> {
    let r = refs
        .iter()
        .find(|r| r.controller == Some(true))
        .or_else(|| refs.first())?;
    let (kind, name) = match r.kind.as_str() {
        "ReplicaSet" => match store.owner_of(OwnerMap::ReplicaSets, namespace, &r.name) {
            Some(d) => (WorkloadKind::Deployment, d),
            None => (WorkloadKind::ReplicaSet, r.name.clone()),
        },
        "Job" => match store.owner_of(OwnerMap::Jobs, namespace, &r.name) {
            Some(c) => (WorkloadKind::CronJob, c),
            None => (WorkloadKind::Job, r.name.clone()),
        },
        "StatefulSet" => (WorkloadKind::StatefulSet, r.name.clone()),
        "DaemonSet" => (WorkloadKind::DaemonSet, r.name.clone()),
        "Deployment" => (WorkloadKind::Deployment, r.name.clone()),
        "CronJob" => (WorkloadKind::CronJob, r.name.clone()),
        _ => return None,
    };
    Some(Workload { kind, name })
}

/// The Deployment (or CronJob) named by a ReplicaSet's (or Job's) owner references.
#[must_use]
pub fn controller_named(refs: &[OwnerReference], kind: &str) -> Option<String> {
    refs.iter()
        .find(|r| r.kind == kind && r.controller != Some(false))
        .map(|r| r.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn owner_ref(kind: &str, name: &str) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }
    }

    #[test]
    fn service_name_follows_the_semconv_order() {
        let dep = Workload {
            kind: WorkloadKind::Deployment,
            name: "web".into(),
        };
        let ann = map(&[(SERVICE_NAME_ANNOTATION, "from-annotation")]);
        let both = map(&[(INSTANCE_LABEL, "inst"), (NAME_LABEL, "nm")]);
        let name_only = map(&[(NAME_LABEL, "nm")]);
        assert_eq!(
            service_name("p", Some(&ann), Some(&both), Some(&dep)),
            "from-annotation"
        );
        assert_eq!(service_name("p", None, Some(&both), Some(&dep)), "inst");
        assert_eq!(service_name("p", None, Some(&name_only), Some(&dep)), "nm");
        assert_eq!(service_name("p", None, None, Some(&dep)), "web");
        assert_eq!(service_name("p", None, None, None), "p");
        let empty = map(&[(SERVICE_NAME_ANNOTATION, "")]);
        assert_eq!(service_name("p", Some(&empty), None, None), "p");
        let ns = map(&[(SERVICE_NAMESPACE_ANNOTATION, "shop")]);
        assert_eq!(service_namespace("default", Some(&ns)), "shop");
        assert_eq!(service_namespace("default", None), "default");
    }

    #[test]
    fn owner_chain() {
        let store = MetadataStore::new(None);
        store.owner_apply(OwnerMap::ReplicaSets, "ns", "web-7d9f", Some("web"));
        store.owner_apply(OwnerMap::Jobs, "ns", "backup-28000", Some("backup"));
        let w = |refs: &[OwnerReference]| owner_workload("ns", refs, &store);
        assert_eq!(
            w(&[owner_ref("ReplicaSet", "web-7d9f")]),
            Some(Workload {
                kind: WorkloadKind::Deployment,
                name: "web".into()
            })
        );
        assert_eq!(
            w(&[owner_ref("ReplicaSet", "bare")]),
            Some(Workload {
                kind: WorkloadKind::ReplicaSet,
                name: "bare".into()
            })
        );
        assert_eq!(
            w(&[owner_ref("Job", "backup-28000")]),
            Some(Workload {
                kind: WorkloadKind::CronJob,
                name: "backup".into()
            })
        );
        assert_eq!(
            w(&[owner_ref("StatefulSet", "db")]),
            Some(Workload {
                kind: WorkloadKind::StatefulSet,
                name: "db".into()
            })
        );
        assert_eq!(
            w(&[owner_ref("DaemonSet", "agent")]),
            Some(Workload {
                kind: WorkloadKind::DaemonSet,
                name: "agent".into()
            })
        );
        assert_eq!(w(&[owner_ref("Node", "n1")]), None);
        assert_eq!(w(&[]), None);
    }
}

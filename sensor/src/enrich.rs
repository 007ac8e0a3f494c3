//! Attribution: turns a `FlowCall` into a `Call` by naming both ends: the owning process of each local
//! socket, and the pod uid and container id from its cgroup.
//!
//! In: `FlowCall`s, a way to look up cgroups and, when podtap talks to the Kubernetes API, the metadata
//! store. Out: `Call`s whose ends carry namespace, pod, container, workload and service names: local
//! ends by their cgroup's pod uid, the other end by its address (a pod IP, or a Service ClusterIP which
//! names the Service only). `site` says whether the other end's node reports it too.

use std::sync::Arc;

use crate::{
    flow::{FlowCall, FlowEnd},
    k8s::{
        filter::CaptureFilter,
        meta::{MetadataStore, Peer, PodMeta},
    },
    model::{Call, Endpoint, Site},
};

/// What names the ends: the metadata store and the capture filter (which says whether a pod on
/// another node is captured there).
#[derive(Clone, Copy)]
pub struct Names<'a> {
    pub store: &'a MetadataStore,
    pub filter: &'a CaptureFilter,
}

/// What a cgroup says about the pod and container it belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupIdentity {
    pub pod_uid: Option<String>,
    pub container_id: Option<String>,
}

/// Looks up the pod identity of a cgroup id.
pub trait CgroupLookup {
    fn identity(&mut self, cgroup_id: u64) -> Option<CgroupIdentity>;
}

/// No cgroup information (capture files).
pub struct NoCgroups;

impl CgroupLookup for NoCgroups {
    fn identity(&mut self, _cgroup_id: u64) -> Option<CgroupIdentity> {
        None
    }
}

/// Builds the call record of a flow call (pod uids and container ids only).
pub fn enrich(call: FlowCall, cgroups: &mut dyn CgroupLookup) -> Call {
    enrich_named(call, cgroups, None)
}

/// Builds the call record of a flow call, with names when `names` is given.
pub fn enrich_named(
    call: FlowCall,
    cgroups: &mut dyn CgroupLookup,
    names: Option<Names<'_>>,
) -> Call {
    let mut client = endpoint(&call.client, cgroups);
    let mut server = endpoint(&call.server, cgroups);
    if let Some(names) = names {
        name_end(&mut client, names);
        name_end(&mut server, names);
    }
    let mut record = Call::new(call.parsed, call.transport, client, server);
    record.tls = call.tls;
    record.request_bytes = call.request_bytes;
    record.response_bytes = call.response_bytes;
    record.sensitive = crate::sensitive::classify(&record);
    record
}

fn endpoint(end: &FlowEnd, cgroups: &mut dyn CgroupLookup) -> Endpoint {
    let mut endpoint = Endpoint::new(end.addr.ip(), end.addr.port());
    let Some(local) = &end.local else {
        return endpoint;
    };
    endpoint.site = Site::Local;
    if let Some(owner) = &local.owner {
        endpoint.pid = Some(owner.pid);
        endpoint.process = Some(owner.comm.clone());
    }
    // The socket's cgroup (from its packets); the owner's as a fallback.
    let cgroup = if local.cgroup_id != 0 {
        Some(local.cgroup_id)
    } else {
        local.owner.as_ref().map(|o| o.cgroup_id)
    };
    if let Some(identity) = cgroup.and_then(|id| cgroups.identity(id)) {
        endpoint.pod_uid = identity.pod_uid;
        endpoint.container_id = identity.container_id;
    }
    endpoint
}

fn fill(end: &mut Endpoint, pod: &Arc<PodMeta>) {
    end.namespace = Some(pod.namespace.clone());
    end.pod = Some(pod.name.clone());
    end.workload = pod.owner.as_ref().map(|w| w.name.clone());
    end.service = Some(pod.service_name.clone());
    end.meta = Some(Arc::clone(pod));
}

/// Whether `pod`'s own node reports its side of calls: a pod on another node, not host-network (its
/// traffic is the node's), that the capture filter selects.
fn captured_elsewhere(pod: &PodMeta, names: Names<'_>) -> bool {
    let Some(this) = names.store.node_name() else {
        return false;
    };
    !pod.host_network && pod.node.as_deref().is_some_and(|n| n != this) && names.filter.matches(pod)
}

fn name_end(end: &mut Endpoint, names: Names<'_>) {
    let store = names.store;
    let ip = end.ip.to_canonical();
    if end.site == Site::Local {
        let Some(uid) = end.pod_uid.as_deref() else {
            // No pod cgroup (a node process, or a runtime whose cgroup names podtap does not know):
            // a pod address still names it.
            if let Some(Peer::Pod(pod)) = store.peer_by_ip(ip) {
                fill(end, &pod);
            }
            return;
        };
        // This node's pods; a pod the node watch has not delivered yet may be known cluster-wide.
        let pod = store
            .pod_by_uid(uid)
            .or_else(|| match store.peer_by_ip(ip) {
                Some(Peer::Pod(p)) if p.uid == uid => Some(p),
                _ => None,
            });
        if let Some(pod) = pod {
            fill(end, &pod);
            end.container = end
                .container_id
                .as_deref()
                .and_then(|id| pod.container(id))
                .map(|c| c.name.clone());
        }
        return;
    }
    match store.peer_by_ip(ip) {
        Some(Peer::Pod(pod)) => {
            fill(end, &pod);
            if captured_elsewhere(&pod, names) {
                end.site = Site::CapturedElsewhere;
            }
        }
        Some(Peer::Service(svc)) => {
            end.namespace = Some(svc.namespace.clone());
            end.service = Some(svc.name.clone());
            let backends = store.service_backends(&svc);
            if !backends.is_empty() && backends.iter().all(|p| captured_elsewhere(p, names)) {
                end.site = Site::CapturedElsewhere;
            }
        }
        None => {}
    }
}

impl CgroupLookup for crate::k8s::CgroupResolver {
    fn identity(&mut self, cgroup_id: u64) -> Option<CgroupIdentity> {
        let info = self.resolve(cgroup_id)?;
        Some(CgroupIdentity {
            pod_uid: info.pod_uid.clone(),
            container_id: info.container_id.clone(),
        })
    }
}

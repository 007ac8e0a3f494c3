//! Attribution: turns a `FlowCall` into a `Call` by naming both ends: the owning process of each local
//! socket, and the pod uid and container id from its cgroup.
//!
//! In: `FlowCall`s and a way to look up cgroups. Out: `Call`s. Names from the Kubernetes API come later
//! in the same place.

use crate::{
    flow::{FlowCall, FlowEnd},
    model::{Call, Endpoint, Site},
};

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

/// Builds the call record of a flow call.
pub fn enrich(call: FlowCall, cgroups: &mut dyn CgroupLookup) -> Call {
    let client = endpoint(&call.client, cgroups);
    let server = endpoint(&call.server, cgroups);
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

impl CgroupLookup for crate::k8s::CgroupResolver {
    fn identity(&mut self, cgroup_id: u64) -> Option<CgroupIdentity> {
        let info = self.resolve(cgroup_id)?;
        Some(CgroupIdentity {
            pod_uid: info.pod_uid.clone(),
            container_id: info.container_id.clone(),
        })
    }
}

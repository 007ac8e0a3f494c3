//! A small Kubernetes API server for tests: it serves real API objects (built with k8s-openapi types) the
//! way kube's client and kube-runtime's watchers read them: lists with `metadata.resourceVersion`, `?watch=true`
//! streams of newline-delimited watch events (ADDED/MODIFIED/DELETED, BOOKMARK when asked), resumption from a
//! resourceVersion, an ERROR event with a 410 `Status` when that version is older than the kept history, the
//! `PartialObjectMetadata(List)` shape when the Accept header asks for it (kube's `metadata_watcher`), and
//! `fieldSelector` / `labelSelector` equality terms (`spec.nodeName=X`).
//!
//! It runs on its own thread and tokio runtime, on 127.0.0.1 and a port picked by the kernel. `stop()` closes
//! the listener and every open watch (as an API server that goes away); `restart()` serves again on the same
//! port with the same objects and history (as one that comes back). `apply`/`delete` change objects and push
//! watch events; `requests()` is the log of what clients asked.
//!
//! Only the API server is a stand-in: everything it returns is a real Kubernetes object.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, ObjectReference, Pod, PodIP, PodSpec, PodStatus, Secret, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::{ByteString, Metadata, Resource};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::util::{next_id, random_hex, random_uid, TempDir};

/// Watch events kept for resumption; a watch from an older resourceVersion gets 410 Gone.
const HISTORY: usize = 10_000;
/// Interval of BOOKMARK events on watches that allow them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(2);

/// A collection of the API: group (`""` for core), version, plural.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey {
    pub group: String,
    pub version: String,
    pub plural: String,
}

impl ResourceKey {
    pub fn new(group: &str, version: &str, plural: &str) -> Self {
        Self {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
        }
    }

    pub fn of<K: Resource>() -> Self {
        Self::new(K::GROUP, K::VERSION, K::URL_PATH_SEGMENT)
    }

    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The `kind` of objects of this collection (for empty lists and bookmarks).
    fn kind(&self) -> String {
        let known = [
            ("pods", "Pod"),
            ("services", "Service"),
            ("secrets", "Secret"),
            ("namespaces", "Namespace"),
            ("nodes", "Node"),
            ("configmaps", "ConfigMap"),
            ("endpointslices", "EndpointSlice"),
            ("replicasets", "ReplicaSet"),
            ("deployments", "Deployment"),
            ("statefulsets", "StatefulSet"),
            ("daemonsets", "DaemonSet"),
            ("jobs", "Job"),
            ("cronjobs", "CronJob"),
        ];
        known
            .iter()
            .find(|(p, _)| *p == self.plural)
            .map(|(_, k)| (*k).to_string())
            .unwrap_or_else(|| self.plural.clone())
    }
}

/// One request a client made.
#[derive(Clone, Debug)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    /// The raw query string (percent-encoded as sent), empty when none.
    pub query: String,
    pub accept: Option<String>,
}

impl ApiRequest {
    pub fn is_watch(&self) -> bool {
        self.query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1")
    }

    /// A decoded query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        parse_query(&self.query).remove(name)
    }
}

#[derive(Debug)]
struct Change {
    rv: u64,
    key: ResourceKey,
    kind: &'static str,
    object: Value,
}

#[derive(Debug, Default)]
struct Store {
    rv: u64,
    objects: BTreeMap<(ResourceKey, String, String), Value>,
    history: VecDeque<Arc<Change>>,
    /// Watches from a resourceVersion older than this get 410 Gone.
    oldest_rv: u64,
}

#[derive(Debug)]
struct Shared {
    store: Mutex<Store>,
    events: broadcast::Sender<Arc<Change>>,
    requests: Mutex<Vec<ApiRequest>>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
struct Running {
    shutdown: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// A running (or stopped) test API server. Drop stops it.
#[derive(Debug)]
pub struct KubeApi {
    shared: Arc<Shared>,
    addr: SocketAddr,
    running: Mutex<Option<Running>>,
    kubeconfig: PathBuf,
    _dir: TempDir,
}

impl KubeApi {
    /// Starts a server on 127.0.0.1 and a free port and writes a kubeconfig that points at it.
    pub fn start() -> Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr().context("local address")?;
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            events,
            requests: Mutex::new(Vec::new()),
        });
        let dir = TempDir::new("podtap-kubeapi")?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_text(&format!("http://{addr}")))
            .with_context(|| format!("writing {}", kubeconfig.display()))?;
        let running = serve(listener, shared.clone())?;
        Ok(Self {
            shared,
            addr,
            running: Mutex::new(Some(running)),
            kubeconfig,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A kubeconfig file (in a temporary directory that lives as long as `self`) whose current context
    /// is this server, with a bearer token.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Closes the listener and every open connection and watch: clients see the API server go away.
    /// Objects and history are kept for `restart`.
    pub fn stop(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(r) = running {
            r.shutdown.send(()).ok();
            r.thread.join().ok();
        }
    }

    /// Serves again on the same port (stopping first if still running).
    pub fn restart(&self) -> Result<()> {
        self.stop();
        // The port was ours a moment ago; SO_REUSEADDR (set by std) lets us bind it despite TIME_WAIT.
        let mut last = None;
        for _ in 0..100 {
            match std::net::TcpListener::bind(self.addr) {
                Ok(listener) => {
                    let running = serve(listener, self.shared.clone())?;
                    *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(running);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(anyhow!("rebinding {}: {last:?}", self.addr))
    }

    pub fn is_running(&self) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Creates or replaces an object (ADDED or MODIFIED event); returns its new resourceVersion.
    pub fn apply<K: Resource + Serialize>(&self, obj: &K) -> Result<u64> {
        let value = serde_json::to_value(obj).context("serialising object")?;
        self.apply_value(ResourceKey::of::<K>(), value)
    }

    /// Creates or replaces an object given as JSON (for objects k8s-openapi cannot build, e.g.
    /// malformed ones). It needs `metadata.name`; `metadata.namespace` is optional.
    pub fn apply_value(&self, key: ResourceKey, mut value: Value) -> Result<u64> {
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("object without metadata.name"))?
            .to_string();
        let ns = value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut store = self.shared.store();
        store.rv += 1;
        let rv = store.rv;
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
            if !meta.contains_key("uid") {
                meta.insert("uid".into(), Value::String(fresh_uid()));
            }
            if !meta.contains_key("creationTimestamp") {
                meta.insert("creationTimestamp".into(), json!("2026-11-21T10:00:00Z"));
            }
        }
        let k = (key.clone(), ns, name);
        let kind = if store.objects.contains_key(&k) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        store.objects.insert(k, value.clone());
        self.record(&mut store, key, kind, value);
        Ok(rv)
    }

    /// Deletes an object (DELETED event); false when there was none.
    pub fn delete<K: Resource>(&self, namespace: &str, name: &str) -> bool {
        self.delete_key(ResourceKey::of::<K>(), namespace, name)
    }

    pub fn delete_key(&self, key: ResourceKey, namespace: &str, name: &str) -> bool {
        let mut store = self.shared.store();
        let Some(mut value) =
            store
                .objects
                .remove(&(key.clone(), namespace.to_string(), name.to_string()))
        else {
            return false;
        };
        store.rv += 1;
        let rv = store.rv;
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        self.record(&mut store, key, "DELETED", value);
        true
    }

    fn record(&self, store: &mut Store, key: ResourceKey, kind: &'static str, object: Value) {
        let change = Arc::new(Change {
            rv: store.rv,
            key,
            kind,
            object,
        });
        store.history.push_back(change.clone());
        while store.history.len() > HISTORY {
            if let Some(old) = store.history.pop_front() {
                store.oldest_rv = old.rv;
            }
        }
        // No receivers is fine: nobody watches yet.
        self.shared.events.send(change).ok();
    }

    /// Forgets the watch history: a watch resuming from any earlier resourceVersion gets 410 Gone
    /// (as after an etcd compaction) and must list again.
    pub fn compact(&self) {
        let mut store = self.shared.store();
        store.history.clear();
        store.oldest_rv = store.rv;
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().rv
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many watches were opened on paths that start with `path_prefix`.
    pub fn watches(&self, path_prefix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.is_watch() && r.path.starts_with(path_prefix))
            .count()
    }

    /// Waits until at least `n` watches were opened on `path_prefix`.
    pub fn wait_watches(&self, path_prefix: &str, n: usize, timeout: Duration) -> Result<()> {
        if crate::util::wait_until(timeout, || (self.watches(path_prefix) >= n).then_some(()))
            .is_none()
        {
            bail!(
                "fewer than {n} watches on {path_prefix} within {timeout:?}; requests: {:?}",
                self.requests()
                    .iter()
                    .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
                    .collect::<Vec<_>>()
            );
        }
        Ok(())
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.stop();
    }
}

fn kubeconfig_text(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: podtap-test\n  cluster:\n    server: {server}\n\
         contexts:\n- name: podtap-test\n  context:\n    cluster: podtap-test\n    user: podtap-test\n    namespace: default\n\
         current-context: podtap-test\nusers:\n- name: podtap-test\n  user:\n    token: podtap-test-token\n"
    )
}

fn serve(listener: std::net::TcpListener, shared: Arc<Shared>) -> Result<Running> {
    listener
        .set_nonblocking(true)
        .context("non-blocking listener")?;
    let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
    let thread = std::thread::Builder::new()
        .name("kube-api".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    ready_tx.send(Err(anyhow!("tokio runtime: {e}"))).ok();
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        ready_tx.send(Err(anyhow!("listener: {e}"))).ok();
                        return;
                    }
                };
                ready_tx.send(Ok(())).ok();
                let app = Router::new().fallback(handle).with_state(shared);
                tokio::select! {
                    r = axum::serve(listener, app) => { if let Err(e) = r { eprintln!("kube-api: {e}"); } }
                    _ = rx => {}
                }
            });
            // Dropping the runtime without waiting aborts every connection task: open watches are cut,
            // as when an API server dies.
            rt.shutdown_timeout(Duration::ZERO);
        })
        .context("spawning the kube-api thread")?;
    ready_rx
        .recv()
        .map_err(|_| anyhow!("kube-api thread died"))??;
    Ok(Running { shutdown, thread })
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=b,c!=d` equality terms of a field or label selector.
#[derive(Debug, Default)]
struct Selector(Vec<(String, String, bool)>);

impl Selector {
    fn parse(s: Option<&String>) -> Self {
        let Some(s) = s else {
            return Self::default();
        };
        Self(
            s.split(',')
                .filter(|t| !t.is_empty())
                .filter_map(|t| {
                    if let Some((k, v)) = t.split_once("!=") {
                        Some((k.trim().to_string(), v.trim().to_string(), false))
                    } else {
                        let (k, v) = t.split_once("==").or_else(|| t.split_once('='))?;
                        Some((k.trim().to_string(), v.trim().to_string(), true))
                    }
                })
                .collect(),
        )
    }

    fn field_matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(k, v, eq)| {
            let ptr = format!("/{}", k.replace('.', "/"));
            let actual = obj.pointer(&ptr).and_then(Value::as_str).unwrap_or("");
            (actual == v) == *eq
        })
    }

    fn label_matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(k, v, eq)| {
            let actual = obj
                .pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str);
            (actual == Some(v.as_str())) == *eq
        })
    }
}

struct Query {
    key: ResourceKey,
    namespace: Option<String>,
    name: Option<String>,
}

fn parse_path(path: &str) -> Option<Query> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match *segs.first()? {
        "api" => ("", *segs.get(1)?, &segs[2.min(segs.len())..]),
        "apis" => (*segs.get(1)?, *segs.get(2)?, &segs[3.min(segs.len())..]),
        _ => return None,
    };
    let (namespace, rest) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let plural = *rest.first()?;
    let name = match rest.len() {
        1 => None,
        2 => Some(rest[1].to_string()),
        _ => return None,
    };
    Some(Query {
        key: ResourceKey::new(group, version, plural),
        namespace,
        name,
    })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn json_response(code: StatusCode, body: &Value, content_type: &str) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = code;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn error_response(code: u16, reason: &str, message: &str) -> Response {
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &status(code, reason, message),
        "application/json",
    )
}

/// The object as kube's metadata API returns it.
fn partial(obj: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
           "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))})
}

fn line(kind: &str, object: Value) -> String {
    let mut s = json!({"type": kind, "object": object}).to_string();
    s.push('\n');
    s
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    shared
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(ApiRequest {
            method: req.method().to_string(),
            path: path.clone(),
            query: query.clone(),
            accept: accept.clone(),
        });
    if req.method() != Method::GET {
        return error_response(405, "MethodNotAllowed", "this test server only reads");
    }
    if path == "/version" {
        return json_response(
            StatusCode::OK,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "podtap-test",
                    "gitTreeState": "clean", "buildDate": "2026-11-21T00:00:00Z", "goVersion": "go1.24",
                    "compiler": "gc", "platform": "linux/amd64"}),
            "application/json",
        );
    }
    let Some(q) = parse_path(&path) else {
        return error_response(
            404,
            "NotFound",
            &format!("the server could not find {path}"),
        );
    };
    let params = parse_query(&query);
    let metadata_only = accept
        .as_deref()
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
    if let Some(name) = &q.name {
        return get_one(&shared, &q, name, metadata_only);
    }
    if matches!(params.get("watch").map(String::as_str), Some("true" | "1")) {
        return watch(&shared, q, &params, metadata_only);
    }
    list(&shared, &q, &params, metadata_only)
}

fn get_one(shared: &Shared, q: &Query, name: &str, metadata_only: bool) -> Response {
    let ns = q.namespace.clone().unwrap_or_default();
    let found = shared
        .store()
        .objects
        .get(&(q.key.clone(), ns.clone(), name.to_string()))
        .cloned();
    let obj = match found {
        Some(o) => o,
        // Any Secret a test asks for exists: the sensitive-call tests only need a real Secret answer.
        None if q.key.plural == "secrets" && q.key.group.is_empty() => {
            match serde_json::to_value(secret(&ns, name, &[("token", b"podtap-test-secret")])) {
                Ok(v) => v,
                Err(e) => return error_response(500, "InternalError", &e.to_string()),
            }
        }
        None => {
            return error_response(
                404,
                "NotFound",
                &format!("{} \"{name}\" not found", q.key.plural),
            )
        }
    };
    if metadata_only {
        json_response(
            StatusCode::OK,
            &partial(&obj),
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        )
    } else {
        json_response(StatusCode::OK, &obj, "application/json")
    }
}

fn selected(
    q: &Query,
    fields: &Selector,
    labels: &Selector,
    key: &ResourceKey,
    obj: &Value,
) -> bool {
    *key == q.key
        && q.namespace
            .as_deref()
            .is_none_or(|ns| obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns))
        && fields.field_matches(obj)
        && labels.label_matches(obj)
}

fn list(
    shared: &Shared,
    q: &Query,
    params: &BTreeMap<String, String>,
    metadata_only: bool,
) -> Response {
    let fields = Selector::parse(params.get("fieldSelector"));
    let labels = Selector::parse(params.get("labelSelector"));
    let store = shared.store();
    let items: Vec<Value> = store
        .objects
        .iter()
        .filter(|((k, _, _), o)| selected(q, &fields, &labels, k, o))
        .map(|(_, o)| if metadata_only { partial(o) } else { o.clone() })
        .collect();
    let rv = store.rv.to_string();
    drop(store);
    if metadata_only {
        json_response(
            StatusCode::OK,
            &json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                    "metadata": {"resourceVersion": rv}, "items": items}),
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )
    } else {
        json_response(
            StatusCode::OK,
            &json!({"apiVersion": q.key.api_version(), "kind": format!("{}List", q.key.kind()),
                    "metadata": {"resourceVersion": rv}, "items": items}),
            "application/json",
        )
    }
}

fn shape(o: &Value, metadata_only: bool) -> Value {
    if metadata_only {
        partial(o)
    } else {
        o.clone()
    }
}

fn bookmark(key: &ResourceKey, metadata_only: bool, rv: u64, initial_end: bool) -> String {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let (api_version, kind) = if metadata_only {
        (
            "meta.k8s.io/v1".to_string(),
            "PartialObjectMetadata".to_string(),
        )
    } else {
        (key.api_version(), key.kind())
    };
    line(
        "BOOKMARK",
        json!({"apiVersion": api_version, "kind": kind, "metadata": meta}),
    )
}

fn watch(
    shared: &Shared,
    q: Query,
    params: &BTreeMap<String, String>,
    metadata_only: bool,
) -> Response {
    let fields = Selector::parse(params.get("fieldSelector"));
    let labels = Selector::parse(params.get("labelSelector"));
    let bookmarks = params.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let initial_events = params.get("sendInitialEvents").map(String::as_str) == Some("true");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    // Backlog and subscription under one lock: no event falls between them.
    let store = shared.store();
    let mut rx = shared.events.subscribe();
    let mut head: Vec<String> = Vec::new();
    let requested = params.get("resourceVersion").cloned().unwrap_or_default();
    let mut gone = false;
    if requested.is_empty() || requested == "0" || initial_events {
        for ((k, _, _), o) in &store.objects {
            if selected(&q, &fields, &labels, k, o) {
                head.push(line("ADDED", shape(o, metadata_only)));
            }
        }
        if initial_events {
            head.push(bookmark(&q.key, metadata_only, store.rv, true));
        }
    } else {
        match requested.parse::<u64>() {
            Ok(rv) if rv < store.oldest_rv => {
                gone = true;
                head.push(line(
                    "ERROR",
                    status(
                        410,
                        "Expired",
                        &format!("too old resource version: {rv} ({})", store.oldest_rv),
                    ),
                ));
            }
            Ok(rv) => {
                for c in store.history.iter().filter(|c| c.rv > rv) {
                    if selected(&q, &fields, &labels, &c.key, &c.object) {
                        head.push(line(c.kind, shape(&c.object, metadata_only)));
                    }
                }
            }
            Err(_) => {
                return error_response(
                    400,
                    "BadRequest",
                    &format!("invalid resource version {requested:?}"),
                )
            }
        }
    }
    let mut last_rv = store.rv;
    drop(store);

    let (tx, body_rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(64);
    tokio::spawn(async move {
        for l in head {
            if tx.send(Ok(l)).await.is_err() {
                return;
            }
        }
        if gone {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        loop {
            let out = tokio::select! {
                _ = &mut deadline => return,
                _ = tick.tick() => {
                    if !bookmarks { continue; }
                    bookmark(&q.key, metadata_only, last_rv, false)
                }
                ev = rx.recv() => match ev {
                    Ok(c) => {
                        last_rv = c.rv;
                        if !selected(&q, &fields, &labels, &c.key, &c.object) { continue; }
                        line(c.kind, shape(&c.object, metadata_only))
                    }
                    // A watcher that fell behind is cut; the client resumes or relists.
                    Err(_) => return,
                }
            };
            if tx.send(Ok(out)).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    let ct = if metadata_only {
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
    } else {
        "application/json"
    };
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

// ---------------------------------------------------------------------------------------------
// Builders of the objects the tests serve.

/// A uid in the API's form; random, or unique within the process if /dev/urandom is unreadable.
pub fn fresh_uid() -> String {
    random_uid().unwrap_or_else(|_| {
        format!(
            "00000000-0000-4000-8000-{:04x}{:08x}",
            std::process::id() & 0xffff,
            next_id()
        )
    })
}

/// A 64-hex container id.
pub fn fresh_container_id() -> String {
    random_hex(32).unwrap_or_else(|_| format!("{:064x}", next_id()))
}

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        uid: Some(fresh_uid()),
        ..Default::default()
    }
}

/// A controller ownerReference to `owner`.
pub fn owner_ref<K>(owner: &K) -> OwnerReference
where
    K: Resource + Metadata<Ty = ObjectMeta>,
{
    let m = owner.metadata();
    OwnerReference {
        api_version: K::API_VERSION.to_string(),
        kind: K::KIND.to_string(),
        name: m.name.clone().unwrap_or_default(),
        uid: m.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn labels_map(labels: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    (!labels.is_empty()).then(|| {
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

/// Builds a running Pod.
#[derive(Clone, Debug)]
pub struct PodBuilder {
    pod: Pod,
}

impl PodBuilder {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            pod: Pod {
                metadata: meta(namespace, name),
                spec: Some(PodSpec::default()),
                status: Some(PodStatus {
                    phase: Some("Running".into()),
                    ..Default::default()
                }),
            },
        }
    }

    pub fn uid(mut self, uid: &str) -> Self {
        self.pod.metadata.uid = Some(uid.to_string());
        self
    }

    pub fn node(mut self, node: &str) -> Self {
        if let Some(s) = self.pod.spec.as_mut() {
            s.node_name = Some(node.to_string());
        }
        self
    }

    /// `status.podIP` and `status.podIPs` (and `hostIP` for host-network pods).
    pub fn ip(mut self, ip: impl ToString) -> Self {
        let ip = ip.to_string();
        if let Some(s) = self.pod.status.as_mut() {
            s.pod_ip = Some(ip.clone());
            s.pod_ips = Some(vec![PodIP { ip }]);
        }
        self
    }

    pub fn host_network(mut self, on: bool) -> Self {
        if let Some(s) = self.pod.spec.as_mut() {
            s.host_network = Some(on);
        }
        self
    }

    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.pod
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(k.to_string(), v.to_string());
        self
    }

    pub fn annotation(mut self, k: &str, v: &str) -> Self {
        self.pod
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(k.to_string(), v.to_string());
        self
    }

    /// Adds a controller ownerReference to `owner` (a ReplicaSet, StatefulSet, DaemonSet, Job).
    pub fn owned_by<K>(mut self, owner: &K) -> Self
    where
        K: Resource + Metadata<Ty = ObjectMeta>,
    {
        self.pod
            .metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(owner_ref(owner));
        self
    }

    /// Adds a container and its running status with `containerd://<id>` (id: 64 hex).
    pub fn container(mut self, name: &str, id: &str) -> Self {
        if let Some(s) = self.pod.spec.as_mut() {
            s.containers.push(Container {
                name: name.to_string(),
                image: Some("docker.io/library/podtap-test:1".into()),
                ..Default::default()
            });
        }
        if let Some(s) = self.pod.status.as_mut() {
            s.container_statuses
                .get_or_insert_with(Vec::new)
                .push(ContainerStatus {
                    name: name.to_string(),
                    container_id: Some(format!("containerd://{id}")),
                    image: "docker.io/library/podtap-test:1".into(),
                    image_id: "docker.io/library/podtap-test@sha256:0000".into(),
                    ready: true,
                    restart_count: 0,
                    started: Some(true),
                    ..Default::default()
                });
        }
        self
    }

    pub fn build(self) -> Pod {
        self.pod
    }
}

pub fn deployment(namespace: &str, name: &str) -> Deployment {
    Deployment {
        metadata: meta(namespace, name),
        ..Default::default()
    }
}

/// A ReplicaSet owned by `deployment` (named `<deployment>-<hash>` by the caller).
pub fn replica_set(namespace: &str, name: &str, deployment: &Deployment) -> ReplicaSet {
    let mut m = meta(namespace, name);
    m.owner_references = Some(vec![owner_ref(deployment)]);
    ReplicaSet {
        metadata: m,
        ..Default::default()
    }
}

pub fn stateful_set(namespace: &str, name: &str) -> StatefulSet {
    StatefulSet {
        metadata: meta(namespace, name),
        ..Default::default()
    }
}

pub fn daemon_set(namespace: &str, name: &str) -> DaemonSet {
    DaemonSet {
        metadata: meta(namespace, name),
        ..Default::default()
    }
}

pub fn cron_job(namespace: &str, name: &str) -> CronJob {
    CronJob {
        metadata: meta(namespace, name),
        ..Default::default()
    }
}

/// A Job, owned by `cron_job` when given.
pub fn job(namespace: &str, name: &str, cron_job: Option<&CronJob>) -> Job {
    let mut m = meta(namespace, name);
    m.owner_references = cron_job.map(|c| vec![owner_ref(c)]);
    Job {
        metadata: m,
        ..Default::default()
    }
}

/// A ClusterIP Service selecting `selector`, one TCP port.
pub fn service(
    namespace: &str,
    name: &str,
    cluster_ip: impl ToString,
    selector: &[(&str, &str)],
    port: u16,
) -> Service {
    let ip = cluster_ip.to_string();
    Service {
        metadata: meta(namespace, name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(ip.clone()),
            cluster_ips: Some(vec![ip]),
            selector: labels_map(selector),
            ports: Some(vec![ServicePort {
                name: Some("main".into()),
                port: i32::from(port),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The EndpointSlice of `service` with one ready endpoint per pod (address, node and targetRef from
/// the pod), port `port`.
pub fn endpoint_slice(service: &Service, pods: &[&Pod], port: u16) -> EndpointSlice {
    let svc = service.metadata.name.clone().unwrap_or_default();
    let ns = service.metadata.namespace.clone().unwrap_or_default();
    let mut m = meta(&ns, &format!("{svc}-{:05x}", next_id()));
    m.labels = labels_map(&[("kubernetes.io/service-name", svc.as_str())]);
    m.owner_references = Some(vec![owner_ref(service)]);
    EndpointSlice {
        metadata: m,
        address_type: "IPv4".into(),
        endpoints: pods
            .iter()
            .map(|p| Endpoint {
                addresses: p
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.clone())
                    .into_iter()
                    .collect(),
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                node_name: p.spec.as_ref().and_then(|s| s.node_name.clone()),
                target_ref: Some(ObjectReference {
                    kind: Some("Pod".into()),
                    name: p.metadata.name.clone(),
                    namespace: p.metadata.namespace.clone(),
                    uid: p.metadata.uid.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("main".into()),
            port: Some(i32::from(port)),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

/// An Opaque Secret.
pub fn secret(namespace: &str, name: &str, data: &[(&str, &[u8])]) -> Secret {
    Secret {
        metadata: meta(namespace, name),
        type_: Some("Opaque".into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

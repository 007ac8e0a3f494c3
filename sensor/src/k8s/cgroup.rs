//! Cgroup ids and paths to pod identity.
//!
//! In: a cgroup v2 id (the inode number of the cgroup directory under the cgroup v2 mount, as
//! `bpf_skb_cgroup_id` / `bpf_get_current_cgroup_id` report it) or a cgroup path relative to that mount.
//! Out: a shared [`CgroupInfo`] with the path and, when the kubelet's naming says so, the pod uid,
//! container id, runtime and QoS class. [`CgroupResolver`] keeps a bounded LRU cache and walks the
//! cgroup tree on misses, at most once per rescan interval, caching unknown ids briefly.

use std::{
    num::NonZeroUsize,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use lru::LruCache;

/// Default minimum time between two walks of the cgroup tree.
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_millis(500);
/// Default time an id that a walk did not find stays known-unknown.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Deepest directory level a walk descends to (kubelet trees are about 6 deep).
const MAX_WALK_DEPTH: usize = 32;

/// Errors setting up a resolver.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The cgroup v2 mount is not a readable directory.
    #[error("cgroup v2 root {path} is not usable")]
    Root {
        /// The path given.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A zero-sized cache was asked for.
    #[error("cgroup cache size must be at least 1")]
    ZeroCapacity,
}

/// Container runtime named by a cgroup path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runtime {
    /// containerd (`cri-containerd-<id>.scope`).
    Containerd,
    /// CRI-O (`crio-<id>.scope`).
    CriO,
    /// Docker / cri-dockerd (`docker-<id>.scope`).
    Docker,
}

/// Pod QoS class, from the kubelet's cgroup layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QosClass {
    /// Pod cgroup directly under `kubepods`.
    Guaranteed,
    /// Pod cgroup under `kubepods/burstable`.
    Burstable,
    /// Pod cgroup under `kubepods/besteffort`.
    BestEffort,
}

/// What a cgroup path says about the workload in it. Fields are `None` when the path does not say.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct CgroupInfo {
    /// Path relative to the cgroup v2 mount, starting with `/`.
    pub path: String,
    /// Pod uid as the API writes it (`4f0c1e2d-1111-2222-3333-444455556666`; static pods: 32 hex).
    pub pod_uid: Option<String>,
    /// Full container id (64 hex).
    pub container_id: Option<String>,
    /// Runtime named by the container cgroup.
    pub runtime: Option<Runtime>,
    /// QoS class of the pod.
    pub qos: Option<QosClass>,
}

impl CgroupInfo {
    /// Parses a cgroup path (relative to the cgroup v2 mount, e.g. from `/proc/<pid>/cgroup`).
    ///
    /// Understands the kubelet's systemd driver (`kubepods-burstable-pod<uid_>.slice`), its cgroupfs
    /// driver (`kubepods/burstable/pod<uid>`), both under any prefix (kind, k3s, nested runtimes), and
    /// the container cgroups of containerd, CRI-O and Docker, including `slice:prefix:id` names.
    #[must_use]
    pub fn from_path(path: &str) -> Self {
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let mut info = Self {
            path: if path.starts_with('/') {
                path.to_owned()
            } else {
                format!("/{path}")
            },
            pod_uid: None,
            container_id: None,
            runtime: None,
            qos: None,
        };

        let pod = components
            .iter()
            .enumerate()
            .rev()
            .find_map(|(index, component)| {
                pod_component(component, index.checked_sub(1).map(|p| components[p]))
                    .map(|pod| (index, pod))
            });

        match pod {
            Some((index, pod)) => {
                info.pod_uid = Some(pod.uid);
                info.qos = pod.qos;
                // `<pod slice>:<runtime prefix>:<id>` carries the container in the same component.
                let container = pod.inline_container.or_else(|| {
                    components
                        .get(index + 1)
                        .and_then(|c| container_component(c, true))
                });
                if let Some(container) = container {
                    info.runtime = container.runtime;
                    info.container_id = container.id;
                }
            }
            None => {
                // Outside Kubernetes only runtime-named scopes say what they are.
                if let Some(container) = components
                    .iter()
                    .rev()
                    .find_map(|c| container_component(c, false).filter(|c| c.runtime.is_some()))
                {
                    info.runtime = container.runtime;
                    info.container_id = container.id;
                }
            }
        }
        info
    }
}

struct PodPart {
    uid: String,
    qos: Option<QosClass>,
    inline_container: Option<ContainerPart>,
}

struct ContainerPart {
    id: Option<String>,
    runtime: Option<Runtime>,
}

/// Recognises a pod cgroup directory name; `parent` is the directory above it.
fn pod_component(component: &str, parent: Option<&str>) -> Option<PodPart> {
    // systemd driver, possibly with `:<prefix>:<id>` appended by some runtimes' configs.
    let (name, inline) = match component.split_once(':') {
        Some((name, rest)) => (name, Some(rest)),
        None => (component, None),
    };
    if let Some(stem) = name.strip_suffix(".slice") {
        let (prefix, uid) = stem.rsplit_once("-pod")?;
        let uid = pod_uid(uid)?;
        // `kubepods`, `kubelet-kubepods`, ... followed by an optional QoS tier.
        let qos = if let Some(head) = prefix.strip_suffix("-burstable") {
            head.ends_with("kubepods").then_some(QosClass::Burstable)
        } else if let Some(head) = prefix.strip_suffix("-besteffort") {
            head.ends_with("kubepods").then_some(QosClass::BestEffort)
        } else {
            prefix.ends_with("kubepods").then_some(QosClass::Guaranteed)
        };
        // A `-pod<uid>.slice` outside any kubepods slice is not a kubelet pod.
        qos?;
        let inline_container = inline.and_then(|rest| {
            let (prefix, id) = rest.split_once(':')?;
            Some(ContainerPart {
                id: container_id(id),
                runtime: runtime_for_prefix(prefix),
            })
        });
        return Some(PodPart {
            uid,
            qos,
            inline_container,
        });
    }
    if inline.is_some() {
        return None;
    }
    // cgroupfs driver: `pod<uid>` under `kubepods`, `kubepods/burstable` or `kubepods/besteffort`.
    let uid = pod_uid(name.strip_prefix("pod")?)?;
    let qos = match parent? {
        "burstable" => QosClass::Burstable,
        "besteffort" => QosClass::BestEffort,
        p if p == "kubepods" || p.ends_with("kubepods") => QosClass::Guaranteed,
        _ => return None,
    };
    Some(PodPart {
        uid,
        qos: Some(qos),
        inline_container: None,
    })
}

/// Normalises a pod uid: a UUID with `_` or `-` separators comes back with `-`; a 32-hex static pod
/// hash comes back as it is. Anything else is not a uid.
fn pod_uid(raw: &str) -> Option<String> {
    let uid = raw.replace('_', "-");
    let groups: Vec<&str> = uid.split('-').collect();
    let is_hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    let uuid = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && is_hex(g));
    let static_hash = groups.len() == 1 && uid.len() == 32 && is_hex(&uid);
    (uuid || static_hash).then_some(uid)
}

fn container_id(raw: &str) -> Option<String> {
    (raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit())).then(|| raw.to_owned())
}

fn runtime_for_prefix(prefix: &str) -> Option<Runtime> {
    match prefix {
        "cri-containerd" => Some(Runtime::Containerd),
        "crio" => Some(Runtime::CriO),
        "docker" => Some(Runtime::Docker),
        _ => None,
    }
}

/// Recognises a container cgroup directory name. `bare_hex` allows the cgroupfs driver's plain
/// `<64 hex>` name (only meaningful directly below a pod).
fn container_component(component: &str, bare_hex: bool) -> Option<ContainerPart> {
    if let Some(stem) = component.strip_suffix(".scope") {
        if stem.starts_with("crio-conmon-") {
            // CRI-O's monitor process, not the container itself.
            return Some(ContainerPart {
                id: None,
                runtime: Some(Runtime::CriO),
            });
        }
        let (prefix, id) = stem.rsplit_once('-')?;
        let runtime = runtime_for_prefix(prefix)?;
        return Some(ContainerPart {
            id: Some(container_id(id)?),
            runtime: Some(runtime),
        });
    }
    if let Some((prefix, id)) = component.split_once(':') {
        // `cri-containerd:<id>` style names without a pod slice in front.
        let runtime = runtime_for_prefix(prefix)?;
        return Some(ContainerPart {
            id: Some(container_id(id)?),
            runtime: Some(runtime),
        });
    }
    bare_hex
        .then(|| container_id(component))
        .flatten()
        .map(|id| ContainerPart {
            id: Some(id),
            runtime: None,
        })
}

struct State {
    known: LruCache<u64, Arc<CgroupInfo>>,
    unknown: LruCache<u64, Instant>,
    last_walk: Option<Instant>,
    walks: u64,
}

/// Bounded cache from cgroup v2 ids to [`CgroupInfo`], filled by walking the cgroup tree.
///
/// `resolve` is cheap on hits. On a miss it walks the tree only when the last walk is older than the
/// rescan interval; ids a walk did not find are remembered as unknown for the negative TTL. Both
/// caches are LRU-bounded by the entry count given at construction. Safe to share between threads.
pub struct CgroupResolver {
    root: PathBuf,
    /// Set when the root is a cgroup v2 mount, so ids can be opened as kernfs file handles.
    by_handle: Option<HandleRoot>,
    rescan_interval: Duration,
    negative_ttl: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for CgroupResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CgroupResolver")
            .field("root", &self.root)
            .field("rescan_interval", &self.rescan_interval)
            .field("negative_ttl", &self.negative_ttl)
            .finish_non_exhaustive()
    }
}

impl CgroupResolver {
    /// A resolver for the cgroup v2 hierarchy mounted at `root` (see
    /// [`HostMounts::cgroup2`](crate::host::mounts::HostMounts)) caching at most `max_entries` ids.
    ///
    /// # Errors
    /// [`CgroupError::Root`] when `root` is not a readable directory, [`CgroupError::ZeroCapacity`].
    pub fn new(root: impl Into<PathBuf>, max_entries: usize) -> Result<Self, CgroupError> {
        let root = root.into();
        let capacity = NonZeroUsize::new(max_entries).ok_or(CgroupError::ZeroCapacity)?;
        std::fs::read_dir(&root).map_err(|source| CgroupError::Root {
            path: root.clone(),
            source,
        })?;
        Ok(Self {
            by_handle: HandleRoot::open(&root),
            root,
            rescan_interval: DEFAULT_RESCAN_INTERVAL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            state: Mutex::new(State {
                known: LruCache::new(capacity),
                unknown: LruCache::new(capacity),
                last_walk: None,
                walks: 0,
            }),
        })
    }

    /// Sets the minimum time between two walks (default [`DEFAULT_RESCAN_INTERVAL`]).
    #[must_use]
    pub fn with_rescan_interval(mut self, interval: Duration) -> Self {
        self.rescan_interval = interval;
        self
    }

    /// Sets how long an id a walk did not find stays unknown (default [`DEFAULT_NEGATIVE_TTL`]).
    #[must_use]
    pub fn with_negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// The cgroup v2 mount this resolves under.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only cache contents behind, which stay valid.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cgroup with id `id`, or `None` when it is not (or not yet, or no longer) found.
    pub fn resolve(&self, id: u64) -> Option<Arc<CgroupInfo>> {
        let mut state = self.lock();
        if let Some(info) = state.known.get(&id) {
            return Some(Arc::clone(info));
        }
        let now = Instant::now();
        if let Some(until) = state.unknown.get(&id).copied() {
            if now < until {
                return None;
            }
            state.unknown.pop(&id);
        }
        // The kernel names the cgroup of an id directly (a kernfs file handle), without a walk.
        let lookup = self
            .by_handle
            .as_ref()
            .map_or(HandleLookup::Unsupported, |root| root.path_of(id));
        match lookup {
            HandleLookup::Found(rel) => {
                let info = Arc::new(CgroupInfo::from_path(&rel));
                state.known.put(id, Arc::clone(&info));
                return Some(info);
            }
            HandleLookup::Gone => {
                state.unknown.put(id, now + self.negative_ttl);
                return None;
            }
            HandleLookup::Unsupported => {}
        }
        if state
            .last_walk
            .is_some_and(|last| now.duration_since(last) < self.rescan_interval)
        {
            return None;
        }
        state.last_walk = Some(now);
        state.walks += 1;
        // The walk runs under the lock so that concurrent misses do not walk twice.
        let found = walk(&self.root);
        let mut result = None;
        for (ino, rel) in found {
            if ino == id {
                let info = Arc::new(CgroupInfo::from_path(&rel));
                state.known.put(ino, Arc::clone(&info));
                result = Some(info);
            } else if state.known.len() < state.known.cap().get() && !state.known.contains(&ino) {
                // Pre-warm with pods that appeared since the last walk, without evicting anything.
                let info = CgroupInfo::from_path(&rel);
                if info.pod_uid.is_some() {
                    state.known.put(ino, Arc::new(info));
                }
            }
        }
        if result.is_none() {
            state.unknown.put(id, now + self.negative_ttl);
        }
        result
    }

    /// Forgets `id` (e.g. when the kernel reports the cgroup removed).
    pub fn forget(&self, id: u64) {
        let mut state = self.lock();
        state.known.pop(&id);
        state.unknown.pop(&id);
    }

    /// Drops cached entries whose directory no longer exists; returns how many were dropped.
    pub fn prune(&self) -> usize {
        let mut state = self.lock();
        let gone: Vec<u64> = state
            .known
            .iter()
            .filter(|(_, info)| !self.root.join(info.path.trim_start_matches('/')).is_dir())
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            state.known.pop(id);
        }
        gone.len()
    }

    /// Number of ids currently cached as known.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().known.len()
    }

    /// Whether no id is cached as known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many times the cgroup tree has been walked.
    #[must_use]
    pub fn walks(&self) -> u64 {
        self.lock().walks
    }
}

/// What the kernel says about a cgroup id.
enum HandleLookup {
    /// The cgroup's path relative to the mount, `/`-rooted.
    Found(String),
    /// No cgroup has this id (any more).
    Gone,
    /// The kernel would not answer (no CAP_DAC_READ_SEARCH, an old kernel, a different mount).
    Unsupported,
}

/// `FILEID_KERNFS`: a kernfs file handle is the node's 64-bit id, which is the cgroup id.
const FILEID_KERNFS: i32 = 0xfe;

/// `struct file_handle` with room for a kernfs id.
#[repr(C)]
struct KernfsHandle {
    handle_bytes: u32,
    handle_type: i32,
    id: u64,
}

/// The cgroup v2 mount, opened once, for `open_by_handle_at`.
struct HandleRoot {
    mount: std::fs::File,
    /// The mount's canonical path: the prefix of what `/proc/self/fd` links say.
    base: PathBuf,
}

impl HandleRoot {
    /// `None` unless `root` is the root of a cgroup v2 mount (`CGROUP2_SUPER_MAGIC`).
    fn open(root: &Path) -> Option<Self> {
        if !rustix::fs::statfs(root).is_ok_and(|fs| fs.f_type == 0x6367_7270) {
            return None;
        }
        Some(Self {
            mount: std::fs::File::open(root).ok()?,
            base: std::fs::canonicalize(root).ok()?,
        })
    }

    /// Opens cgroup `id` as a kernfs file handle and reads its path back from `/proc/self/fd`:
    /// one syscall pair instead of a walk of the whole tree, so a container that started a moment
    /// ago is named on its first packet.
    fn path_of(&self, id: u64) -> HandleLookup {
        use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
        let mut handle = KernfsHandle {
            handle_bytes: 8,
            handle_type: FILEID_KERNFS,
            id,
        };
        // SAFETY: `handle` is a valid `struct file_handle` with `handle_bytes` bytes of payload,
        // and lives across the call; the return value is checked before it is used as a descriptor.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_open_by_handle_at,
                self.mount.as_raw_fd(),
                std::ptr::addr_of_mut!(handle),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let errno = std::io::Error::last_os_error().raw_os_error();
            return if errno == Some(libc::ESTALE) || errno == Some(libc::ENOENT) {
                HandleLookup::Gone
            } else {
                HandleLookup::Unsupported
            };
        }
        let Ok(fd) = i32::try_from(fd) else {
            return HandleLookup::Unsupported;
        };
        // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) else {
            return HandleLookup::Unsupported;
        };
        match target.strip_prefix(&self.base) {
            Ok(rel) => HandleLookup::Found(format!("/{}", rel.to_string_lossy())),
            // Opened through another mount of the hierarchy: the walk knows better.
            Err(_) => HandleLookup::Unsupported,
        }
    }
}

/// All cgroup directories under `root` with their inode numbers and `/`-rooted relative paths.
/// Directories that vanish or cannot be read during the walk are skipped.
fn walk(root: &Path) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    if let Ok(meta) = std::fs::metadata(root) {
        out.push((meta.ino(), "/".to_owned()));
    }
    walk_dirs(root, |dir| {
        out.push((dir.ino, dir.rel.to_owned()));
        true
    });
    out
}

/// A directory met by [`walk_dirs`].
pub struct WalkedDir<'a> {
    /// Its path.
    pub path: &'a Path,
    /// `/`-rooted, relative to the walk's root.
    pub rel: &'a str,
    /// The inode number: the cgroup id.
    pub ino: u64,
    /// 1 for the root's children.
    pub level: usize,
}

/// Visits every directory below `root` (not `root` itself), down to [`MAX_WALK_DEPTH`] levels;
/// `visit` says whether to descend into it. Directories that vanish or cannot be read are skipped.
pub fn walk_dirs(root: &Path, mut visit: impl FnMut(&WalkedDir<'_>) -> bool) {
    let mut stack = vec![(root.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, rel, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_dir() {
                continue;
            }
            let child_rel = format!("{rel}/{}", entry.file_name().to_string_lossy());
            let path = entry.path();
            let level = depth + 1;
            let descend = visit(&WalkedDir {
                path: &path,
                rel: &child_rel,
                ino: meta.ino(),
                level,
            });
            if descend && level < MAX_WALK_DEPTH {
                stack.push((path, child_rel, level));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::mounts::HostMounts;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    const FIXTURE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cgroup/kubepods-trees.tsv"
    ));

    fn column(value: &str) -> Option<&str> {
        (value != "-").then_some(value)
    }

    fn runtime_name(runtime: Option<Runtime>) -> Option<&'static str> {
        runtime.map(|r| match r {
            Runtime::Containerd => "containerd",
            Runtime::CriO => "crio",
            Runtime::Docker => "docker",
        })
    }

    fn qos_name(qos: Option<QosClass>) -> Option<&'static str> {
        qos.map(|q| match q {
            QosClass::Guaranteed => "guaranteed",
            QosClass::Burstable => "burstable",
            QosClass::BestEffort => "besteffort",
        })
    }

    #[test]
    fn fixture_trees() {
        let mut checked = 0;
        for (number, line) in FIXTURE.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 5, "fixture line {}: {line:?}", number + 1);
            let info = CgroupInfo::from_path(fields[0]);
            let at = format!("fixture line {}: {}", number + 1, fields[0]);
            assert_eq!(info.path, fields[0], "{at}");
            assert_eq!(info.pod_uid.as_deref(), column(fields[1]), "{at}");
            assert_eq!(info.container_id.as_deref(), column(fields[2]), "{at}");
            assert_eq!(runtime_name(info.runtime), column(fields[3]), "{at}");
            assert_eq!(qos_name(info.qos), column(fields[4]), "{at}");
            checked += 1;
        }
        assert!(checked > 40, "only {checked} fixture rows");
    }

    const CID: &str = "3f2a1b0c9d8e7f60a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718";
    const UID: &str = "4f0c1e2d-1111-2222-3333-444455556666";
    const UID_: &str = "4f0c1e2d_1111_2222_3333_444455556666";

    #[test]
    fn systemd_burstable_containerd() {
        let path = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope"
        );
        let info = CgroupInfo::from_path(&path);
        assert_eq!(info.pod_uid.as_deref(), Some(UID));
        assert_eq!(info.container_id.as_deref(), Some(CID));
        assert_eq!(info.runtime, Some(Runtime::Containerd));
        assert_eq!(info.qos, Some(QosClass::Burstable));
    }

    #[test]
    fn pod_cgroup_without_container() {
        let info = CgroupInfo::from_path(&format!("/kubepods.slice/kubepods-pod{UID_}.slice"));
        assert_eq!(info.pod_uid.as_deref(), Some(UID));
        assert_eq!(info.container_id, None);
        assert_eq!(info.runtime, None);
        assert_eq!(info.qos, Some(QosClass::Guaranteed));
    }

    #[test]
    fn cgroupfs_forms() {
        let info = CgroupInfo::from_path(&format!("/kubepods/burstable/pod{UID}/{CID}"));
        assert_eq!(info.pod_uid.as_deref(), Some(UID));
        assert_eq!(info.container_id.as_deref(), Some(CID));
        assert_eq!(info.runtime, None, "a bare id does not name its runtime");
        let info = CgroupInfo::from_path(&format!("/kubepods/pod{UID}/{CID}"));
        assert_eq!(info.qos, Some(QosClass::Guaranteed));
        assert_eq!(info.container_id.as_deref(), Some(CID));
        // Below a prefix (k3s in a container, nested runtimes).
        let info = CgroupInfo::from_path(&format!("/k3s-agent/kubepods/besteffort/pod{UID}/{CID}"));
        assert_eq!(info.qos, Some(QosClass::BestEffort));
        assert_eq!(info.pod_uid.as_deref(), Some(UID));
    }

    #[test]
    fn crio_and_conmon() {
        let base = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"
        );
        let info = CgroupInfo::from_path(&format!("{base}/crio-{CID}.scope"));
        assert_eq!(
            (info.runtime, info.container_id.as_deref()),
            (Some(Runtime::CriO), Some(CID))
        );
        let info = CgroupInfo::from_path(&format!("{base}/crio-conmon-{CID}.scope"));
        assert_eq!(
            (info.runtime, info.container_id),
            (Some(Runtime::CriO), None)
        );
        assert_eq!(info.pod_uid.as_deref(), Some(UID));
    }

    #[test]
    fn non_kubernetes_paths() {
        for path in [
            "/",
            "/system.slice/sshd.service",
            "/user.slice/user-0.slice/session-1.scope",
            "kubepods",
        ] {
            let info = CgroupInfo::from_path(path);
            assert_eq!(info.pod_uid, None, "{path}");
            assert_eq!(info.container_id, None, "{path}");
            assert_eq!(info.qos, None, "{path}");
        }
        assert_eq!(CgroupInfo::from_path("kubepods").path, "/kubepods");
        // A pod-looking name outside kubepods is not a pod.
        assert_eq!(
            CgroupInfo::from_path(&format!("/system.slice/x-pod{UID_}.slice")).pod_uid,
            None
        );
        assert_eq!(
            CgroupInfo::from_path(&format!("/other/pod{UID}/{CID}")).pod_uid,
            None
        );
        // Plain docker container: the scope says it, but there is no pod.
        let info = CgroupInfo::from_path(&format!("/system.slice/docker-{CID}.scope"));
        assert_eq!((info.pod_uid, info.runtime), (None, Some(Runtime::Docker)));
    }

    /// Creates `rel` (and parents) under `root`, returning every directory created, deepest first.
    fn make_tree(root: &Path, rel: &str) -> std::io::Result<Vec<PathBuf>> {
        let mut created = Vec::new();
        let mut dir = root.to_path_buf();
        for component in rel.split('/').filter(|c| !c.is_empty()) {
            dir.push(component);
            if !dir.exists() {
                std::fs::create_dir(&dir)?;
                created.push(dir.clone());
            }
        }
        created.reverse();
        Ok(created)
    }

    struct Cleanup(Vec<PathBuf>);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            for dir in &self.0 {
                if let Err(e) = std::fs::remove_dir(dir) {
                    eprintln!("could not remove {}: {e}", dir.display());
                }
            }
        }
    }

    fn ino(path: &Path) -> std::io::Result<u64> {
        Ok(std::fs::metadata(path)?.ino())
    }

    #[test]
    fn resolves_real_cgroup_directories() -> TestResult {
        let mounts = HostMounts::detect()?;
        let root = mounts
            .cgroup2
            .ok_or("no cgroup2 mount in /proc/self/mountinfo")?;
        let tag = format!("{:08x}", std::process::id());
        let uid = format!("{tag}-1111-2222-3333-444455556666");
        let cid = format!("{tag}{}", "ab".repeat(28));
        let slice = format!("podtaptest{tag}-kubepods.slice");
        let pod = format!(
            "{slice}/podtaptest{tag}-kubepods-burstable-pod{}.slice",
            uid.replace('-', "_")
        );
        let container = format!("{pod}/cri-containerd-{cid}.scope");
        let created = make_tree(&root, &container)
            .map_err(|e| format!("creating cgroup directories under {}: {e}", root.display()))?;
        let _cleanup = Cleanup(created);

        let resolver = CgroupResolver::new(&root, 64)?.with_rescan_interval(Duration::ZERO);
        let info = resolver
            .resolve(ino(&root.join(&container))?)
            .ok_or("container cgroup not resolved")?;
        assert_eq!(info.path, format!("/{container}"));
        assert_eq!(info.pod_uid.as_deref(), Some(uid.as_str()));
        assert_eq!(info.container_id.as_deref(), Some(cid.as_str()));
        assert_eq!(info.runtime, Some(Runtime::Containerd));
        assert_eq!(info.qos, Some(QosClass::Burstable));

        let pod_info = resolver
            .resolve(ino(&root.join(&pod))?)
            .ok_or("pod cgroup not resolved")?;
        assert_eq!(pod_info.pod_uid.as_deref(), Some(uid.as_str()));
        assert_eq!(pod_info.container_id, None);
        assert_eq!(
            resolver.walks(),
            0,
            "as root on a cgroup v2 mount, ids resolve through kernfs file handles, without a walk"
        );
        let gone = resolver.resolve(u64::MAX - 7);
        assert!(gone.is_none());
        assert_eq!(
            resolver.walks(),
            0,
            "an id the kernel does not know is not walked for"
        );
        Ok(())
    }

    #[test]
    fn unknown_ids_are_rate_limited_and_cached() -> TestResult {
        let root = std::env::temp_dir().join(format!("podtap-cgroup-rl-{}", std::process::id()));
        std::fs::create_dir_all(&root)?;
        let resolver = CgroupResolver::new(&root, 8)?
            .with_rescan_interval(Duration::from_secs(3600))
            .with_negative_ttl(Duration::from_secs(3600));
        assert!(resolver.resolve(u64::MAX).is_none());
        assert_eq!(resolver.walks(), 1);
        for _ in 0..1000 {
            assert!(resolver.resolve(u64::MAX).is_none());
            assert!(resolver.resolve(u64::MAX - 1).is_none());
        }
        assert_eq!(
            resolver.walks(),
            1,
            "misses within the interval must not walk"
        );
        // The mount root itself is always known after a walk that happened when it was asked for.
        let fresh = CgroupResolver::new(&root, 8)?;
        assert_eq!(
            fresh
                .resolve(ino(&root)?)
                .map(|i| i.path.clone())
                .as_deref(),
            Some("/")
        );
        std::fs::remove_dir(&root)?;
        Ok(())
    }

    #[test]
    fn cache_is_bounded_and_prunable() -> TestResult {
        let root = std::env::temp_dir().join(format!("podtap-cgroup-lru-{}", std::process::id()));
        let mut dirs = Vec::new();
        for n in 0..6 {
            let rel = format!("kubepods/besteffort/pod{n:08x}-1111-2222-3333-444455556666");
            std::fs::create_dir_all(root.join(&rel))?;
            dirs.push(root.join(rel));
        }
        let resolver = CgroupResolver::new(&root, 3)?.with_rescan_interval(Duration::ZERO);
        for dir in &dirs {
            assert!(resolver.resolve(ino(dir)?).is_some());
            assert!(resolver.len() <= 3);
        }
        std::fs::remove_dir_all(&root)?;
        assert_eq!(resolver.len(), 3);
        assert_eq!(resolver.prune(), 3);
        assert!(resolver.is_empty());
        Ok(())
    }

    #[test]
    fn bad_construction() {
        assert!(matches!(
            CgroupResolver::new("/nonexistent/podtap", 1),
            Err(CgroupError::Root { .. })
        ));
        assert!(matches!(
            CgroupResolver::new("/", 0),
            Err(CgroupError::ZeroCapacity)
        ));
    }
}

//! Keeps the kernel's capture-filter map (`FILTER_CGROUPS`) in step with the pods of this node.
//!
//! In: the capture filter, the pods of this node (from the metadata store, with a generation that moves
//! when they change) and the cgroup v2 mount. Out: inserts and removes of pod cgroup ids (the inode of
//! the pod's `kubepods-...-pod<uid>.slice` or `pod<uid>` directory) in the kernel map, which lists the
//! pods captured (include mode) or the pods not captured (exclude mode). The kernel checks a socket's
//! cgroup ancestors, so a pod's containers, including ones that start later, need no entry of their own.
//!
//! A pod whose cgroup directory does not exist yet (the API often knows a pod before the runtime has
//! made its cgroup) is looked for again about every second, less often once it has been missing for a
//! minute (a finished pod has no cgroup at all).

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use podtap_common::FILTER_MAX_LEVEL;

use crate::k8s::{
    cgroup::{walk_dirs, CgroupInfo},
    filter::CaptureFilter,
    meta::PodMeta,
};

/// How soon a wanted pod without a cgroup directory is looked for again.
const RETRY_SOON: Duration = Duration::from_secs(1);
/// The same, once it has been missing for `MISSING_LONG`.
const RETRY_LATE: Duration = Duration::from_secs(10);
const MISSING_LONG: Duration = Duration::from_secs(60);

/// The kernel map, as the reconciler sees it.
pub trait FilterMap {
    /// Lists a cgroup.
    ///
    /// # Errors
    /// The map is full, or the kernel refused.
    fn insert(&mut self, cgroup_id: u64) -> Result<(), FilterMapError>;
    /// Unlists a cgroup (not listed: no error).
    ///
    /// # Errors
    /// The kernel refused.
    fn remove(&mut self, cgroup_id: u64) -> Result<(), FilterMapError>;
}

#[derive(Debug, thiserror::Error)]
pub enum FilterMapError {
    #[error("the capture filter map is full")]
    Full,
    #[error("updating the capture filter map: {0}")]
    Other(String),
}

/// What the reconciler did, for the summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterSyncStats {
    /// Pod cgroups in the kernel map now.
    pub listed: u64,
    /// Pods that should be listed whose cgroup directory was not found at the last sync.
    pub pods_without_cgroup: u64,
    /// Inserts refused because the map was full (those pods are not listed).
    pub map_full: u64,
    /// Other failed map updates.
    pub map_errors: u64,
    /// Pod directories deeper than the kernel looks (`FILTER_MAX_LEVEL`); not listed.
    pub too_deep: u64,
    /// Walks of the cgroup tree.
    pub walks: u64,
}

/// A pod's cgroup directory.
#[derive(Clone, Debug)]
struct PodDir {
    path: PathBuf,
    id: u64,
}

/// The reconciler; `app::run_live` owns one when a filter is given.
#[derive(Debug)]
pub struct FilterSync {
    root: PathBuf,
    filter: CaptureFilter,
    /// What the kernel map holds: cgroup id -> pod uid.
    listed: HashMap<u64, String>,
    /// Pod directories found by walks, by pod uid.
    dirs: HashMap<String, PodDir>,
    /// Wanted pods without a directory, since when.
    missing: HashMap<String, Instant>,
    generation: Option<u64>,
    last_sync: Option<Instant>,
    stats: FilterSyncStats,
}

impl FilterSync {
    #[must_use]
    pub fn new(cgroup_root: &Path, filter: CaptureFilter) -> Self {
        Self {
            root: cgroup_root.to_path_buf(),
            filter,
            listed: HashMap::new(),
            dirs: HashMap::new(),
            missing: HashMap::new(),
            generation: None,
            last_sync: None,
            stats: FilterSyncStats::default(),
        }
    }

    /// Whether `sync` has work: the pods changed, or a wanted pod's cgroup may have appeared.
    #[must_use]
    pub fn due(&self, generation: u64, now: Instant) -> bool {
        if self.generation != Some(generation) {
            return true;
        }
        if self.missing.is_empty() {
            return false;
        }
        let retry = if self
            .missing
            .values()
            .any(|since| now.saturating_duration_since(*since) < MISSING_LONG)
        {
            RETRY_SOON
        } else {
            RETRY_LATE
        };
        self.last_sync
            .is_none_or(|last| now.saturating_duration_since(last) >= retry)
    }

    /// Brings the kernel map to the pods of `pods` the filter lists.
    pub fn sync(
        &mut self,
        generation: u64,
        pods: &[Arc<PodMeta>],
        map: &mut dyn FilterMap,
        now: Instant,
    ) {
        self.generation = Some(generation);
        self.last_sync = Some(now);
        let wanted: HashSet<&str> = pods
            .iter()
            .filter(|pod| !pod.uid.is_empty() && self.filter.lists(pod))
            .map(|pod| pod.uid.as_str())
            .collect();

        // Directories known from earlier walks must still be the same directory.
        self.dirs.retain(|uid, dir| {
            wanted.contains(uid.as_str())
                && std::fs::metadata(&dir.path).is_ok_and(|m| m.ino() == dir.id)
        });
        if wanted.iter().any(|uid| !self.dirs.contains_key(*uid)) {
            self.walk(&wanted);
        }

        let mut want_ids: HashMap<u64, &str> = HashMap::new();
        for uid in &wanted {
            match self.dirs.get(*uid) {
                Some(dir) => {
                    self.missing.remove(*uid);
                    want_ids.insert(dir.id, uid);
                }
                None => {
                    self.missing.entry((*uid).to_owned()).or_insert(now);
                }
            }
        }
        self.missing.retain(|uid, _| wanted.contains(uid.as_str()));

        let stale: Vec<u64> = self
            .listed
            .keys()
            .filter(|id| !want_ids.contains_key(id))
            .copied()
            .collect();
        for id in stale {
            match map.remove(id) {
                Ok(()) => {
                    self.listed.remove(&id);
                }
                Err(error) => {
                    log::warn!("capture filter: unlisting cgroup {id}: {error}");
                    self.stats.map_errors += 1;
                }
            }
        }
        for (id, uid) in want_ids {
            if self.listed.contains_key(&id) {
                continue;
            }
            match map.insert(id) {
                Ok(()) => {
                    self.listed.insert(id, uid.to_owned());
                }
                Err(FilterMapError::Full) => self.stats.map_full += 1,
                Err(error) => {
                    log::warn!("capture filter: listing the cgroup of pod {uid}: {error}");
                    self.stats.map_errors += 1;
                }
            }
        }
        self.stats.listed = self.listed.len() as u64;
        self.stats.pods_without_cgroup = self.missing.len() as u64;
    }

    /// Finds the directories of the wanted pods (not descending into pods).
    fn walk(&mut self, wanted: &HashSet<&str>) {
        self.stats.walks += 1;
        let mut too_deep = 0;
        let dirs = &mut self.dirs;
        walk_dirs(&self.root, |dir| {
            let info = CgroupInfo::from_path(dir.rel);
            let Some(uid) = info.pod_uid.filter(|_| info.container_id.is_none()) else {
                return true;
            };
            if dir.level > FILTER_MAX_LEVEL as usize {
                too_deep += 1;
            } else if wanted.contains(uid.as_str()) {
                dirs.insert(
                    uid,
                    PodDir {
                        path: dir.path.to_path_buf(),
                        id: dir.ino,
                    },
                );
            }
            // Not into pods: their containers are covered by the pod's cgroup.
            false
        });
        self.stats.too_deep = too_deep;
    }

    #[must_use]
    pub fn stats(&self) -> FilterSyncStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct FakeMap {
        ids: HashSet<u64>,
        cap: usize,
    }

    impl FilterMap for FakeMap {
        fn insert(&mut self, id: u64) -> Result<(), FilterMapError> {
            if self.ids.len() >= self.cap && !self.ids.contains(&id) {
                return Err(FilterMapError::Full);
            }
            self.ids.insert(id);
            Ok(())
        }
        fn remove(&mut self, id: u64) -> Result<(), FilterMapError> {
            self.ids.remove(&id);
            Ok(())
        }
    }

    fn pod(uid: &str, namespace: &str) -> Arc<PodMeta> {
        Arc::new(PodMeta {
            uid: uid.into(),
            name: format!("pod-{}", &uid[..8]),
            namespace: namespace.into(),
            ..PodMeta::default()
        })
    }

    fn ino(path: &Path) -> u64 {
        std::fs::metadata(path).expect("stat").ino()
    }

    struct TempTree(PathBuf);
    impl Drop for TempTree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const UID_A: &str = "0000000a-1111-2222-3333-444455556666";
    const UID_B: &str = "0000000b-1111-2222-3333-444455556666";
    const UID_C: &str = "0000000c-1111-2222-3333-444455556666";

    #[test]
    fn include_exclude_appear_disappear() {
        let root = std::env::temp_dir().join(format!("podtap-filter-sync-{}", std::process::id()));
        let _tree = TempTree(root.clone());
        // systemd driver for a, cgroupfs for b, c's directory comes later.
        let dir_a = root.join(format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
            UID_A.replace('-', "_")
        ));
        let dir_b = root.join(format!("kubepods/besteffort/pod{UID_B}"));
        let dir_c = root.join(format!("kubepods/pod{UID_C}"));
        std::fs::create_dir_all(dir_a.join(format!("cri-containerd-{}.scope", "ab".repeat(32))))
            .expect("mkdir");
        std::fs::create_dir_all(dir_b.join("cd".repeat(32))).expect("mkdir");

        let filter = CaptureFilter::new(&["a".into()], &[], None, None).expect("valid filter");
        let mut sync = FilterSync::new(&root, filter);
        let mut map = FakeMap {
            cap: 16,
            ..FakeMap::default()
        };
        let t0 = Instant::now();
        let mut pods = vec![pod(UID_A, "a"), pod(UID_B, "b"), pod(UID_C, "a")];
        assert!(sync.due(1, t0));
        sync.sync(1, &pods, &mut map, t0);
        assert_eq!(
            map.ids,
            HashSet::from([ino(&dir_a)]),
            "only namespace a's pod"
        );
        assert_eq!(
            sync.stats().pods_without_cgroup,
            1,
            "c has no directory yet"
        );
        assert!(!sync.due(1, t0), "nothing new at once");
        assert!(sync.due(1, t0 + RETRY_SOON), "c is looked for again");

        // c's cgroup appears.
        std::fs::create_dir_all(&dir_c).expect("mkdir");
        sync.sync(1, &pods, &mut map, t0 + RETRY_SOON);
        assert_eq!(map.ids, HashSet::from([ino(&dir_a), ino(&dir_c)]));
        assert_eq!(sync.stats().pods_without_cgroup, 0);
        assert!(
            !sync.due(1, t0 + RETRY_SOON * 5),
            "nothing missing: no retries"
        );

        // a goes away from the API.
        pods.remove(0);
        assert!(sync.due(2, t0));
        sync.sync(2, &pods, &mut map, t0);
        assert_eq!(map.ids, HashSet::from([ino(&dir_c)]));
        assert_eq!(sync.stats().listed, 1);

        // Exclude mode lists the pods left out.
        let filter = CaptureFilter::new(&[], &["b".into()], None, None).expect("valid");
        let mut sync = FilterSync::new(&root, filter);
        let mut map = FakeMap {
            cap: 16,
            ..FakeMap::default()
        };
        sync.sync(1, &pods, &mut map, t0);
        assert_eq!(map.ids, HashSet::from([ino(&dir_b)]));
        let walks = sync.stats().walks;
        sync.sync(2, &pods, &mut map, t0);
        assert_eq!(sync.stats().walks, walks, "known directories need no walk");
    }

    #[test]
    fn full_map_is_counted_and_retried() {
        let root = std::env::temp_dir().join(format!("podtap-filter-full-{}", std::process::id()));
        let _tree = TempTree(root.clone());
        let mut pods = Vec::new();
        for n in 0..5u32 {
            let uid = format!("{n:08x}-1111-2222-3333-444455556666");
            std::fs::create_dir_all(root.join(format!("kubepods/pod{uid}"))).expect("mkdir");
            pods.push(pod(&uid, "a"));
        }
        let filter = CaptureFilter::new(&["a".into()], &[], None, None).expect("valid");
        let mut sync = FilterSync::new(&root, filter);
        let mut map = FakeMap {
            cap: 3,
            ..FakeMap::default()
        };
        let t0 = Instant::now();
        sync.sync(1, &pods, &mut map, t0);
        assert_eq!(map.ids.len(), 3);
        assert_eq!(sync.stats().map_full, 2);
        assert_eq!(sync.stats().listed, 3);
        // Room again: the next sync lists the rest.
        pods.truncate(2);
        sync.sync(2, &pods, &mut map, t0);
        assert_eq!(sync.stats().listed, 2);
        assert!(map.ids.len() == 2);
    }

    #[test]
    fn recreated_directory_is_relisted() {
        let root = std::env::temp_dir().join(format!("podtap-filter-re-{}", std::process::id()));
        let _tree = TempTree(root.clone());
        let dir = root.join(format!("kubepods/burstable/pod{UID_A}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let filter = CaptureFilter::new(&["a".into()], &[], None, None).expect("valid");
        let mut sync = FilterSync::new(&root, filter);
        let mut map = FakeMap {
            cap: 4,
            ..FakeMap::default()
        };
        let pods = vec![pod(UID_A, "a")];
        let t0 = Instant::now();
        sync.sync(1, &pods, &mut map, t0);
        let first = ino(&dir);
        assert_eq!(map.ids, HashSet::from([first]));
        std::fs::remove_dir(&dir).expect("rmdir");
        // Keep the old inode from being reused at once.
        let _spacer = std::fs::create_dir_all(root.join("spacer"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        sync.sync(2, &pods, &mut map, t0);
        assert_eq!(map.ids, HashSet::from([ino(&dir)]));
    }

    /// The kernel side, as root: with each mode loaded, a UDP datagram sent from a container of a
    /// listed pod and one from a container of a pod not listed; which ones the programs report.
    #[test]
    fn kernel_filters_by_pod_cgroup() {
        use crate::capture::{
            ebpf::{EbpfCapture, EbpfConfig},
            Event,
        };
        use crate::k8s::filter::FilterMode;

        assert!(
            // SAFETY: geteuid(2) cannot fail.
            unsafe { libc::geteuid() } == 0,
            "this test loads eBPF programs: run it as root"
        );
        let root = crate::host::mounts::HostMounts::detect()
            .expect("mountinfo")
            .cgroup2
            .expect("a cgroup v2 mount");
        let tag = format!("{:08x}", std::process::id());
        let top = root.join(format!("podtapfilter{tag}-kubepods"));
        let _tree = CgroupTree(top.clone());
        let uid_in = format!("{tag}-1111-2222-3333-444455556666");
        let uid_out = format!("{tag}-1111-2222-3333-777788889999");
        let container = |uid: &str, c: &str| top.join(format!("pod{uid}")).join(c.repeat(64));
        let (c_in, c_out) = (container(&uid_in, "a"), container(&uid_out, "b"));
        for dir in [&c_in, &c_out] {
            std::fs::create_dir_all(dir).expect("creating test cgroups");
        }
        let pods = vec![pod(&uid_in, "in"), pod(&uid_out, "out")];
        // Sends one datagram to 127.0.0.1:port from a shell born in `cgroup`.
        let send = |cgroup: &Path, port: u16| {
            let script = format!(
                "echo $$ > {}/cgroup.procs && echo podtap-filter-test > /dev/udp/127.0.0.1/{port}",
                cgroup.display()
            );
            let status = std::process::Command::new("bash")
                .args(["-c", &script])
                .status()
                .expect("bash");
            assert!(status.success(), "sending from {}", cgroup.display());
        };
        for (mode, flags, want_in, want_out) in [
            (FilterMode::Off, (vec![], vec![]), true, true),
            (
                FilterMode::Include,
                (vec!["in".to_owned()], vec![]),
                true,
                false,
            ),
            (
                FilterMode::Exclude,
                (vec![], vec!["out".to_owned()]),
                true,
                false,
            ),
        ] {
            let filter = CaptureFilter::new(&flags.0, &flags.1, None, None).expect("filter");
            assert_eq!(filter.mode(), mode);
            let mut capture = EbpfCapture::start(&EbpfConfig {
                cgroup_root: root.clone(),
                max_payload: 256,
                ring_buffer_bytes: 1 << 20,
                tls: false,
                filter: mode,
            })
            .unwrap_or_else(|e| panic!("loading with {mode:?}: {e}"));
            if mode != FilterMode::Off {
                let mut sync = FilterSync::new(&root, filter);
                sync.sync(1, &pods, &mut capture, Instant::now());
                assert_eq!(sync.stats().listed, 1, "{mode:?}: {:?}", sync.stats());
            }
            // Ports of our own, so that nothing else on the node is mistaken for the test's.
            let port_in = 40_000 + (std::process::id() % 10_000) as u16;
            let port_out = port_in + 10_000;
            send(&c_in, port_in);
            send(&c_out, port_out);
            let (mut seen_in, mut seen_out) = (None, false);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(2) {
                capture
                    .poll(Duration::from_millis(50), |event| {
                        if let Event::Packet(p) = event {
                            if p.dst.port() == port_in && p.payload.starts_with(b"podtap-filter") {
                                seen_in = Some(p.cgroup_id);
                            }
                            if p.dst.port() == port_out && p.payload.starts_with(b"podtap-filter") {
                                seen_out = true;
                            }
                        }
                    })
                    .expect("poll");
            }
            assert_eq!(
                seen_in.is_some(),
                want_in,
                "{mode:?}: listed pod's datagram"
            );
            if let Some(id) = seen_in {
                assert_eq!(id, ino(&c_in), "{mode:?}: the container's cgroup");
            }
            assert_eq!(seen_out, want_out, "{mode:?}: other pod's datagram");
            let filtered = capture.counters().filtered;
            if mode == FilterMode::Off {
                assert_eq!(filtered, 0);
            } else {
                assert!(filtered >= 1, "{mode:?}: filtered {filtered}");
            }
        }
    }

    /// Removes a cgroup tree deepest first (its processes have exited).
    struct CgroupTree(PathBuf);
    impl Drop for CgroupTree {
        fn drop(&mut self) {
            fn remove(dir: &Path) {
                if let Ok(entries) = std::fs::read_dir(dir) {
                    for entry in entries.flatten() {
                        if entry.file_type().is_ok_and(|t| t.is_dir()) {
                            remove(&entry.path());
                        }
                    }
                }
                let _ = std::fs::remove_dir(dir);
            }
            remove(&self.0);
        }
    }
}

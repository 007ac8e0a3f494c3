//! Mount table: where cgroup v2, tracefs and bpffs live on this node.
//!
//! In: the text of `/proc/self/mountinfo` (or the real file). Out: parsed [`MountEntry`] rows and a
//! [`HostMounts`] summary with the cgroup2, tracefs and bpffs mount points (each `None` when not mounted).
//! [`ensure_mounted`] mounts tracefs at `/sys/kernel/tracing` and bpffs at `/sys/fs/bpf` when they are
//! missing and reports what it did.

use std::path::{Path, PathBuf};

/// Path of the mount table of the current process.
pub const MOUNTINFO_PATH: &str = "/proc/self/mountinfo";
/// Where podtap mounts tracefs when none is mounted.
pub const DEFAULT_TRACEFS: &str = "/sys/kernel/tracing";
/// Where podtap mounts bpffs when none is mounted.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf";

/// Errors reading the mount table or mounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount table could not be read.
    #[error("reading mount table {path}")]
    Read {
        /// File that was read.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line of the mount table does not have the documented layout.
    #[error("mountinfo line {line}: {reason}: {text:?}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What was wrong.
        reason: &'static str,
        /// The line itself.
        text: String,
    },
    /// `mount(2)` failed.
    #[error("mounting {fs_type} at {target}")]
    Mount {
        /// Filesystem type that was mounted.
        fs_type: &'static str,
        /// Mount point.
        target: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// One row of `/proc/<pid>/mountinfo` (see proc(5)); octal escapes (`\040`) are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Unique id of the mount.
    pub mount_id: u32,
    /// Id of the parent mount.
    pub parent_id: u32,
    /// Path inside the filesystem that forms the root of this mount (`/` for a whole filesystem).
    pub root: PathBuf,
    /// Mount point relative to the process's root.
    pub mount_point: PathBuf,
    /// Filesystem type, e.g. `cgroup2`, `tracefs`, `bpf`.
    pub fs_type: String,
    /// Mount source, e.g. `cgroup2`, `nodev`.
    pub source: String,
}

/// Parses the text of a mountinfo file.
///
/// # Errors
/// [`MountError::Parse`] when a non-empty line does not have the documented fields.
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountEntry>, MountError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| parse_line(index + 1, line))
        .collect()
}

fn parse_line(line_no: usize, line: &str) -> Result<MountEntry, MountError> {
    let err = |reason| MountError::Parse {
        line: line_no,
        reason,
        text: line.to_owned(),
    };
    let (front, back) = line
        .split_once(" - ")
        .ok_or_else(|| err("no ' - ' separator"))?;
    let mut front = front.split(' ');
    let mount_id = front
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| err("bad mount id"))?;
    let parent_id = front
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| err("bad parent id"))?;
    let _major_minor = front.next().ok_or_else(|| err("missing major:minor"))?;
    let root = front.next().ok_or_else(|| err("missing root"))?;
    let mount_point = front.next().ok_or_else(|| err("missing mount point"))?;
    let mut back = back.split(' ');
    let fs_type = back
        .next()
        .filter(|f| !f.is_empty())
        .ok_or_else(|| err("missing fs type"))?;
    let source = back.next().unwrap_or_default();
    Ok(MountEntry {
        mount_id,
        parent_id,
        root: PathBuf::from(unescape(root)),
        mount_point: PathBuf::from(unescape(mount_point)),
        fs_type: unescape(fs_type),
        source: unescape(source),
    })
}

/// Decodes the `\ooo` octal escapes the kernel uses for space, tab, newline and backslash.
fn unescape(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_owned();
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads and parses a mountinfo file, e.g. [`MOUNTINFO_PATH`].
///
/// # Errors
/// [`MountError::Read`] or [`MountError::Parse`].
pub fn read_mountinfo(path: &Path) -> Result<Vec<MountEntry>, MountError> {
    let text = std::fs::read_to_string(path).map_err(|source| MountError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_mountinfo(&text)
}

/// The mounts podtap cares about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostMounts {
    /// The cgroup v2 (unified) hierarchy, e.g. `/sys/fs/cgroup` or `/sys/fs/cgroup/unified`.
    pub cgroup2: Option<PathBuf>,
    /// tracefs, e.g. `/sys/kernel/tracing` or `/sys/kernel/debug/tracing`.
    pub tracefs: Option<PathBuf>,
    /// The BPF filesystem, usually `/sys/fs/bpf`.
    pub bpffs: Option<PathBuf>,
}

impl HostMounts {
    /// Picks the mounts out of a parsed mount table. When a filesystem is mounted more than once, the
    /// conventional location wins, then a mount of the whole filesystem (root `/`), then the first one.
    #[must_use]
    pub fn from_entries(entries: &[MountEntry]) -> Self {
        Self {
            cgroup2: pick(
                entries,
                &["cgroup2"],
                &["/sys/fs/cgroup", "/sys/fs/cgroup/unified"],
            ),
            tracefs: pick(
                entries,
                &["tracefs"],
                &[DEFAULT_TRACEFS, "/sys/kernel/debug/tracing"],
            ),
            bpffs: pick(entries, &["bpf"], &[DEFAULT_BPFFS]),
        }
    }

    /// Reads [`MOUNTINFO_PATH`] and picks the mounts.
    ///
    /// # Errors
    /// See [`read_mountinfo`].
    pub fn detect() -> Result<Self, MountError> {
        Ok(Self::from_entries(&read_mountinfo(Path::new(
            MOUNTINFO_PATH,
        ))?))
    }
}

fn pick(entries: &[MountEntry], fs_types: &[&str], preferred: &[&str]) -> Option<PathBuf> {
    let candidates: Vec<&MountEntry> = entries
        .iter()
        .filter(|e| fs_types.contains(&e.fs_type.as_str()))
        .collect();
    preferred
        .iter()
        .find_map(|want| candidates.iter().find(|e| e.mount_point == Path::new(want)))
        .or_else(|| candidates.iter().find(|e| e.root == Path::new("/")))
        .or_else(|| candidates.first())
        .map(|e| e.mount_point.clone())
}

/// What [`ensure_mounted`] did for one filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountAction {
    /// It was already mounted here; nothing was done.
    AlreadyMounted(PathBuf),
    /// podtap mounted it here.
    Mounted(PathBuf),
}

impl MountAction {
    /// Where the filesystem is mounted now.
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            Self::AlreadyMounted(p) | Self::Mounted(p) => p,
        }
    }
}

impl std::fmt::Display for MountAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AlreadyMounted(p) => write!(f, "already mounted at {}", p.display()),
            Self::Mounted(p) => write!(f, "mounted at {}", p.display()),
        }
    }
}

/// Result of [`ensure_mounted`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsureReport {
    /// tracefs.
    pub tracefs: MountAction,
    /// bpffs.
    pub bpffs: MountAction,
}

/// A mount podtap would perform: `mount -t <fs_type> <source> <target>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRequest {
    /// Filesystem type (`tracefs`, `bpf`).
    pub fs_type: &'static str,
    /// Mount point.
    pub target: PathBuf,
}

/// The mounts that are missing from `mounts` (pure; see [`ensure_mounted`]).
#[must_use]
pub fn plan_mounts(mounts: &HostMounts) -> Vec<MountRequest> {
    let mut plan = Vec::new();
    if mounts.tracefs.is_none() {
        plan.push(MountRequest {
            fs_type: "tracefs",
            target: PathBuf::from(DEFAULT_TRACEFS),
        });
    }
    if mounts.bpffs.is_none() {
        plan.push(MountRequest {
            fs_type: "bpf",
            target: PathBuf::from(DEFAULT_BPFFS),
        });
    }
    plan
}

/// Mounts tracefs at [`DEFAULT_TRACEFS`] and bpffs at [`DEFAULT_BPFFS`] when they are not mounted
/// anywhere, and says what it did. Needs `CAP_SYS_ADMIN`.
///
/// # Errors
/// [`MountError`] when the mount table cannot be read or a mount fails.
pub fn ensure_mounted() -> Result<EnsureReport, MountError> {
    let mounts = HostMounts::detect()?;
    for request in plan_mounts(&mounts) {
        rustix::mount::mount(
            request.fs_type,
            &request.target,
            request.fs_type,
            rustix::mount::MountFlags::NOSUID
                | rustix::mount::MountFlags::NODEV
                | rustix::mount::MountFlags::NOEXEC,
            None,
        )
        .map_err(|e| MountError::Mount {
            fs_type: request.fs_type,
            target: request.target.clone(),
            source: e.into(),
        })?;
    }
    let action = |found: Option<PathBuf>, default: &str| match found {
        Some(p) => MountAction::AlreadyMounted(p),
        None => MountAction::Mounted(PathBuf::from(default)),
    };
    Ok(EnsureReport {
        tracefs: action(mounts.tracefs, DEFAULT_TRACEFS),
        bpffs: action(mounts.bpffs, DEFAULT_BPFFS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
42 23 0:13 / /sys/kernel/tracing rw,relatime - tracefs nodev rw
43 23 0:39 / /sys/fs/bpf rw,relatime - bpf bpf rw
";

    const PURE_V2: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:8 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
27 25 0:25 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:9 - bpf bpf rw,mode=700
40 25 0:12 / /sys/kernel/debug rw,nosuid,nodev,noexec,relatime shared:15 - debugfs debugfs rw
41 40 0:13 / /sys/kernel/debug/tracing rw,nosuid,nodev,noexec,relatime shared:16 - tracefs tracefs rw
";

    #[test]
    fn hybrid_host() -> Result<(), MountError> {
        let entries = parse_mountinfo(HYBRID)?;
        assert_eq!(entries.len(), 9);
        let m = HostMounts::from_entries(&entries);
        assert_eq!(
            m.cgroup2.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(m.tracefs.as_deref(), Some(Path::new("/sys/kernel/tracing")));
        assert_eq!(m.bpffs.as_deref(), Some(Path::new("/sys/fs/bpf")));
        assert!(plan_mounts(&m).is_empty());
        Ok(())
    }

    #[test]
    fn pure_v2_with_optional_fields() -> Result<(), MountError> {
        let m = HostMounts::from_entries(&parse_mountinfo(PURE_V2)?);
        assert_eq!(m.cgroup2.as_deref(), Some(Path::new("/sys/fs/cgroup")));
        assert_eq!(
            m.tracefs.as_deref(),
            Some(Path::new("/sys/kernel/debug/tracing"))
        );
        assert_eq!(m.bpffs.as_deref(), Some(Path::new("/sys/fs/bpf")));
        Ok(())
    }

    #[test]
    fn missing_mounts_are_planned() -> Result<(), MountError> {
        let text = "26 25 0:24 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let m = HostMounts::from_entries(&parse_mountinfo(text)?);
        assert_eq!(m.tracefs, None);
        assert_eq!(m.bpffs, None);
        let plan = plan_mounts(&m);
        assert_eq!(plan.len(), 2);
        assert_eq!(
            plan[0],
            MountRequest {
                fs_type: "tracefs",
                target: PathBuf::from(DEFAULT_TRACEFS)
            }
        );
        assert_eq!(
            plan[1],
            MountRequest {
                fs_type: "bpf",
                target: PathBuf::from(DEFAULT_BPFFS)
            }
        );
        Ok(())
    }

    #[test]
    fn container_view_prefers_whole_filesystem() -> Result<(), MountError> {
        let text = "\
100 90 0:24 /kubepods.slice/x /sys/fs/cgroup ro - cgroup2 cgroup2 rw
101 90 0:24 / /host/sys/fs/cgroup ro - cgroup2 cgroup2 rw
";
        let m = HostMounts::from_entries(&parse_mountinfo(text)?);
        // The conventional path wins even though it only shows a subtree...
        assert_eq!(m.cgroup2.as_deref(), Some(Path::new("/sys/fs/cgroup")));
        let text = "\
100 90 0:24 /kubepods.slice/x /run/cg ro - cgroup2 cgroup2 rw
101 90 0:24 / /host/cg ro - cgroup2 cgroup2 rw
";
        // ...otherwise a mount of the whole hierarchy does.
        let m = HostMounts::from_entries(&parse_mountinfo(text)?);
        assert_eq!(m.cgroup2.as_deref(), Some(Path::new("/host/cg")));
        Ok(())
    }

    #[test]
    fn escapes_are_decoded() -> Result<(), MountError> {
        let text = r"50 27 0:40 / /mnt/with\040space rw - tmpfs tmp\134fs rw";
        let entries = parse_mountinfo(text)?;
        assert_eq!(entries[0].mount_point, Path::new("/mnt/with space"));
        assert_eq!(entries[0].source, "tmp\\fs");
        Ok(())
    }

    #[test]
    fn bad_lines_are_errors() {
        assert!(matches!(
            parse_mountinfo("garbage"),
            Err(MountError::Parse { line: 1, .. })
        ));
        assert!(matches!(
            parse_mountinfo("x 1 0:1 / / rw - ext4 /dev/vda rw"),
            Err(MountError::Parse {
                reason: "bad mount id",
                ..
            })
        ));
    }

    #[test]
    fn real_mount_table_parses() -> Result<(), MountError> {
        let entries = read_mountinfo(Path::new(MOUNTINFO_PATH))?;
        assert!(!entries.is_empty());
        Ok(())
    }
}

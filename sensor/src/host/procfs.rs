//! Per-process facts read from a `/proc` tree that may be the host's, mounted elsewhere.
//!
//! In: a `/proc` root (default `/proc`; in a container e.g. `/host/proc`) and a pid. Out: the process's
//! `comm`, the first argument of its `cmdline` and its cgroup v2 path (the `0::` line of
//! `/proc/<pid>/cgroup`), or a [`ProcError`] saying which file could not be read.

use std::path::{Path, PathBuf};

/// Default `/proc` root.
pub const DEFAULT_PROC_ROOT: &str = "/proc";

/// Errors reading a process's files.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// A file could not be read.
    #[error("reading {path}")]
    Read {
        /// File that was read.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ProcError {
    /// Whether the process (or the file) no longer exists, the usual case for short-lived processes.
    #[must_use]
    pub fn is_gone(&self) -> bool {
        match self {
            Self::Read { source, .. } => {
                source.kind() == std::io::ErrorKind::NotFound
                    || source.raw_os_error() == Some(libc::ESRCH)
            }
        }
    }
}

/// A `/proc` tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcFs {
    root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        Self::new(DEFAULT_PROC_ROOT)
    }
}

impl ProcFs {
    /// A `/proc` tree rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root this reads from.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of `<root>/<pid>/<file>`.
    #[must_use]
    pub fn pid_path(&self, pid: u32, file: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(file)
    }

    fn read(&self, pid: u32, file: &str) -> Result<Vec<u8>, ProcError> {
        let path = self.pid_path(pid, file);
        std::fs::read(&path).map_err(|source| ProcError::Read { path, source })
    }

    /// The process's `comm` (thread name, at most 15 bytes), without the trailing newline.
    ///
    /// # Errors
    /// [`ProcError::Read`].
    pub fn comm(&self, pid: u32) -> Result<String, ProcError> {
        let bytes = self.read(pid, "comm")?;
        Ok(String::from_utf8_lossy(&bytes)
            .trim_end_matches('\n')
            .to_owned())
    }

    /// The first argument of the process's command line; `None` for kernel threads and zombies.
    ///
    /// # Errors
    /// [`ProcError::Read`].
    pub fn cmdline_first(&self, pid: u32) -> Result<Option<String>, ProcError> {
        Ok(first_arg(&self.read(pid, "cmdline")?))
    }

    /// The process's cgroup v2 path (e.g. `/kubepods.slice/.../cri-containerd-<id>.scope`); `None`
    /// when the file has no `0::` line.
    ///
    /// # Errors
    /// [`ProcError::Read`].
    pub fn cgroup_v2_path(&self, pid: u32) -> Result<Option<String>, ProcError> {
        let bytes = self.read(pid, "cgroup")?;
        Ok(parse_cgroup_v2(&String::from_utf8_lossy(&bytes)).map(str::to_owned))
    }
}

/// The first NUL-separated argument of a `cmdline` file.
#[must_use]
pub fn first_arg(cmdline: &[u8]) -> Option<String> {
    let first = cmdline.split(|b| *b == 0).next()?;
    (!first.is_empty()).then(|| String::from_utf8_lossy(first).into_owned())
}

/// The path of the `0::<path>` line of a `/proc/<pid>/cgroup` file.
#[must_use]
pub fn parse_cgroup_v2(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::trim_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_line() {
        let hybrid = "12:pids:/user.slice\n1:name=systemd:/user.slice/session-1.scope\n0::/user.slice/session-1.scope\n";
        assert_eq!(parse_cgroup_v2(hybrid), Some("/user.slice/session-1.scope"));
        assert_eq!(parse_cgroup_v2("0::/\n"), Some("/"));
        assert_eq!(parse_cgroup_v2("5:cpu:/docker/abc\n"), None);
    }

    #[test]
    fn cmdline_first_arg() {
        assert_eq!(
            first_arg(b"/usr/bin/curl\0-s\0http://x\0"),
            Some("/usr/bin/curl".to_owned())
        );
        assert_eq!(
            first_arg(b"nginx: worker process"),
            Some("nginx: worker process".to_owned())
        );
        assert_eq!(first_arg(b""), None);
    }

    #[test]
    fn reads_own_process() -> Result<(), ProcError> {
        let proc = ProcFs::default();
        let pid = std::process::id();
        assert!(!proc.comm(pid)?.is_empty());
        assert!(proc.cmdline_first(pid)?.is_some());
        assert!(proc
            .cgroup_v2_path(pid)?
            .is_some_and(|p| p.starts_with('/')));
        Ok(())
    }

    #[test]
    fn alternate_root_and_gone_process() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("podtap-procfs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("42"))?;
        std::fs::write(dir.join("42/comm"), "curl\n")?;
        std::fs::write(dir.join("42/cgroup"), "0::/kubepods/pod1/abc\n")?;
        std::fs::write(dir.join("42/cmdline"), b"curl\0-v\0")?;
        let proc = ProcFs::new(&dir);
        assert_eq!(proc.comm(42)?, "curl");
        assert_eq!(proc.cmdline_first(42)?.as_deref(), Some("curl"));
        assert_eq!(
            proc.cgroup_v2_path(42)?.as_deref(),
            Some("/kubepods/pod1/abc")
        );
        let gone = proc.comm(43);
        assert!(matches!(&gone, Err(e) if e.is_gone()), "{gone:?}");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}

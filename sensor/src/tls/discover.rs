//! Which files of a process may hold TLS code: the `libssl` shared libraries it maps and its
//! executable (Go, or OpenSSL/BoringSSL linked statically), named so that podtap can open them from its
//! own mount namespace (`/proc/<pid>/root/...`) and identified by device and inode (one hook per file,
//! however many processes or containers map it).

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use crate::host::procfs::ProcFs;

/// A file as the kernel knows it: uprobes attach to an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    pub dev: u64,
    pub inode: u64,
}

/// What kind of file a candidate is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A shared library named `libssl*.so*`.
    SharedLibrary,
    /// The process's executable.
    Executable,
}

/// A file of a process that may hold TLS code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: FileId,
    pub role: Role,
    /// Where podtap opens it (through the process's root, so a container's own files count).
    pub open_path: PathBuf,
    /// The path as the process sees it.
    pub shown_path: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DiscoverError {
    /// The process exited while being looked at (not an error worth a warning).
    #[must_use]
    pub fn is_gone(&self) -> bool {
        match self {
            DiscoverError::Read { source, .. } => {
                matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput
                ) || source.raw_os_error() == Some(libc::ESRCH)
            }
        }
    }
}

/// Every process id in the `/proc` tree.
#[must_use]
pub fn pids(proc: &ProcFs) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(proc.root()) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The candidate files of process `pid`.
///
/// # Errors
/// Its `maps` cannot be read (it exited, or podtap lacks the rights).
pub fn candidates(proc: &ProcFs, pid: u32) -> Result<Vec<Candidate>, DiscoverError> {
    let maps_path = proc.pid_path(pid, "maps");
    let maps = std::fs::read_to_string(&maps_path).map_err(|source| DiscoverError::Read {
        path: maps_path,
        source,
    })?;
    let root = proc.pid_path(pid, "root");
    let mut found: Vec<Candidate> = Vec::new();
    for mapping in maps.lines().filter_map(parse_maps_line) {
        if !is_libssl(mapping.path) || found.iter().any(|c| c.id == mapping.id) {
            continue;
        }
        found.push(Candidate {
            id: mapping.id,
            role: Role::SharedLibrary,
            open_path: under_root(&root, mapping.path),
            shown_path: mapping.path.to_owned(),
        });
    }
    // The executable: `exe` is a link the kernel resolves in the process's own mount namespace.
    let exe = proc.pid_path(pid, "exe");
    if let (Ok(meta), Ok(target)) = (std::fs::metadata(&exe), std::fs::read_link(&exe)) {
        let id = FileId {
            dev: meta.dev(),
            inode: meta.ino(),
        };
        let shown = target.to_string_lossy().into_owned();
        if !shown.ends_with(" (deleted)") && !found.iter().any(|c| c.id == id) {
            found.push(Candidate {
                id,
                role: Role::Executable,
                open_path: under_root(&root, &shown),
                shown_path: shown,
            });
        }
    }
    Ok(found)
}

/// `root` + an absolute path of the process.
fn under_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

fn is_libssl(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with("libssl") && name.contains(".so")
}

struct Mapping<'a> {
    id: FileId,
    path: &'a str,
}

/// One line of `/proc/<pid>/maps`: `start-end perms offset major:minor inode path`. Anonymous and
/// deleted mappings give `None`.
fn parse_maps_line(line: &str) -> Option<Mapping<'_>> {
    let mut fields = line.splitn(6, ' ');
    let _range = fields.next()?;
    let _perms = fields.next()?;
    let _offset = fields.next()?;
    let device = fields.next()?;
    let inode: u64 = fields.next()?.parse().ok()?;
    let path = fields.next()?.trim_start();
    if inode == 0 || !path.starts_with('/') || path.ends_with(" (deleted)") {
        return None;
    }
    let (major, minor) = device.split_once(':')?;
    let major = u32::from_str_radix(major, 16).ok()?;
    let minor = u32::from_str_radix(minor, 16).ok()?;
    Some(Mapping {
        id: FileId {
            dev: libc::makedev(major, minor),
            inode,
        },
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines() {
        let line = "7f1c2a400000-7f1c2a4a0000 r--p 00000000 fd:01 1315 /usr/lib/x86_64-linux-gnu/libssl.so.3";
        let mapping = parse_maps_line(line).expect("a file mapping");
        assert_eq!(mapping.path, "/usr/lib/x86_64-linux-gnu/libssl.so.3");
        assert_eq!(mapping.id.inode, 1315);
        assert_eq!(mapping.id.dev, libc::makedev(0xfd, 1));
        assert!(parse_maps_line("7ffd-7fff rw-p 00000000 00:00 0 [stack]").is_none());
        assert!(parse_maps_line("7f00-7f10 rw-p 00000000 00:00 0").is_none());
        assert!(parse_maps_line("7f00-7f10 r-xp 00000000 fd:01 9 /tmp/x (deleted)").is_none());
        assert!(parse_maps_line("garbage").is_none());
        assert!(parse_maps_line("a b c zz:01 12 /x").is_none());
    }

    #[test]
    fn libssl_names() {
        assert!(is_libssl("/usr/lib/x86_64-linux-gnu/libssl.so.3"));
        assert!(is_libssl("/lib/libssl.so.1.1"));
        assert!(!is_libssl("/usr/lib/libcrypto.so.3"));
        assert!(!is_libssl("/usr/lib/libssh.so.4"));
    }

    #[test]
    fn this_process_has_its_executable_as_a_candidate() {
        let proc = ProcFs::new("/proc");
        let found = candidates(&proc, std::process::id()).expect("own maps");
        let exe = found
            .iter()
            .find(|c| c.role == Role::Executable)
            .expect("the executable");
        let meta = std::fs::metadata(&exe.open_path).expect("reachable through /proc/<pid>/root");
        assert_eq!(meta.ino(), exe.id.inode);
    }
}

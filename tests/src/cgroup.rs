//! Kubelet-named cgroups under the cgroup v2 mount: one directory per pod, one per container, named the
//! way kubelet names them with the systemd or the cgroupfs cgroup driver. Processes are born into a
//! container's cgroup (see `Container::enter_in_child`). Drop kills what is left inside and removes the
//! directories deepest first.

use std::ffi::CString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use crate::util::{random_hex, random_uid, wait_until};

/// Where the cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified`
/// on hybrid ones), read from /proc/self/mountinfo.
pub fn cgroup2_mount() -> Result<PathBuf> {
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() == Some("cgroup2") {
            if let Some(mount_point) = left.split_whitespace().nth(4) {
                return Ok(PathBuf::from(mount_point));
            }
        }
    }
    bail!("no cgroup2 filesystem mounted (see /proc/self/mountinfo); podtap needs cgroup v2")
}

/// How kubelet names the cgroups (its `--cgroup-driver`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupDriver {
    /// `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope`
    Systemd,
    /// `kubepods/burstable/pod<uid>/<id>`
    Cgroupfs,
}

/// A pod's cgroup directory and the containers created in it.
#[derive(Debug)]
pub struct PodCgroup {
    pub uid: String,
    pub driver: CgroupDriver,
    root: PathBuf,
    /// Relative to `root`: the QoS parents (shared with other tests) then the pod directory.
    parents: Vec<PathBuf>,
    pub dir: PathBuf,
    containers: Vec<PathBuf>,
}

/// One container of a pod: its 64-hex id and cgroup directory.
#[derive(Clone, Debug)]
pub struct Container {
    pub id: String,
    pub pod_uid: String,
    pub dir: PathBuf,
}

impl PodCgroup {
    /// Creates the pod directory (and the shared kubepods parents if missing) with a random uid.
    pub fn new(driver: CgroupDriver) -> Result<Self> {
        let root = cgroup2_mount()?;
        let uid = random_uid()?;
        let (parents, pod): (Vec<&str>, String) = match driver {
            CgroupDriver::Systemd => (
                vec!["kubepods.slice", "kubepods.slice/kubepods-burstable.slice"],
                format!(
                    "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
                    uid.replace('-', "_")
                ),
            ),
            CgroupDriver::Cgroupfs => (
                vec!["kubepods", "kubepods/burstable"],
                format!("kubepods/burstable/pod{uid}"),
            ),
        };
        let dir = root.join(&pod);
        let this = Self {
            uid,
            driver,
            parents: parents.into_iter().map(PathBuf::from).collect(),
            root,
            dir: dir.clone(),
            containers: Vec::new(),
        };
        mkdir_all_racy(&dir)?;
        Ok(this)
    }

    /// Creates a container cgroup with a random 64-hex id inside the pod.
    pub fn add_container(&mut self) -> Result<Container> {
        let id = random_hex(32)?;
        let name = match self.driver {
            CgroupDriver::Systemd => format!("cri-containerd-{id}.scope"),
            CgroupDriver::Cgroupfs => id.clone(),
        };
        let dir = self.dir.join(name);
        std::fs::create_dir(&dir).with_context(|| format!("creating cgroup {}", dir.display()))?;
        self.containers.push(dir.clone());
        Ok(Container {
            id,
            pod_uid: self.uid.clone(),
            dir,
        })
    }
}

/// `create_dir_all` that tolerates another test removing a shared parent at the same moment.
fn mkdir_all_racy(dir: &Path) -> Result<()> {
    let mut last = None;
    for _ in 0..20 {
        match std::fs::create_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(last.map_or_else(|| anyhow::anyhow!("unknown error"), anyhow::Error::from))
        .with_context(|| format!("creating cgroup {}", dir.display()))
}

/// Kills every process in a cgroup and removes the directory (no error: this runs in drop guards).
fn kill_and_remove(dir: &Path) {
    if !dir.exists() {
        return;
    }
    // cgroup.kill (Linux >= 5.14) kills the whole subtree at once; fall back to one kill per pid.
    if std::fs::write(dir.join("cgroup.kill"), "1").is_err() {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: plain kill(2) on a pid read from the cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    wait_until(Duration::from_secs(5), || {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        procs.trim().is_empty().then_some(())
    });
    let ok = wait_until(Duration::from_secs(5), || std::fs::remove_dir(dir).ok());
    if ok.is_none() && dir.exists() {
        eprintln!("podtap-tests: could not remove cgroup {}", dir.display());
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        for c in self.containers.iter().rev() {
            kill_and_remove(c);
        }
        kill_and_remove(&self.dir);
        // The kubepods parents are shared by parallel tests: remove them only when empty, ignore failures.
        for p in self.parents.iter().rev() {
            std::fs::remove_dir(self.root.join(p)).ok();
        }
    }
}

impl Container {
    /// Makes the child of `cmd` join this cgroup between fork and exec, so the process (and everything it
    /// forks later) is born in it. Writing "0" to `cgroup.procs` moves the writing process itself.
    pub fn enter_in_child(&self, cmd: &mut Command) -> Result<()> {
        let procs = CString::new(
            self.dir
                .join("cgroup.procs")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .context("cgroup path with NUL")?;
        // SAFETY: the closure only calls async-signal-safe functions (open, write, close) on data prepared
        // before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(err);
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// Pids currently in this container's cgroup.
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

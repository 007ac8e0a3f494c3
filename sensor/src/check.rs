//! The engine behind `podtap check`: can this node run podtap?
//!
//! In: [`CheckOptions`] (where to read the mount table, whether to probe the kernel with test BPF
//! loads). Out: a [`CheckReport`] of [`CheckItem`]s (kernel version, BTF, cgroup v2, tracefs, bpffs,
//! the `sock_send_length`/`sock_recv_length` tracepoints, BPF program and map types, capabilities),
//! each `ok`/`missing`/`warn` with a detail and a fix, rendered one line per item. The report is
//! failing when any required item is missing. Kprobes and fentry are not used and not checked.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use aya::{maps::MapType, programs::ProgramType};

use crate::host::{
    caps::{self, CapSet, Capability},
    kernel::{self, KernelVersion},
    mounts::{self, HostMounts},
};

/// First kernel with BPF ring buffers.
pub const RINGBUF_KERNEL: KernelVersion = KernelVersion::new(5, 8, 0);
/// First kernel with the `sock_send_length` / `sock_recv_length` tracepoints.
pub const SOCK_LENGTH_KERNEL: KernelVersion = KernelVersion::new(6, 3, 0);
/// The tracepoints podtap attaches to (as BTF tracepoints), as `category/name`.
pub const TRACEPOINTS: [&str; 2] = ["sock/sock_send_length", "sock/sock_recv_length"];

/// Outcome of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Present / usable.
    Ok,
    /// Absent or unusable.
    Missing,
    /// Usable with caveats, or could not be determined.
    Warn,
}

impl Status {
    /// Lower-case label used by [`CheckReport::render`].
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Missing => "missing",
            Self::Warn => "warn",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckItem {
    /// Short name, e.g. `cgroup v2` or `CAP_BPF`.
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// How to fix it when it is not ok.
    pub fix: Option<String>,
    /// Whether podtap cannot run without it.
    pub required: bool,
}

impl CheckItem {
    fn new(
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        required: bool,
    ) -> Self {
        Self {
            name: name.into(),
            status,
            detail: detail.into(),
            fix: None,
            required,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        if self.status != Status::Ok {
            self.fix = Some(fix.into());
        }
        self
    }

    /// Whether this item makes the node unfit: required and not ok.
    #[must_use]
    pub fn is_failure(&self) -> bool {
        self.required && self.status == Status::Missing
    }
}

/// What [`run`] looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// Mount table to read (default `/proc/self/mountinfo`).
    pub mountinfo: PathBuf,
    /// Whether to probe program and map types by loading trivial BPF objects (needs privileges).
    pub probe_bpf: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            mountinfo: PathBuf::from(mounts::MOUNTINFO_PATH),
            probe_bpf: true,
        }
    }
}

/// All items, in the order they were checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckReport {
    /// The items.
    pub items: Vec<CheckItem>,
}

impl CheckReport {
    /// Whether every required item is present (warnings do not count).
    #[must_use]
    pub fn all_required_ok(&self) -> bool {
        !self.items.iter().any(CheckItem::is_failure)
    }

    /// Process exit status for `podtap check`: 0 when [`all_required_ok`](Self::all_required_ok), 1 otherwise.
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.all_required_ok())
    }

    /// The item named `name`.
    #[must_use]
    pub fn item(&self, name: &str) -> Option<&CheckItem> {
        self.items.iter().find(|i| i.name == name)
    }

    /// Writes one line per item: status, name, detail and, when not ok, the fix; optional items that
    /// are not ok are marked `(optional)`.
    ///
    /// # Errors
    /// Errors of `out`.
    pub fn render(&self, out: &mut impl Write) -> std::io::Result<()> {
        for item in &self.items {
            let mut line = format!(
                "{:<8} {:<26} {}",
                item.status.label(),
                item.name,
                item.detail
            );
            if item.status != Status::Ok && !item.required {
                line.push_str(" (optional)");
            }
            if let Some(fix) = &item.fix {
                line.push_str(" -- ");
                line.push_str(fix);
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        let verdict = if self.all_required_ok() {
            "podtap can run on this node"
        } else {
            "podtap cannot run on this node: required items are missing"
        };
        writeln!(out, "{verdict}")
    }
}

/// Probes this node.
#[must_use]
pub fn run(options: &CheckOptions) -> CheckReport {
    let mut items = Vec::new();

    let release = kernel::release();
    let version = KernelVersion::parse(&release).ok();
    items.push(kernel_item(&release, version));
    let btf = kernel::btf_present();
    items.push(btf_item(btf));

    let host = mounts::read_mountinfo(&options.mountinfo).map(|e| HostMounts::from_entries(&e));
    let host = match host {
        Ok(host) => host,
        Err(e) => {
            items.push(
                CheckItem::new("mount table", Status::Missing, format!("{e}"), true)
                    .fix("run podtap with /proc mounted"),
            );
            HostMounts::default()
        }
    };
    items.push(mount_item(
        "cgroup v2",
        host.cgroup2.as_deref(),
        true,
        "mount the unified hierarchy: mount -t cgroup2 none /sys/fs/cgroup/unified (or boot with systemd.unified_cgroup_hierarchy=1)",
    ));
    items.push(mount_item(
        "tracefs",
        host.tracefs.as_deref(),
        false,
        "mount -t tracefs tracefs /sys/kernel/tracing (podtap mounts it itself when privileged)",
    ));
    items.push(mount_item(
        "bpffs",
        host.bpffs.as_deref(),
        false,
        "mount -t bpf bpf /sys/fs/bpf (podtap mounts it itself when privileged)",
    ));

    let kernel_btf = if btf {
        aya::Btf::from_sys_fs().map_err(|e| e.to_string())
    } else {
        Err("no kernel BTF".into())
    };
    for tracepoint in TRACEPOINTS {
        let in_tracefs = host.tracefs.as_deref().map(|t| tracefs_has(t, tracepoint));
        let in_btf = kernel_btf
            .as_ref()
            .ok()
            .map(|b| btf_has_tracepoint(b, tracepoint));
        items.push(tracepoint_item(tracepoint, in_tracefs, in_btf));
    }

    if options.probe_bpf {
        items.push(probe_item(
            "prog cgroup_skb",
            aya::sys::is_program_supported(ProgramType::CgroupSkb).map_err(|e| e.to_string()),
            true,
        ));
        // aya's `is_program_supported(Tracing)` probes fentry (a trampoline), which podtap does not use
        // and which some kernels refuse; load and attach a trivial BTF tracepoint program instead.
        let tp_btf = match &kernel_btf {
            Ok(btf) => probe_tp_btf(btf, TRACEPOINTS[0]),
            Err(e) => Err(e.clone()),
        };
        items.push(probe_item("prog tracing (tp_btf)", tp_btf, true));
        for (name, map_type) in [
            ("map ringbuf", MapType::RingBuf),
            ("map lru_hash", MapType::LruHash),
            ("map percpu_array", MapType::PerCpuArray),
        ] {
            items.push(probe_item(
                name,
                aya::sys::is_map_supported(map_type).map_err(|e| e.to_string()),
                true,
            ));
        }
    }

    items.extend(caps_items(
        caps::effective().map_err(|e| e.to_string()),
        version,
    ));
    CheckReport { items }
}

/// Whether `<tracefs>/events/<category>/<name>` exists.
fn tracefs_has(tracefs: &Path, tracepoint: &str) -> bool {
    tracefs.join("events").join(tracepoint).is_dir()
}

/// Whether the kernel BTF has the `btf_trace_<name>` typedef a BTF tracepoint attaches to.
fn btf_has_tracepoint(btf: &aya::Btf, tracepoint: &str) -> bool {
    let name = tracepoint.rsplit('/').next().unwrap_or(tracepoint);
    btf.id_by_type_name_kind(&format!("btf_trace_{name}"), aya_obj::btf::BtfKind::Typedef)
        .is_ok()
}

/// Loads a `BPF_PROG_TYPE_TRACING` program of attach type `BPF_TRACE_RAW_TP` (what aya's
/// `BtfTracePoint` is) for `tracepoint` and attaches it for an instant: `Ok(false)` when the kernel
/// refuses the type or the tracepoint, `Err` for anything else (e.g. missing privileges).
fn probe_tp_btf(btf: &aya::Btf, tracepoint: &str) -> Result<bool, String> {
    use std::os::fd::{FromRawFd as _, OwnedFd};

    use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_prog_type};

    fn sys_bpf(cmd: bpf_cmd, attr: &bpf_attr) -> std::io::Result<OwnedFd> {
        // SAFETY: `attr` is a valid, fully initialised `bpf_attr` that outlives the call, and the size
        // passed is its size; the pointers inside it refer to live locals of the caller.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd as libc::c_long,
                std::ptr::from_ref(attr),
                size_of::<bpf_attr>(),
            )
        };
        let fd =
            i32::try_from(ret).map_err(|_| std::io::Error::other("bpf() returned a bad fd"))?;
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    let name = tracepoint.rsplit('/').next().unwrap_or(tracepoint);
    let Ok(btf_id) =
        btf.id_by_type_name_kind(&format!("btf_trace_{name}"), aya_obj::btf::BtfKind::Typedef)
    else {
        return Ok(false);
    };
    // r0 = 0; exit
    let insns: [u64; 2] = [0xb7, 0x95];
    let license = c"GPL";
    // SAFETY: all-zero bytes are a valid `bpf_attr` (a union of plain integer structs).
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    // SAFETY: writing plain integer fields of the prog-load member of the union.
    unsafe {
        let load = &mut attr.__bindgen_anon_3;
        load.prog_type = bpf_prog_type::BPF_PROG_TYPE_TRACING as u32;
        load.expected_attach_type = bpf_attach_type::BPF_TRACE_RAW_TP as u32;
        load.attach_btf_id = btf_id;
        load.insn_cnt = 2;
        load.insns = insns.as_ptr() as u64;
        load.license = license.as_ptr() as u64;
    }
    let prog = match sys_bpf(bpf_cmd::BPF_PROG_LOAD, &attr) {
        Ok(fd) => fd,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL | libc::E2BIG | libc::ESRCH | 524)
            ) =>
        {
            return Ok(false);
        }
        Err(e) => return Err(format!("loading a tp_btf program: {e}")),
    };
    // SAFETY: as above, for the raw_tracepoint member.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.raw_tracepoint.name = 0;
    attr.raw_tracepoint.prog_fd =
        u32::try_from(std::os::fd::AsRawFd::as_raw_fd(&prog)).map_err(|e| e.to_string())?;
    match sys_bpf(bpf_cmd::BPF_RAW_TRACEPOINT_OPEN, &attr) {
        // Dropping the link detaches the program again.
        Ok(_link) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | 524)) => Ok(false),
        Err(e) => Err(format!("attaching a tp_btf program: {e}")),
    }
}

/// Kernel version item: below 5.8 is missing (no ring buffers); below 6.3 warns (the socket length
/// tracepoints arrived in 6.3; their own items say whether they are there).
#[must_use]
pub fn kernel_item(release: &str, version: Option<KernelVersion>) -> CheckItem {
    let name = "kernel";
    match version {
        None => CheckItem::new(name, Status::Warn, format!("cannot read a version from {release:?}"), true),
        Some(v) if v < RINGBUF_KERNEL => {
            CheckItem::new(name, Status::Missing, format!("{release}: older than {RINGBUF_KERNEL} (no BPF ring buffer)"), true)
                .fix("use a kernel >= 6.3")
        }
        Some(v) if v < SOCK_LENGTH_KERNEL => CheckItem::new(
            name,
            Status::Warn,
            format!("{release}: the sock_send_length/sock_recv_length tracepoints arrived in {SOCK_LENGTH_KERNEL}"),
            true,
        )
        .fix("use a kernel >= 6.3 unless the tracepoints below are ok (backport)"),
        Some(_) => CheckItem::new(name, Status::Ok, release, true),
    }
}

/// BTF item.
#[must_use]
pub fn btf_item(present: bool) -> CheckItem {
    if present {
        CheckItem::new("BTF", Status::Ok, kernel::BTF_VMLINUX, true)
    } else {
        CheckItem::new(
            "BTF",
            Status::Missing,
            format!("{} not found", kernel::BTF_VMLINUX),
            true,
        )
        .fix("use a kernel built with CONFIG_DEBUG_INFO_BTF=y")
    }
}

/// Item for a filesystem that should be mounted.
#[must_use]
pub fn mount_item(name: &str, at: Option<&Path>, required: bool, fix: &str) -> CheckItem {
    match at {
        Some(path) => CheckItem::new(
            name,
            Status::Ok,
            format!("mounted at {}", path.display()),
            required,
        ),
        None if required => CheckItem::new(name, Status::Missing, "not mounted", true).fix(fix),
        None => CheckItem::new(name, Status::Warn, "not mounted", false).fix(fix),
    }
}

/// Item for a tracepoint, from what tracefs and the kernel BTF say (`None`: could not look).
/// The BTF typedef is what attaching needs; tracefs alone is reported with a warning.
#[must_use]
pub fn tracepoint_item(
    tracepoint: &str,
    in_tracefs: Option<bool>,
    in_btf: Option<bool>,
) -> CheckItem {
    let name = format!("tp {tracepoint}");
    let fix = "use a kernel >= 6.3 (tracepoints added in 6.3)";
    match (in_btf, in_tracefs) {
        (Some(true), Some(true)) => {
            CheckItem::new(name, Status::Ok, "in tracefs events and kernel BTF", true)
        }
        (Some(true), _) => CheckItem::new(name, Status::Ok, "in kernel BTF", true),
        (Some(false), _) => CheckItem::new(
            name,
            Status::Missing,
            "no btf_trace_ typedef in kernel BTF",
            true,
        )
        .fix(fix),
        (None, Some(true)) => CheckItem::new(
            name,
            Status::Warn,
            "in tracefs events, but kernel BTF is unavailable",
            true,
        )
        .fix("BTF tracepoints need kernel BTF"),
        (None, Some(false)) => {
            CheckItem::new(name, Status::Missing, "not in tracefs events", true).fix(fix)
        }
        (None, None) => CheckItem::new(
            name,
            Status::Missing,
            "neither tracefs nor kernel BTF to look in",
            true,
        )
        .fix("mount tracefs and use a kernel with BTF"),
    }
}

/// Item for a program or map type probe.
#[must_use]
pub fn probe_item(name: &str, probe: Result<bool, String>, required: bool) -> CheckItem {
    match probe {
        Ok(true) => CheckItem::new(name, Status::Ok, "supported", required),
        Ok(false) => CheckItem::new(
            name,
            Status::Missing,
            "not supported by this kernel",
            required,
        )
        .fix("use a kernel >= 6.3 with BPF enabled"),
        Err(e) => CheckItem::new(name, Status::Warn, format!("probe failed: {e}"), required)
            .fix("run as root (or with CAP_BPF) to probe"),
    }
}

/// One item per capability podtap wants: the loading ones (`CAP_BPF`, `CAP_PERFMON`,
/// `CAP_NET_ADMIN`, or `CAP_SYS_ADMIN` before 5.8) are required; `CAP_SYS_PTRACE` and
/// `CAP_DAC_READ_SEARCH` (reading other processes' `/proc`) are optional.
#[must_use]
pub fn caps_items(
    effective: Result<CapSet, String>,
    kernel: Option<KernelVersion>,
) -> Vec<CheckItem> {
    let have = match effective {
        Ok(have) => have,
        Err(e) => {
            return vec![
                CheckItem::new("capabilities", Status::Missing, e, true).fix("run podtap as root")
            ];
        }
    };
    let missing = caps::missing_for_podtap(have, kernel);
    let old_kernel = kernel.is_some_and(|k| k < caps::CAP_BPF_KERNEL);
    let load: &[Capability] = if old_kernel {
        &[Capability::SysAdmin]
    } else {
        &[Capability::Bpf, Capability::Perfmon, Capability::NetAdmin]
    };
    let mut items = Vec::new();
    for cap in load {
        let item = if !missing.load.contains(cap) {
            let detail = if have.has(*cap) {
                "effective".to_owned()
            } else {
                "covered by CAP_SYS_ADMIN".to_owned()
            };
            CheckItem::new(cap.name(), Status::Ok, detail, true)
        } else {
            CheckItem::new(cap.name(), Status::Missing, "not effective", true)
                .fix(format!("run as root or grant {}", cap.name()))
        };
        items.push(item);
    }
    for cap in [Capability::SysPtrace, Capability::DacReadSearch] {
        let item = if missing.proc_access.contains(&cap) {
            CheckItem::new(
                cap.name(),
                Status::Warn,
                "not effective: other processes' /proc is unreadable",
                false,
            )
            .fix(format!("grant {} for process attribution", cap.name()))
        } else {
            CheckItem::new(cap.name(), Status::Ok, "effective", false)
        };
        items.push(item);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_thresholds() {
        assert_eq!(
            kernel_item("6.18.44", Some(KernelVersion::new(6, 18, 44))).status,
            Status::Ok
        );
        assert_eq!(
            kernel_item("6.3.0", Some(KernelVersion::new(6, 3, 0))).status,
            Status::Ok
        );
        let mid = kernel_item("6.1.0", Some(KernelVersion::new(6, 1, 0)));
        assert_eq!(mid.status, Status::Warn);
        assert!(!mid.is_failure());
        let old = kernel_item("5.4.0", Some(KernelVersion::new(5, 4, 0)));
        assert!(old.is_failure());
        assert!(old.fix.is_some());
    }

    #[test]
    fn tracepoint_sources() {
        assert_eq!(
            tracepoint_item("sock/x", Some(true), Some(true)).status,
            Status::Ok
        );
        assert_eq!(
            tracepoint_item("sock/x", None, Some(true)).status,
            Status::Ok
        );
        assert!(tracepoint_item("sock/x", Some(true), Some(false)).is_failure());
        assert_eq!(
            tracepoint_item("sock/x", Some(true), None).status,
            Status::Warn
        );
        assert!(tracepoint_item("sock/x", None, None).is_failure());
    }

    #[test]
    fn caps_rules() {
        let root = caps_items(
            Ok(CapSet(0x1ff_feff_ffff)),
            Some(KernelVersion::new(6, 18, 0)),
        );
        assert!(root.iter().all(|i| i.status == Status::Ok), "{root:?}");
        let names: Vec<&str> = root.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "CAP_BPF",
                "CAP_PERFMON",
                "CAP_NET_ADMIN",
                "CAP_SYS_PTRACE",
                "CAP_DAC_READ_SEARCH"
            ]
        );

        let none = caps_items(Ok(CapSet(0)), Some(KernelVersion::new(6, 18, 0)));
        let report = CheckReport { items: none };
        assert!(!report.all_required_ok());
        assert_eq!(report.exit_code(), 1);
        assert_eq!(
            report.item("CAP_SYS_PTRACE").map(|i| i.status),
            Some(Status::Warn)
        );

        let sys_admin = CapSet::default().with(Capability::SysAdmin);
        let report = CheckReport {
            items: caps_items(Ok(sys_admin), Some(KernelVersion::new(6, 1, 0))),
        };
        assert!(report.all_required_ok());
        assert_eq!(
            report.item("CAP_BPF").map(|i| i.detail.as_str()),
            Some("covered by CAP_SYS_ADMIN")
        );

        let old = CheckReport {
            items: caps_items(Ok(CapSet(0)), Some(KernelVersion::new(5, 4, 0))),
        };
        assert!(old.item("CAP_SYS_ADMIN").is_some_and(CheckItem::is_failure));
    }

    #[test]
    fn render_lines() -> std::io::Result<()> {
        let report = CheckReport {
            items: vec![
                mount_item(
                    "cgroup v2",
                    Some(Path::new("/sys/fs/cgroup/unified")),
                    true,
                    "mount it",
                ),
                mount_item("bpffs", None, false, "mount -t bpf bpf /sys/fs/bpf"),
                CheckItem::new("CAP_BPF", Status::Missing, "not effective", true)
                    .fix("run as root or grant CAP_BPF"),
            ],
        };
        let mut out = Vec::new();
        report.render(&mut out)?;
        let text = String::from_utf8_lossy(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "ok       cgroup v2                  mounted at /sys/fs/cgroup/unified"
        );
        assert_eq!(
            lines[1],
            "warn     bpffs                      not mounted (optional) -- mount -t bpf bpf /sys/fs/bpf"
        );
        assert_eq!(
            lines[2],
            "missing  CAP_BPF                    not effective -- run as root or grant CAP_BPF"
        );
        assert!(lines[3].starts_with("podtap cannot run"));
        assert!(!report.all_required_ok());
        Ok(())
    }

    #[test]
    fn tp_btf_probe_on_this_kernel() -> Result<(), aya::BtfError> {
        let btf = aya::Btf::from_sys_fs()?;
        assert_eq!(probe_tp_btf(&btf, "sock/sock_send_length"), Ok(true));
        assert_eq!(
            probe_tp_btf(&btf, "sock/podtap_no_such_tracepoint"),
            Ok(false)
        );
        Ok(())
    }

    #[test]
    fn real_node_passes_as_root() -> std::io::Result<()> {
        let report = run(&CheckOptions::default());
        let mut out = Vec::new();
        report.render(&mut out)?;
        let text = String::from_utf8_lossy(&out);
        println!("{text}");
        for item in report.items.iter().filter(|i| i.required) {
            assert_eq!(item.status, Status::Ok, "{item:?}\n{text}");
        }
        assert!(report.all_required_ok(), "{text}");
        assert_eq!(report.exit_code(), 0);
        for name in [
            "cgroup v2",
            "BTF",
            "tp sock/sock_send_length",
            "tp sock/sock_recv_length",
            "map ringbuf",
        ] {
            assert!(report.item(name).is_some(), "{name} not checked");
        }
        assert!(
            !text.contains("kprobe") && !text.contains("fentry"),
            "{text}"
        );
        Ok(())
    }
}

//! Capabilities of the current process and which ones podtap still lacks.
//!
//! In: the `CapEff:` line of `/proc/self/status` (or any status text) and, for the BPF rule, the kernel
//! version. Out: a [`CapSet`] and the list of [`Capability`] values podtap needs but does not have.

use std::path::Path;

use super::kernel::KernelVersion;

/// Status file of the current process.
pub const SELF_STATUS: &str = "/proc/self/status";

/// First kernel with `CAP_BPF` and `CAP_PERFMON` (before it, loading BPF needs `CAP_SYS_ADMIN`).
pub const CAP_BPF_KERNEL: KernelVersion = KernelVersion::new(5, 8, 0);

/// Errors reading capabilities.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// The status file could not be read.
    #[error("reading {path}")]
    Read {
        /// File that was read.
        path: std::path::PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No `CapEff:` line.
    #[error("no CapEff line in process status")]
    NoCapEff,
    /// The `CapEff:` value is not hexadecimal.
    #[error("CapEff value {value:?} is not a hex mask")]
    BadMask {
        /// The value.
        value: String,
    },
}

/// The capabilities podtap knows about (numbers from `linux/capability.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// Bypass directory read/search permission checks (reading other processes' `/proc`).
    DacReadSearch = 2,
    /// Network administration (attaching cgroup socket-buffer programs).
    NetAdmin = 12,
    /// Inspect other processes (`/proc/<pid>/fd`, `exe`, `environ`).
    SysPtrace = 19,
    /// Everything else; covers BPF on every kernel.
    SysAdmin = 21,
    /// Performance monitoring (tracing BPF programs, since 5.8).
    Perfmon = 38,
    /// BPF syscall (since 5.8).
    Bpf = 39,
    /// Checkpoint/restore (e.g. `/proc/<pid>/map_files`).
    CheckpointRestore = 40,
}

impl Capability {
    /// Every capability podtap knows about, in number order.
    pub const ALL: [Self; 7] = [
        Self::DacReadSearch,
        Self::NetAdmin,
        Self::SysPtrace,
        Self::SysAdmin,
        Self::Perfmon,
        Self::Bpf,
        Self::CheckpointRestore,
    ];

    /// Bit number in a capability mask.
    #[must_use]
    pub const fn bit(self) -> u32 {
        self as u32
    }

    /// Name as in `capabilities(7)`, e.g. `CAP_BPF`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::DacReadSearch => "CAP_DAC_READ_SEARCH",
            Self::NetAdmin => "CAP_NET_ADMIN",
            Self::SysPtrace => "CAP_SYS_PTRACE",
            Self::SysAdmin => "CAP_SYS_ADMIN",
            Self::Perfmon => "CAP_PERFMON",
            Self::Bpf => "CAP_BPF",
            Self::CheckpointRestore => "CAP_CHECKPOINT_RESTORE",
        }
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A capability mask as in `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSet(pub u64);

impl CapSet {
    /// Whether `cap` is in the set.
    #[must_use]
    pub const fn has(self, cap: Capability) -> bool {
        self.0 & (1u64 << cap.bit()) != 0
    }

    /// The set with `cap` added.
    #[must_use]
    pub const fn with(self, cap: Capability) -> Self {
        Self(self.0 | (1u64 << cap.bit()))
    }
}

/// Reads the `CapEff:` mask out of `/proc/<pid>/status` text.
///
/// # Errors
/// [`CapsError::NoCapEff`] or [`CapsError::BadMask`].
pub fn parse_cap_eff(status: &str) -> Result<CapSet, CapsError> {
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .map(str::trim)
        .ok_or(CapsError::NoCapEff)?;
    u64::from_str_radix(value, 16)
        .map(CapSet)
        .map_err(|_| CapsError::BadMask {
            value: value.to_owned(),
        })
}

/// Effective capabilities of the current process.
///
/// # Errors
/// [`CapsError`] when [`SELF_STATUS`] cannot be read or parsed.
pub fn effective() -> Result<CapSet, CapsError> {
    let path = Path::new(SELF_STATUS);
    let text = std::fs::read_to_string(path).map_err(|source| CapsError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_cap_eff(&text)
}

/// Capabilities podtap lacks, split by what they are for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MissingCaps {
    /// Needed to load and attach the kernel programs (podtap cannot run without them).
    pub load: Vec<Capability>,
    /// Needed to read other processes' `/proc` entries (attribution is poorer without them).
    pub proc_access: Vec<Capability>,
}

impl MissingCaps {
    /// Whether nothing is missing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.load.is_empty() && self.proc_access.is_empty()
    }
}

/// Which of the capabilities podtap needs are missing from `have`.
///
/// Loading: `CAP_SYS_ADMIN` covers everything; otherwise, from 5.8 on (or when the kernel version is
/// unknown), `CAP_BPF` + `CAP_PERFMON` + `CAP_NET_ADMIN`; before 5.8 only `CAP_SYS_ADMIN` works.
/// Reading other processes' `/proc`: `CAP_SYS_PTRACE` and `CAP_DAC_READ_SEARCH`.
#[must_use]
pub fn missing_for_podtap(have: CapSet, kernel: Option<KernelVersion>) -> MissingCaps {
    let load = if have.has(Capability::SysAdmin) {
        Vec::new()
    } else if kernel.is_some_and(|k| k < CAP_BPF_KERNEL) {
        vec![Capability::SysAdmin]
    } else {
        [Capability::Bpf, Capability::Perfmon, Capability::NetAdmin]
            .into_iter()
            .filter(|c| !have.has(*c))
            .collect()
    };
    let proc_access = [Capability::SysPtrace, Capability::DacReadSearch]
        .into_iter()
        .filter(|c| !have.has(*c))
        .collect();
    MissingCaps { load, proc_access }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_STATUS: &str = "Name:\tcat\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\n\
        CapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n";

    #[test]
    fn parses_root_mask() -> Result<(), CapsError> {
        let caps = parse_cap_eff(ROOT_STATUS)?;
        for cap in Capability::ALL {
            assert!(caps.has(cap), "{cap}");
        }
        assert_eq!(
            missing_for_podtap(caps, Some(KernelVersion::new(6, 18, 0))),
            MissingCaps::default()
        );
        Ok(())
    }

    #[test]
    fn bad_status_is_an_error() {
        assert!(matches!(
            parse_cap_eff("Name: x\n"),
            Err(CapsError::NoCapEff)
        ));
        assert!(matches!(
            parse_cap_eff("CapEff:\tzz\n"),
            Err(CapsError::BadMask { .. })
        ));
    }

    #[test]
    fn unprivileged_needs_the_split_caps() -> Result<(), CapsError> {
        let caps = parse_cap_eff("CapEff:\t0000000000000000\n")?;
        let missing = missing_for_podtap(caps, Some(KernelVersion::new(6, 1, 0)));
        assert_eq!(
            missing.load,
            vec![Capability::Bpf, Capability::Perfmon, Capability::NetAdmin]
        );
        assert_eq!(
            missing.proc_access,
            vec![Capability::SysPtrace, Capability::DacReadSearch]
        );
        let old = missing_for_podtap(caps, Some(KernelVersion::new(5, 4, 0)));
        assert_eq!(old.load, vec![Capability::SysAdmin]);
        Ok(())
    }

    #[test]
    fn split_caps_suffice_without_sys_admin() {
        let caps = CapSet::default()
            .with(Capability::Bpf)
            .with(Capability::Perfmon)
            .with(Capability::NetAdmin)
            .with(Capability::SysPtrace);
        let missing = missing_for_podtap(caps, None);
        assert!(missing.load.is_empty());
        assert_eq!(missing.proc_access, vec![Capability::DacReadSearch]);
        assert!(!caps.has(Capability::SysAdmin));
    }

    #[test]
    fn bits_match_capability_h() {
        assert_eq!(Capability::Bpf.bit(), 39);
        assert_eq!(Capability::Perfmon.bit(), 38);
        assert_eq!(Capability::CheckpointRestore.bit(), 40);
        assert_eq!(Capability::SysAdmin.bit(), 21);
        assert!(CapSet(1 << 12).has(Capability::NetAdmin));
    }

    #[test]
    fn current_process_has_a_mask() -> Result<(), CapsError> {
        effective()?;
        Ok(())
    }
}

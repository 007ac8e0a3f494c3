//! Kernel identity: release string, parsed version and BTF availability.
//!
//! In: `uname(2)` and the presence of `/sys/kernel/btf/vmlinux`. Out: the release string (e.g.
//! `6.18.44-fc-v657`), a comparable [`KernelVersion`] and a BTF flag.

use std::path::Path;

/// Where the kernel exposes its own BTF (needed for BTF tracepoints).
pub const BTF_VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Errors about the kernel version.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The release string does not start with `major.minor`.
    #[error("cannot read a version from kernel release {release:?}")]
    BadRelease {
        /// The release string.
        release: String,
    },
}

/// `major.minor.patch` of a kernel release; compares in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Patch level (0 when the release has none).
    pub patch: u32,
}

impl KernelVersion {
    /// A version from its parts.
    #[must_use]
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses a release such as `6.18.44-fc-v657`, `5.15.0-91-generic` or `6.8.0+`.
    ///
    /// # Errors
    /// [`KernelError::BadRelease`] when there is no leading `major.minor`.
    pub fn parse(release: &str) -> Result<Self, KernelError> {
        let bad = || KernelError::BadRelease {
            release: release.to_owned(),
        };
        let mut parts = release.trim().split('.');
        let number = |part: Option<&str>| -> Option<u32> {
            let part = part?;
            let end = part
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(part.len());
            part[..end].parse().ok()
        };
        let major = number(parts.next()).ok_or_else(bad)?;
        let minor = number(parts.next()).ok_or_else(bad)?;
        let patch = number(parts.next()).unwrap_or(0);
        Ok(Self {
            major,
            minor,
            patch,
        })
    }
}

impl std::fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The running kernel's release string (`uname -r`).
#[must_use]
pub fn release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// The running kernel's version.
///
/// # Errors
/// [`KernelError::BadRelease`] when the release string has no version.
pub fn version() -> Result<KernelVersion, KernelError> {
    KernelVersion::parse(&release())
}

/// Whether the kernel exposes its BTF at [`BTF_VMLINUX`].
#[must_use]
pub fn btf_present() -> bool {
    Path::new(BTF_VMLINUX).is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_releases() -> Result<(), KernelError> {
        assert_eq!(
            KernelVersion::parse("6.18.44-fc-v657")?,
            KernelVersion::new(6, 18, 44)
        );
        assert_eq!(
            KernelVersion::parse("5.15.0-91-generic")?,
            KernelVersion::new(5, 15, 0)
        );
        assert_eq!(KernelVersion::parse("6.8.0+")?, KernelVersion::new(6, 8, 0));
        assert_eq!(
            KernelVersion::parse("6.1-rc3")?,
            KernelVersion::new(6, 1, 0)
        );
        assert_eq!(
            KernelVersion::parse("4.18.0-513.el8.x86_64")?,
            KernelVersion::new(4, 18, 0)
        );
        assert!(KernelVersion::parse("linux").is_err());
        assert!(KernelVersion::parse("6").is_err());
        Ok(())
    }

    #[test]
    fn orders_versions() {
        assert!(KernelVersion::new(5, 8, 0) < KernelVersion::new(5, 10, 0));
        assert!(KernelVersion::new(6, 3, 0) <= KernelVersion::new(6, 3, 1));
        assert!(KernelVersion::new(6, 18, 44) > KernelVersion::new(6, 3, 0));
    }

    #[test]
    fn running_kernel_has_a_version() -> Result<(), KernelError> {
        let v = version()?;
        assert!(v.major >= 3, "{v}");
        Ok(())
    }
}

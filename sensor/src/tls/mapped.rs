//! A file mapped read-only into memory: executables podtap inspects can be hundreds of MiB (a
//! kubelet, a statically linked proxy), and only a few pages of them are read.

use std::{fs::File, os::fd::AsRawFd as _, path::Path};

/// Files larger than this are not inspected (no executable or library is near it).
const MAX_FILE_BYTES: u64 = 2 << 30;

#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("opening: {0}")]
    Open(#[source] std::io::Error),
    #[error("{0} bytes is too large to inspect")]
    TooLarge(u64),
    #[error("mapping: {0}")]
    Map(#[source] std::io::Error),
}

pub struct MappedFile {
    ptr: *mut libc::c_void,
    len: usize,
}

impl MappedFile {
    /// Maps the whole file.
    ///
    /// # Errors
    /// It cannot be opened or mapped, or is larger than 2 GiB.
    pub fn open(path: &Path) -> Result<Self, MapError> {
        let file = File::open(path).map_err(MapError::Open)?;
        let size = file.metadata().map_err(MapError::Open)?.len();
        if size > MAX_FILE_BYTES {
            return Err(MapError::TooLarge(size));
        }
        let len = usize::try_from(size).map_err(|_| MapError::TooLarge(size))?;
        if len == 0 {
            return Ok(Self {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // Shared, not private: the kernel puts the breakpoints of uprobes registered on a file (podtap's
        // own, or another tracer's) into every *private* mapping of it that may execute, so a private
        // mapping would show INT3s where the code has RETs. A read-only shared mapping is the file.
        // SAFETY: a fresh read-only shared mapping of an open file; checked for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(MapError::Map(std::io::Error::last_os_error()));
        }
        Ok(Self { ptr, len })
    }

    /// The file's bytes. A file truncated by someone else while mapped would fault on access: the
    /// executables and libraries podtap maps are in use by running processes, which the kernel
    /// protects from being written (ETXTBSY) and package managers replace by rename, not in place.
    #[must_use]
    pub fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` maps `len` readable bytes until drop.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the mapping made in `open`, unmapped once.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

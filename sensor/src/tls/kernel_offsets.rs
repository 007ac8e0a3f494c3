//! Kernel struct offsets the TLS programs need and the kernel does not keep stable, read from its BTF.

use std::path::Path;

use btfparse::{Offset, Readable, TypeInformation};

/// The kernel's BTF, where every distribution with `tp_btf` support has it.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing the kernel BTF: {0:?}")]
    Parse(btfparse::Error),
    #[error("the kernel BTF has no type {0}")]
    NoType(&'static str),
    #[error("the kernel BTF has no member {path} in {type_name}: {error:?}")]
    NoMember {
        type_name: &'static str,
        path: &'static str,
        error: btfparse::Error,
    },
    #[error("{type_name}.{path} is a bit field")]
    BitField {
        type_name: &'static str,
        path: &'static str,
    },
}

struct Bytes(Vec<u8>);

impl Readable for Bytes {
    fn read(&self, offset: u64, buffer: &mut [u8]) -> btfparse::Result<()> {
        let start = usize::try_from(offset).ok();
        let slice = start
            .and_then(|start| self.0.get(start..start.checked_add(buffer.len())?))
            .ok_or_else(|| {
                btfparse::Error::new(btfparse::ErrorKind::IOError, "read past the end of the BTF")
            })?;
        buffer.copy_from_slice(slice);
        Ok(())
    }
}

/// `offsetof(struct task_struct, thread.fsbase)` (x86-64): where a thread's FS base is saved, which
/// is where Go keeps the running goroutine.
///
/// # Errors
/// The BTF cannot be read, or lacks the member.
pub fn task_fsbase(btf: &Path) -> Result<u64, OffsetError> {
    let bytes = std::fs::read(btf).map_err(|source| OffsetError::Read {
        path: btf.display().to_string(),
        source,
    })?;
    let types = TypeInformation::new(&Bytes(bytes)).map_err(OffsetError::Parse)?;
    member_offset(&types, "task_struct", "thread.fsbase")
}

fn member_offset(
    types: &TypeInformation,
    type_name: &'static str,
    path: &'static str,
) -> Result<u64, OffsetError> {
    let id = types
        .id_of(type_name)
        .ok_or(OffsetError::NoType(type_name))?;
    match types.offset_of(id, path) {
        Ok((_, Offset::ByteOffset(offset))) => Ok(u64::from(offset)),
        Ok((_, Offset::BitOffsetAndSize(..))) => Err(OffsetError::BitField { type_name, path }),
        Err(error) => Err(OffsetError::NoMember {
            type_name,
            path,
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_fs_base_of_this_kernel() {
        // Every kernel podtap runs on has BTF (`tp_btf` needs it); so does this test's.
        let offset = task_fsbase(Path::new(VMLINUX_BTF)).expect("task_struct.thread.fsbase");
        // `thread` is near the end of a task_struct of several KiB; fsbase a few words into it.
        assert!((1024..16_384).contains(&offset), "offset {offset}");
    }
}

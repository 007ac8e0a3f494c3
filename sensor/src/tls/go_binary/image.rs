//! The file bytes of an executable as the loader maps them: PT_LOAD segments, virtual address -> file
//! offset, and bounds-checked little-endian reads (all of a Go binary's tables are read through here, so
//! a truncated or hostile file gives an error, never a panic).

use super::GoBinaryError;

/// One PT_LOAD segment's file-backed part.
#[derive(Clone, Copy, Debug)]
pub(super) struct Segment {
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub executable: bool,
    pub writable: bool,
}

impl Segment {
    /// The segment's bytes in the file, or an error if the header points past the end of the file.
    pub fn bytes<'a>(&self, data: &'a [u8]) -> Result<&'a [u8], GoBinaryError> {
        slice(data, self.offset, self.filesz, "PT_LOAD segment")
    }
}

/// The whole file and its loaded segments.
pub(super) struct Image<'a> {
    pub data: &'a [u8],
    pub segments: Vec<Segment>,
}

impl<'a> Image<'a> {
    /// The segment whose file bytes hold `vaddr`.
    pub fn segment_of(&self, vaddr: u64) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| vaddr >= s.vaddr && vaddr - s.vaddr < s.filesz)
    }

    /// File offset of `vaddr`: `vaddr - p_vaddr + p_offset` of the PT_LOAD segment holding it.
    pub fn file_offset(&self, vaddr: u64) -> Result<u64, GoBinaryError> {
        let segment = self
            .segment_of(vaddr)
            .ok_or(GoBinaryError::Unmapped(vaddr))?;
        (vaddr - segment.vaddr)
            .checked_add(segment.offset)
            .ok_or(GoBinaryError::Unmapped(vaddr))
    }

    /// `len` bytes at `vaddr`, all inside one segment's file bytes.
    pub fn read(
        &self,
        vaddr: u64,
        len: u64,
        what: &'static str,
    ) -> Result<&'a [u8], GoBinaryError> {
        let segment = self
            .segment_of(vaddr)
            .ok_or(GoBinaryError::Unmapped(vaddr))?;
        let within = vaddr - segment.vaddr;
        if len > segment.filesz - within {
            return Err(GoBinaryError::OutOfBounds {
                what,
                offset: vaddr,
                len,
            });
        }
        slice(self.data, segment.offset.saturating_add(within), len, what)
    }
}

/// `data[offset..offset + len]`, or an error naming `what`.
pub(super) fn slice<'a>(
    data: &'a [u8],
    offset: u64,
    len: u64,
    what: &'static str,
) -> Result<&'a [u8], GoBinaryError> {
    let out_of_bounds = || GoBinaryError::OutOfBounds { what, offset, len };
    let start = usize::try_from(offset).map_err(|_| out_of_bounds())?;
    let len = usize::try_from(len).map_err(|_| out_of_bounds())?;
    let end = start.checked_add(len).ok_or_else(out_of_bounds)?;
    data.get(start..end).ok_or_else(out_of_bounds)
}

/// Little-endian u32 at `offset`.
pub(super) fn u32_at(data: &[u8], offset: u64, what: &'static str) -> Result<u32, GoBinaryError> {
    let bytes = slice(data, offset, 4, what)?;
    let mut word = [0; 4];
    word.copy_from_slice(bytes);
    Ok(u32::from_le_bytes(word))
}

/// Unsigned integer of `size` (4 or 8) bytes at `offset`, in the given byte order.
pub(super) fn uint_at(
    data: &[u8],
    offset: u64,
    size: u8,
    big_endian: bool,
    what: &'static str,
) -> Result<u64, GoBinaryError> {
    let bytes = slice(data, offset, u64::from(size), what)?;
    let mut word = [0; 8];
    match (size, big_endian) {
        (4 | 8, false) => word[..bytes.len()].copy_from_slice(bytes),
        (4 | 8, true) => word[8 - bytes.len()..].copy_from_slice(bytes),
        _ => return Err(GoBinaryError::PointerSize(size)),
    }
    Ok(if big_endian {
        u64::from_be_bytes(word)
    } else {
        u64::from_le_bytes(word)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounds_checked() {
        let data = [1, 2, 3, 4, 5];
        assert_eq!(u32_at(&data, 1, "t").ok(), Some(0x0504_0302));
        assert!(u32_at(&data, 2, "t").is_err());
        assert!(u32_at(&data, u64::MAX, "t").is_err());
        assert!(slice(&data, 3, u64::MAX, "t").is_err());
        assert_eq!(uint_at(&data, 0, 4, true, "t").ok(), Some(0x0102_0304));
        assert!(uint_at(&data, 0, 2, false, "t").is_err());
    }

    #[test]
    fn addresses_map_through_the_segment_holding_them() {
        let data = [0u8; 32];
        let image = Image {
            data: &data,
            segments: vec![Segment {
                vaddr: 0x1000,
                offset: 8,
                filesz: 16,
                executable: true,
                writable: false,
            }],
        };
        assert_eq!(image.file_offset(0x1004).ok(), Some(12));
        assert!(image.file_offset(0x1010).is_err());
        assert!(image.read(0x100c, 4, "t").is_ok());
        assert!(image.read(0x100c, 5, "t").is_err());
        assert!(image.read(0xfff, 1, "t").is_err());
    }
}

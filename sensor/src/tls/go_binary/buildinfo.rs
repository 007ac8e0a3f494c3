//! The Go version recorded in `.go.buildinfo` (go1.13+).
//!
//! Hand-written: the layout is 32 bytes of header and two strings, and no Rust crate reads it without
//! pulling in a whole Go reverse-engineering toolkit. The header is `\xff Go buildinf:`, the pointer
//! size, and flags (bit 0 big-endian, bit 1 inline strings). go1.18+ (flags & 2) stores the version
//! inline at offset 32 as a uvarint length and bytes; older linkers (go1.13-1.17) store at offset 16 a
//! pointer to the `runtime.buildVersion` string header (data pointer, length), both virtual addresses
//! resolved through the PT_LOAD segments.

use super::image::{slice, uint_at, Image};
use super::GoBinaryError;

pub(super) const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
const HEADER_LEN: u64 = 32;
/// Longer than any Go version string; a bigger length means the table is garbage.
const MAX_VERSION_LEN: u64 = 1024;

fn malformed(reason: &'static str) -> GoBinaryError {
    GoBinaryError::BuildInfo(reason)
}

/// The version string (`go1.19.8`) of the build info starting at `info` (the section's bytes, or the
/// rest of a segment from the magic on), or `None` when it is empty.
pub(super) fn version(image: &Image<'_>, info: &[u8]) -> Result<Option<String>, GoBinaryError> {
    let header = slice(info, 0, HEADER_LEN, ".go.buildinfo header")?;
    if !header.starts_with(MAGIC) {
        return Err(malformed("bad magic"));
    }
    let ptr_size = header[14];
    let flags = header[15];
    let bytes = if flags & 2 != 0 {
        let (len, used) = uvarint(info, HEADER_LEN)?;
        slice(
            info,
            HEADER_LEN + used,
            len.min(MAX_VERSION_LEN + 1),
            ".go.buildinfo version",
        )?
    } else {
        let big_endian = flags & 1 != 0;
        let string_header = uint_at(info, 16, ptr_size, big_endian, ".go.buildinfo pointer")?;
        let header = image.read(
            string_header,
            2 * u64::from(ptr_size),
            "runtime.buildVersion header",
        )?;
        let data = uint_at(header, 0, ptr_size, big_endian, "string data")?;
        let len = uint_at(
            header,
            u64::from(ptr_size),
            ptr_size,
            big_endian,
            "string length",
        )?;
        if len > MAX_VERSION_LEN {
            return Err(malformed("version string too long"));
        }
        if len == 0 {
            return Ok(None);
        }
        image.read(data, len, "runtime.buildVersion bytes")?
    };
    if bytes.len() as u64 > MAX_VERSION_LEN {
        return Err(malformed("version string too long"));
    }
    if bytes.is_empty() {
        return Ok(None);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| malformed("version is not UTF-8"))?;
    Ok(Some(text.to_owned()))
}

/// Go's `encoding/binary` uvarint at `offset`: (value, bytes used).
fn uvarint(data: &[u8], offset: u64) -> Result<(u64, u64), GoBinaryError> {
    let mut value = 0u64;
    for i in 0..10u64 {
        let byte = slice(data, offset + i, 1, ".go.buildinfo uvarint")?[0];
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(malformed("uvarint longer than 10 bytes"))
}

/// The minor version of a `go1.N[.P]` / `go1.NrcM` string, `None` for anything else (`devel ...`).
pub(super) fn minor_version(version: &str) -> Option<u32> {
    let rest = version.strip_prefix("go1.")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_versions() {
        assert_eq!(minor_version("go1.19.8"), Some(19));
        assert_eq!(minor_version("go1.16.3"), Some(16));
        assert_eq!(minor_version("go1.21rc2"), Some(21));
        assert_eq!(minor_version("go1.20 X:boringcrypto"), Some(20));
        assert_eq!(minor_version("devel go1.22-abc"), None);
        assert_eq!(minor_version("go2"), None);
    }

    #[test]
    fn inline_version() {
        let mut info = MAGIC.to_vec();
        info.extend([8, 2]);
        info.resize(32, 0);
        info.push(8);
        info.extend(b"go1.19.8");
        let image = Image {
            data: &[],
            segments: Vec::new(),
        };
        assert_eq!(
            version(&image, &info).ok().flatten().as_deref(),
            Some("go1.19.8")
        );
        // Cut anywhere: an error, not a panic.
        for len in 0..info.len() {
            assert!(version(&image, &info[..len]).is_err());
        }
        // Old pointer format whose pointer leads nowhere.
        info[15] = 0;
        assert!(version(&image, &info).is_err());
    }
}

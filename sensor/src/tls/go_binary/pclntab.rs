//! The function table of Go's `.gopclntab` (entry PC -> name), which every Go binary keeps even when
//! stripped, because the runtime itself needs it for stack traces.
//!
//! Hand-written: no Rust crate reads every layout. The ones that do (`unstrip`-style tools, `gore`'s
//! ports) cover only go1.18+ and are heavy reverse-engineering toolkits; podtap needs a few hundred lines
//! of the table, from go1.2 to today, and only the function names and entry points (no line tables).
//!
//! Layouts, by header magic (little-endian u32, then two zero bytes, the instruction size quantum and
//! the pointer size):
//! - `0xfffffffb` go1.2-1.15: `nfunc` at 8, then the functab (entry, funcoff) pairs of pointer size;
//!   `funcoff` and the `_func.nameoff` after the entry are offsets from the table start.
//! - `0xfffffffa` go1.16-1.17: header words `nfunc, nfiles, funcnameOffset, cuOffset, filetabOffset,
//!   pctabOffset, pclnOffset`; functab at `pclnOffset`, `funcoff` relative to it, names relative to
//!   `funcnameOffset`.
//! - `0xfffffff0` go1.18-1.19 and `0xfffffff1` go1.20+: `textStart` inserted after `nfiles`, and the
//!   functab pairs are u32 offsets (entries relative to `textStart`).
//!
//! The table ends with one extra entry, the end of the last function, so every function's end is the
//! next entry (inter-function padding included).

use super::image::{slice, u32_at, uint_at, Image};
use super::GoBinaryError;

pub(super) const MAGIC_GO12: u32 = 0xffff_fffb;
pub(super) const MAGIC_GO116: u32 = 0xffff_fffa;
pub(super) const MAGIC_GO118: u32 = 0xffff_fff0;
pub(super) const MAGIC_GO120: u32 = 0xffff_fff1;

fn malformed(reason: &'static str) -> GoBinaryError {
    GoBinaryError::Pclntab(reason)
}

/// `[entry, end)` of one function, virtual addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FuncRange {
    pub entry: u64,
    pub end: u64,
}

/// A parsed table header, with the slices the function lookups read.
pub(super) struct Pclntab<'a> {
    pub magic: u32,
    ptr_size: u8,
    nfunc: u64,
    /// go1.18+: what functab entries are relative to (0 before).
    text_start: u64,
    /// The function name strings (`nameoff` base).
    names: &'a [u8],
    /// The (entry, funcoff) pairs and the final end entry.
    functab: &'a [u8],
    /// Base of `funcoff`.
    funcdata: &'a [u8],
}

impl<'a> Pclntab<'a> {
    /// Parses the header of the table at the start of `data`. `text_start` gives `runtime.text` for
    /// go1.18+ tables whose header field is 0 (left for a dynamic relocation to fill in).
    pub fn parse(
        data: &'a [u8],
        text_start: impl FnOnce() -> Option<u64>,
    ) -> Result<Self, GoBinaryError> {
        let magic = u32_at(data, 0, ".gopclntab magic")?;
        let header = slice(data, 4, 4, ".gopclntab header")?;
        if !matches!(magic, MAGIC_GO12 | MAGIC_GO116 | MAGIC_GO118 | MAGIC_GO120) {
            return Err(GoBinaryError::PclntabMagic(magic));
        }
        if header[0] != 0 || header[1] != 0 || !matches!(header[2], 1 | 2 | 4) {
            return Err(malformed("bad header"));
        }
        let ptr_size = header[3];
        if !matches!(ptr_size, 4 | 8) {
            return Err(GoBinaryError::PointerSize(ptr_size));
        }
        // Header word `i` after the 8 bytes of magic and sizes.
        let word = |i: u64| {
            uint_at(
                data,
                8 + i * u64::from(ptr_size),
                ptr_size,
                false,
                ".gopclntab header",
            )
        };
        let tail = |offset: u64| -> Result<&'a [u8], GoBinaryError> {
            let offset = usize::try_from(offset).map_err(|_| malformed("offset out of range"))?;
            data.get(offset..)
                .ok_or(malformed("offset past the end of the table"))
        };
        let mut table = Pclntab {
            magic,
            ptr_size,
            nfunc: word(0)?,
            text_start: 0,
            names: data,
            functab: data,
            funcdata: data,
        };
        match magic {
            MAGIC_GO12 => {
                table.functab = tail(8 + u64::from(ptr_size))?;
            }
            MAGIC_GO116 => {
                table.names = tail(word(2)?)?;
                table.functab = tail(word(6)?)?;
                table.funcdata = table.functab;
            }
            _ => {
                table.text_start = match word(2)? {
                    0 => {
                        text_start().ok_or(malformed("textStart is 0 and runtime.text unknown"))?
                    }
                    start => start,
                };
                table.names = tail(word(3)?)?;
                table.functab = tail(word(7)?)?;
                table.funcdata = table.functab;
            }
        }
        // nfunc pairs and the end entry must fit: this also bounds every loop over the table.
        let needed = table
            .nfunc
            .checked_mul(2)
            .and_then(|n| n.checked_add(1))
            .and_then(|n| n.checked_mul(table.field_size()))
            .ok_or(malformed("function count overflows"))?;
        if needed > table.functab.len() as u64 {
            return Err(malformed("function table longer than the section"));
        }
        Ok(table)
    }

    /// Size of a functab field: pointers before go1.18, u32 offsets since.
    fn field_size(&self) -> u64 {
        match self.magic {
            MAGIC_GO12 | MAGIC_GO116 => u64::from(self.ptr_size),
            _ => 4,
        }
    }

    fn field(&self, data: &[u8], offset: u64, what: &'static str) -> Result<u64, GoBinaryError> {
        uint_at(data, offset, self.field_size() as u8, false, what)
    }

    /// Entry PC of function `i` (`i == nfunc`: the end of the last function).
    fn entry(&self, i: u64) -> Result<u64, GoBinaryError> {
        let raw = self.field(self.functab, i * 2 * self.field_size(), "functab entry")?;
        Ok(self.text_start.wrapping_add(raw))
    }

    /// Whether function `i` is called `name`.
    fn is_named(&self, i: u64, name: &str) -> Result<bool, GoBinaryError> {
        let funcoff = self.field(
            self.functab,
            (i * 2 + 1) * self.field_size(),
            "functab funcoff",
        )?;
        // `_func` starts with the entry (pointer, or u32 since go1.18), then `nameoff` (int32).
        let nameoff = u32_at(
            self.funcdata,
            funcoff.saturating_add(self.field_size()),
            "_func.nameoff",
        )?;
        let wanted = name.len() as u64;
        // Compare including the NUL terminator, reading no more than the name's length.
        Ok(
            match slice(self.names, u64::from(nameoff), wanted + 1, "function name") {
                Ok(bytes) => bytes[..name.len()] == *name.as_bytes() && bytes[name.len()] == 0,
                // A shorter name at the very end of the table.
                Err(_) => false,
            },
        )
    }

    /// `[entry, end)` of each function of `names`, in one pass over the table.
    pub fn find<const N: usize>(
        &self,
        names: [&str; N],
    ) -> Result<[Option<FuncRange>; N], GoBinaryError> {
        let mut found = [None; N];
        for i in 0..self.nfunc {
            for (slot, name) in found.iter_mut().zip(&names) {
                if slot.is_none() && self.is_named(i, name)? {
                    let entry = self.entry(i)?;
                    let end = self.entry(i + 1)?;
                    if end <= entry {
                        return Err(malformed("function table is not sorted"));
                    }
                    *slot = Some(FuncRange { entry, end });
                }
            }
            if found.iter().all(Option::is_some) {
                break;
            }
        }
        Ok(found)
    }

    /// Plausibility check for a table found by its magic alone: functions exist and are in order.
    fn plausible(&self) -> bool {
        self.nfunc > 0
            && matches!(
                (self.entry(0), self.entry(self.nfunc)),
                (Ok(first), Ok(last)) if first < last
            )
    }
}

/// Fallback when the section headers do not name the table: the first plausible header in the
/// non-executable PT_LOAD segments (the table starts 4-byte aligned; in practice 32-byte aligned).
pub(super) fn find_by_magic<'a>(
    image: &Image<'a>,
    text_start: impl Fn() -> Option<u64>,
) -> Option<&'a [u8]> {
    for segment in image.segments.iter().filter(|s| !s.executable) {
        let Ok(bytes) = segment.bytes(image.data) else {
            continue;
        };
        for start in (0..bytes.len().saturating_sub(8)).step_by(4) {
            let candidate = &bytes[start..];
            if candidate[1..4] != [0xff, 0xff, 0xff] || candidate[4..6] != [0, 0] {
                continue;
            }
            if let Ok(table) = Pclntab::parse(candidate, &text_start) {
                if table.plausible() {
                    return Some(candidate);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A go1.18-layout table with functions `a` at textStart+0x10 and `bb` at +0x40, ending at +0x80.
    fn go118_table() -> Vec<u8> {
        let mut t = Vec::new();
        t.extend(MAGIC_GO118.to_le_bytes());
        t.extend([0, 0, 1, 8]);
        // nfunc, nfiles, textStart, funcnameOffset, cuOffset, filetabOffset, pctabOffset, pclnOffset
        for word in [2u64, 0, 0x40_1000, 72, 0, 0, 0, 78] {
            t.extend(word.to_le_bytes());
        }
        t.extend(b"a\0bb\0\0"); // names at 72
                                // functab at 78: (0x10, 20) (0x40, 28) end 0x80; _func at 78+20 and 78+28.
        for word in [0x10u32, 20, 0x40, 28, 0x80, 0x10, 0, 0x40, 2] {
            t.extend(word.to_le_bytes());
        }
        t
    }

    #[test]
    fn finds_functions_and_their_ends() {
        let data = go118_table();
        let table = Pclntab::parse(&data, || None).expect("parses");
        let found = table.find(["bb", "a", "c"]).expect("finds");
        assert_eq!(
            found,
            [
                Some(FuncRange {
                    entry: 0x40_1040,
                    end: 0x40_1080
                }),
                Some(FuncRange {
                    entry: 0x40_1010,
                    end: 0x40_1040
                }),
                None
            ]
        );
    }

    #[test]
    fn truncated_or_garbled_tables_are_errors() {
        let data = go118_table();
        for len in 0..data.len() {
            if let Ok(table) = Pclntab::parse(&data[..len], || None) {
                let _ = table.find(["a", "bb"]);
            }
        }
        for i in 0..data.len() {
            for value in [0x00, 0x7f, 0xff] {
                let mut garbled = data.clone();
                garbled[i] = value;
                if let Ok(table) = Pclntab::parse(&garbled, || Some(0x40_1000)) {
                    let _ = table.find(["a", "bb"]);
                }
            }
        }
    }
}

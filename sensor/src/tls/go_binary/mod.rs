//! Go executables: where `crypto/tls.(*Conn).Write` and `crypto/tls.(*Conn).Read` start and where they
//! return, as file offsets a uprobe attaches to.
//!
//! The functions are found by name in the ELF `.symtab` when the binary has one, else in Go's own
//! function table (`.gopclntab`, kept by stripped binaries), and their RET instructions by disassembly.
//! Submodules: `image` (segments and bounds-checked reads), `buildinfo` (Go version), `pclntab`
//! (function table), `disasm` (RETs).

mod buildinfo;
mod disasm;
mod image;
mod pclntab;

use object::elf;
use object::read::elf::{ElfFile64, FileHeader as _, ProgramHeader as _};
use object::{
    Endianness, Object as _, ObjectSection as _, ObjectSymbol as _, ObjectSymbolTable as _,
};

use image::{Image, Segment};
use pclntab::{FuncRange, Pclntab};

pub use disasm::MAX_FUNCTION_BYTES;

/// Calling convention of the binary's Go functions (amd64).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoAbi {
    /// Go >= 1.17: arguments and results in registers (receiver in rax, buffer in rbx/rcx, `n` back
    /// in rax), goroutine in r14.
    Register,
    /// Go < 1.17: arguments and results on the stack.
    Stack,
}

/// Where the function names came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolSource {
    /// The ELF symbol table.
    Symtab,
    /// `.gopclntab` (the binary is stripped).
    Pclntab,
}

/// One function to hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoFunction {
    /// File offset of the first instruction.
    pub entry: u64,
    /// File offsets of every RET instruction in the function's body.
    pub returns: Vec<u64>,
    /// Virtual address of the first instruction (for logs and cross-checks with disassemblers).
    pub address: u64,
    /// Bytes decoded from the entry: the symbol's size, or up to the next function in `.gopclntab`
    /// (then including the INT3 padding).
    pub size: u64,
}

/// What podtap hooks in one Go executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoTls {
    /// `go1.19.8`, from the build info (`None`: no build info, before go1.13, or an empty version).
    pub version: Option<String>,
    pub abi: GoAbi,
    pub symbols: SymbolSource,
    pub write: GoFunction,
    pub read: GoFunction,
}

#[derive(Debug, thiserror::Error)]
pub enum GoBinaryError {
    #[error("ELF: {0}")]
    Elf(#[from] object::Error),
    #[error("not an x86-64 executable (ELF machine {0})")]
    Machine(u16),
    #[error("{what}: {len} bytes at {offset:#x} are outside the file or its segment")]
    OutOfBounds {
        what: &'static str,
        offset: u64,
        len: u64,
    },
    #[error("address {0:#x} is not in the file bytes of any PT_LOAD segment")]
    Unmapped(u64),
    #[error("unsupported pointer size {0}")]
    PointerSize(u8),
    #[error("unknown .gopclntab magic {0:#x}")]
    PclntabMagic(u32),
    #[error(".gopclntab: {0}")]
    Pclntab(&'static str),
    #[error("the binary has Go build info but no .gopclntab")]
    NoPclntab,
    #[error(".go.buildinfo: {0}")]
    BuildInfo(&'static str),
    #[error("{name}: size {size} is 0 or above the {MAX_FUNCTION_BYTES}-byte limit")]
    FunctionSize { name: &'static str, size: u64 },
    #[error("{name}: entry {address:#x} is not in an executable segment")]
    NotCode { name: &'static str, address: u64 },
    #[error("{name}: undecodable instruction at {address:#x}")]
    Undecodable { name: &'static str, address: u64 },
    #[error("{name}: no RET instruction")]
    NoReturn { name: &'static str },
}

const WRITE: &str = "crypto/tls.(*Conn).Write";
const READ: &str = "crypto/tls.(*Conn).Read";
/// The register-ABI argument spill helper of `runtime/asm_amd64.s`, there since go1.17: tells 1.17 from
/// 1.16, which share a `.gopclntab` layout, when the build info gives no version.
const SPILL_ARGS: &str = "runtime.spillArgs";

/// Inspects an executable's bytes. `Ok(None)`: not an ELF file, not a Go binary, or one without
/// `crypto/tls`.
///
/// Work is bounded by the file: one pass over the symbol table and one over the Go function table,
/// and at most [`MAX_FUNCTION_BYTES`] decoded per function.
///
/// # Errors
/// A 64-bit ELF file that does not parse or is not x86-64, or a Go binary whose tables do not parse
/// or whose functions do not disassemble.
pub fn inspect(data: &[u8]) -> Result<Option<GoTls>, GoBinaryError> {
    if !data.starts_with(&elf::ELFMAG) {
        return Ok(None);
    }
    let file = ElfFile64::<Endianness>::parse(data)?;
    let endian = file.endian();
    let machine = file.elf_header().e_machine(endian);
    if machine != elf::EM_X86_64 {
        return Err(GoBinaryError::Machine(machine));
    }
    let image = Image {
        data,
        segments: file
            .elf_program_headers()
            .iter()
            .filter(|header| header.p_type(endian) == elf::PT_LOAD)
            .map(|header| {
                let flags = header.p_flags(endian);
                Segment {
                    vaddr: header.p_vaddr(endian),
                    offset: header.p_offset(endian),
                    filesz: header.p_filesz(endian),
                    executable: flags & elf::PF_X != 0,
                    writable: flags & elf::PF_W != 0,
                }
            })
            .collect(),
    };

    let build_info = build_info_bytes(&file, &image)?;
    let text_start = || runtime_text(&file);
    let Some(pcln_bytes) = pclntab_bytes(&file, &image, &text_start)? else {
        return match build_info {
            Some(_) => Err(GoBinaryError::NoPclntab),
            None => Ok(None),
        };
    };
    let pcln = Pclntab::parse(pcln_bytes, text_start)?;
    let version = match build_info {
        Some(info) => buildinfo::version(&image, info)?,
        None => None,
    };
    let [write, read, spill_args] = pcln.find([WRITE, READ, SPILL_ARGS])?;

    let (symbols, write, read) = match symtab_functions(&file) {
        Some((write, read)) => (SymbolSource::Symtab, write, read),
        None => match (write, read) {
            (Some(write), Some(read)) => (SymbolSource::Pclntab, write, read),
            _ => return Ok(None),
        },
    };
    let abi = match version.as_deref().and_then(buildinfo::minor_version) {
        Some(minor) if minor >= 17 => GoAbi::Register,
        Some(_) => GoAbi::Stack,
        // No usable version: the table layout splits <= 1.15 / 1.16-1.17 / >= 1.18, and within
        // 1.16-1.17 only the register ABI has runtime.spillArgs.
        None => match pcln.magic {
            pclntab::MAGIC_GO12 => GoAbi::Stack,
            pclntab::MAGIC_GO116 if spill_args.is_none() => GoAbi::Stack,
            _ => GoAbi::Register,
        },
    };
    Ok(Some(GoTls {
        version,
        abi,
        symbols,
        write: disasm::function(&image, WRITE, write)?,
        read: disasm::function(&image, READ, read)?,
    }))
}

/// The `.go.buildinfo` bytes: the section, else the magic (16-byte aligned) in a writable segment.
fn build_info_bytes<'a>(
    file: &ElfFile64<'a, Endianness>,
    image: &Image<'a>,
) -> Result<Option<&'a [u8]>, GoBinaryError> {
    if let Some(section) = file.section_by_name(".go.buildinfo") {
        return Ok(Some(section.data()?));
    }
    if file.sections().next().is_some() {
        // Section headers present but no build info: go < 1.13, or not Go.
        return Ok(None);
    }
    for segment in image.segments.iter().filter(|s| s.writable) {
        let Ok(bytes) = segment.bytes(image.data) else {
            continue;
        };
        let found = (0..bytes.len())
            .step_by(16)
            .find(|&at| bytes[at..].starts_with(buildinfo::MAGIC));
        if let Some(at) = found {
            return Ok(Some(&bytes[at..]));
        }
    }
    Ok(None)
}

/// The `.gopclntab` bytes: the section (`.data.rel.ro.gopclntab` in PIE builds), else the span of the
/// `runtime.pclntab`..`runtime.epclntab` symbols, else a search for the header magic. `None`: not Go.
fn pclntab_bytes<'a>(
    file: &ElfFile64<'a, Endianness>,
    image: &Image<'a>,
    text_start: &impl Fn() -> Option<u64>,
) -> Result<Option<&'a [u8]>, GoBinaryError> {
    for name in [".gopclntab", ".data.rel.ro.gopclntab"] {
        if let Some(section) = file.section_by_name(name) {
            return Ok(Some(section.data()?));
        }
    }
    let (start, end) = (
        symbol(file, "runtime.pclntab"),
        symbol(file, "runtime.epclntab"),
    );
    if let (Some(start), Some(end)) = (start, end) {
        if end > start {
            return image
                .read(start.0, end.0 - start.0, "runtime.pclntab")
                .map(Some);
        }
    }
    // The scan reads every read-only byte: only for files without section headers, or marked as Go
    // but with the table under another name, not for every C program on the node.
    let go_marked = [".go.buildinfo", ".note.go.buildid"]
        .iter()
        .any(|name| file.section_by_name(name).is_some());
    if file.sections().next().is_some() && !go_marked {
        return Ok(None);
    }
    Ok(pclntab::find_by_magic(image, text_start))
}

/// `runtime.text`, what go1.18+ table entries are relative to, when the table header has 0: the
/// symbol, else the start of `.text` (where the Go linker puts it).
fn runtime_text(file: &ElfFile64<'_, Endianness>) -> Option<u64> {
    symbol(file, "runtime.text")
        .map(|(address, _)| address)
        .or_else(|| file.section_by_name(".text").map(|s| s.address()))
}

/// Address and size of the `.symtab` symbol `name`.
fn symbol(file: &ElfFile64<'_, Endianness>, name: &str) -> Option<(u64, u64)> {
    file.symbol_table()?
        .symbols()
        .find(|symbol| symbol.name() == Ok(name))
        .map(|symbol| (symbol.address(), symbol.size()))
}

/// Write and Read from `.symtab`, when it has both with their sizes.
fn symtab_functions(file: &ElfFile64<'_, Endianness>) -> Option<(FuncRange, FuncRange)> {
    let (mut write, mut read) = (None, None);
    for symbol in file.symbol_table()?.symbols() {
        let slot = match symbol.name() {
            Ok(WRITE) => &mut write,
            Ok(READ) => &mut read,
            _ => continue,
        };
        if symbol.size() > 0 {
            *slot = Some(FuncRange {
                entry: symbol.address(),
                end: symbol.address().saturating_add(symbol.size()),
            });
        }
    }
    Some((write?, read?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_elf_is_none() {
        assert!(matches!(inspect(b""), Ok(None)));
        assert!(matches!(inspect(b"#!/bin/sh\n"), Ok(None)));
    }

    #[test]
    fn truncated_elf_is_an_error() {
        let mut header = elf::ELFMAG.to_vec();
        header.extend([elf::ELFCLASS64, elf::ELFDATA2LSB, 1]);
        for len in 0..=header.len() {
            assert!(
                !matches!(inspect(&header[..len]), Ok(Some(_))),
                "{len} bytes"
            );
        }
        assert!(inspect(&header).is_err());
    }
}

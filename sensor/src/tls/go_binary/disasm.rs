//! The RET instructions of one function body, by linear disassembly with iced-x86.
//!
//! Linear decoding is exact for Go: the Go compiler puts no data (jump tables, literal pools) inside
//! amd64 function bodies, and pads between functions with INT3, which decodes as itself.

use iced_x86::{Decoder, DecoderOptions, Mnemonic};

use super::image::Image;
use super::pclntab::FuncRange;
use super::{GoBinaryError, GoFunction};

/// Most bytes decoded per function. `crypto/tls.(*Conn).Write/Read` are about 2 KiB; a bigger range
/// means broken tables, and stopping early would miss RETs (a missed RET leaks the per-call state of
/// every call that returns through it), so it is an error rather than a truncation.
pub const MAX_FUNCTION_BYTES: u64 = 64 * 1024;

/// Entry and RET file offsets of the function `name` occupying `range`.
pub(super) fn function(
    image: &Image<'_>,
    name: &'static str,
    range: FuncRange,
) -> Result<GoFunction, GoBinaryError> {
    let size = range.end.saturating_sub(range.entry);
    if size == 0 || size > MAX_FUNCTION_BYTES {
        return Err(GoBinaryError::FunctionSize { name, size });
    }
    if !image
        .segment_of(range.entry)
        .is_some_and(|segment| segment.executable)
    {
        return Err(GoBinaryError::NotCode {
            name,
            address: range.entry,
        });
    }
    let body = image.read(range.entry, size, "function body")?;
    let entry = image.file_offset(range.entry)?;
    let mut decoder = Decoder::with_ip(64, body, range.entry, DecoderOptions::NONE);
    let mut returns = Vec::new();
    while decoder.can_decode() {
        let instruction = decoder.decode();
        if instruction.is_invalid() {
            return Err(GoBinaryError::Undecodable {
                name,
                address: instruction.ip(),
            });
        }
        // `ret` and `ret imm16` (near returns; Go never emits far returns).
        if instruction.mnemonic() == Mnemonic::Ret {
            returns.push(entry + (instruction.ip() - range.entry));
        }
    }
    if returns.is_empty() {
        return Err(GoBinaryError::NoReturn { name });
    }
    Ok(GoFunction {
        entry,
        returns,
        address: range.entry,
        size,
    })
}

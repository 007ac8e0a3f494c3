//! Go executables: where `crypto/tls.(*Conn).Write` and `crypto/tls.(*Conn).Read` start and where they
//! return, as file offsets a uprobe attaches to.
//!
//! (Skeleton: the implementation lands with issue 4's Go support.)

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
}

/// What podtap hooks in one Go executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoTls {
    /// `go1.19.8`, from the build info.
    pub version: Option<String>,
    pub abi: GoAbi,
    pub symbols: SymbolSource,
    pub write: GoFunction,
    pub read: GoFunction,
}

#[derive(Debug, thiserror::Error)]
pub enum GoBinaryError {
    #[error("not implemented yet")]
    Unimplemented,
}

/// Inspects an executable's bytes. `Ok(None)`: not a Go binary, or one without `crypto/tls`.
///
/// # Errors
/// A Go binary whose tables do not parse, or whose functions do not disassemble.
pub fn inspect(_data: &[u8]) -> Result<Option<GoTls>, GoBinaryError> {
    Err(GoBinaryError::Unimplemented)
}

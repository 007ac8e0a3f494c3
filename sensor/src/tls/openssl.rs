//! OpenSSL and BoringSSL: the file offsets of `SSL_write`, `SSL_read`, `SSL_write_ex` and `SSL_read_ex`
//! in a shared library or in an executable that links the library statically and kept its symbols.

use object::{Object as _, ObjectSegment as _, ObjectSymbol as _};

use podtap_common::{TLS_FLAG_EX, TLS_OP_READ, TLS_OP_WRITE};

/// The functions hooked, with the attach cookie their probes get (`TLS_OP_*` | `TLS_FLAG_EX`).
pub const FUNCTIONS: [(&str, u64); 4] = [
    ("SSL_write", TLS_OP_WRITE),
    ("SSL_read", TLS_OP_READ),
    ("SSL_write_ex", TLS_OP_WRITE | TLS_FLAG_EX),
    ("SSL_read_ex", TLS_OP_READ | TLS_FLAG_EX),
];

/// One function found in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SslFunction {
    pub name: &'static str,
    /// File offset of the first instruction.
    pub offset: u64,
    /// Attach cookie of its probes.
    pub cookie: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("not an ELF file podtap can read: {0}")]
    Parse(#[from] object::Error),
}

/// The `SSL_*` functions an ELF file defines (not the ones it imports). Empty: the file has no
/// OpenSSL of its own, or it was stripped of its symbols (then its TLS cannot be seen).
///
/// # Errors
/// The bytes are not an ELF file.
pub fn find(data: &[u8]) -> Result<Vec<SslFunction>, ElfError> {
    let file = object::File::parse(data)?;
    let mut found = Vec::new();
    // Shared libraries export them in .dynsym; static copies only have them in .symtab.
    for symbol in file.dynamic_symbols().chain(file.symbols()) {
        if symbol.is_undefined() || symbol.kind() != object::SymbolKind::Text {
            continue;
        }
        let Ok(name) = symbol.name() else {
            continue;
        };
        // Versioned names (`SSL_write@@OPENSSL_3.0.0`) appear in some symbol tables.
        let base = name.split('@').next().unwrap_or(name);
        let Some(&(name, cookie)) = FUNCTIONS.iter().find(|(wanted, _)| *wanted == base) else {
            continue;
        };
        if found.iter().any(|f: &SslFunction| f.name == name) {
            continue;
        }
        if let Some(offset) = file_offset(&file, symbol.address()) {
            found.push(SslFunction {
                name,
                offset,
                cookie,
            });
        }
    }
    Ok(found)
}

/// The file offset of virtual address `address`: through the loadable segment that maps it (uprobes
/// attach to file offsets; symbol tables give addresses).
#[must_use]
pub fn file_offset(file: &object::File<'_>, address: u64) -> Option<u64> {
    file.segments().find_map(|segment| {
        let (offset, size) = segment.file_range();
        let start = segment.address();
        (address >= start && address - start < size).then(|| address - start + offset)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's libssl (the tests' peers use it too).
    fn system_libssl() -> std::path::PathBuf {
        let candidates = [
            "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "/lib/x86_64-linux-gnu/libssl.so.3",
        ];
        candidates
            .iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists())
            .expect("libssl.so.3 is installed (curl and nginx depend on it)")
    }

    #[test]
    fn finds_the_four_functions_in_libssl() {
        let data = std::fs::read(system_libssl()).expect("readable");
        let found = find(&data).expect("an ELF file");
        let mut names: Vec<&str> = found.iter().map(|f| f.name).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["SSL_read", "SSL_read_ex", "SSL_write", "SSL_write_ex"]
        );
        // Each offset is the symbol's address mapped through its segment: the bytes there are the same
        // in the file as nm's address says (for libssl the text segment's offset equals its address).
        let file = object::File::parse(&*data).expect("ELF");
        for function in &found {
            let symbol = file
                .dynamic_symbols()
                .find(|s| s.name().ok() == Some(function.name))
                .expect("exported");
            assert_eq!(file_offset(&file, symbol.address()), Some(function.offset));
        }
    }

    #[test]
    fn an_executable_that_imports_ssl_has_none_of_its_own() {
        let data = std::fs::read("/usr/bin/curl").expect("curl is installed");
        assert_eq!(find(&data).expect("an ELF file"), Vec::new());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(find(b"not an elf").is_err());
        let data = std::fs::read(system_libssl()).expect("readable");
        for cut in [16, 64, 1000, data.len() / 2] {
            let _ = find(&data[..cut]);
        }
    }
}

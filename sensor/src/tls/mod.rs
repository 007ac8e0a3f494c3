//! TLS plaintext: finding the TLS code every process on the node runs (OpenSSL/BoringSSL libraries and
//! static copies with symbols, Go's `crypto/tls`), and hooking it with uprobes, one attach per file.
//!
//! - `go_binary`: where `crypto/tls.(*Conn).Write/Read` start and return in a Go executable.
pub mod go_binary;

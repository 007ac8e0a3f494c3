//! TLS plaintext: finding the TLS code every process on the node runs (OpenSSL/BoringSSL libraries and
//! static copies with symbols, Go's `crypto/tls`), and hooking it with uprobes, one attach per file.
//!
//! - `discover`: the files of a process that may hold TLS code (`/proc/<pid>/maps`, its executable).
//! - `openssl` / `go_binary`: where the functions to hook are in such a file.
//! - `hooks`: attaches and detaches the probes as processes come and go.
//! - `kernel_offsets`: the kernel struct offset the Go probes need, from BTF.
pub mod discover;
pub mod go_binary;
pub mod hooks;
pub mod kernel_offsets;
mod mapped;
pub mod openssl;
pub mod report;

pub use hooks::{HookStatus, ReportRow, TlsCode, TlsHookStats, TlsHooks};

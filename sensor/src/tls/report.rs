//! `podtap check --tls`: one line per process and TLS file, saying what podtap found and whether it
//! sees the plaintext.

use std::io::Write;

use super::{
    go_binary::GoAbi,
    hooks::{HookStatus, ReportRow, TlsCode},
};
use crate::{host::procfs::ProcFs, k8s::cgroup::CgroupInfo};

/// Writes the table. `proc` names each process's pod (from its cgroup).
///
/// # Errors
/// Writing fails.
pub fn render(rows: &[ReportRow], proc: &ProcFs, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{:<8} {:<16} {:<38} {:<8} {:<40} FILE",
        "PID", "PROCESS", "POD UID", "HOOKED", "TLS CODE"
    )?;
    for row in rows {
        let pod = proc
            .cgroup_v2_path(row.pid)
            .ok()
            .flatten()
            .and_then(|path| CgroupInfo::from_path(&path).pod_uid)
            .unwrap_or_else(|| "-".into());
        let (hooked, why) = match &row.status {
            HookStatus::Hooked { probes } => (format!("yes ({probes})"), None),
            HookStatus::Unhookable(why) => ("no".to_owned(), Some(why.as_str())),
        };
        writeln!(
            out,
            "{:<8} {:<16} {:<38} {:<8} {:<40} {}",
            row.pid,
            row.process,
            pod,
            hooked,
            describe(row.code.as_ref()),
            row.path
        )?;
        if let Some(why) = why {
            writeln!(out, "{:<8} {:<16} why: {why}", "", "")?;
        }
    }
    if rows.is_empty() {
        writeln!(out, "(no process maps a TLS library or runs Go crypto/tls)")?;
    }
    Ok(())
}

fn describe(code: Option<&TlsCode>) -> String {
    match code {
        None => "TLS library".into(),
        Some(TlsCode::OpenSsl { functions }) => format!("OpenSSL ({})", functions.join(",")),
        Some(TlsCode::Go {
            version,
            abi,
            stripped,
        }) => format!(
            "Go {} {} ABI{}",
            version.as_deref().unwrap_or("(version unknown)"),
            match abi {
                GoAbi::Register => "register",
                GoAbi::Stack => "stack",
            },
            if *stripped { ", stripped" } else { "" }
        ),
    }
}

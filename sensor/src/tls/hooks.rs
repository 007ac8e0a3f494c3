//! Keeps a uprobe on the TLS code of every process on the node: one set of probes per file (inode),
//! attached when the first process mapping it is found and detached when the last one exits.
//!
//! In: the pids to look at (all of them at start, then exec events, the owners of new sockets, and a
//! slow periodic sweep that catches libraries loaded late with `dlopen`). Out: probes attached through
//! `EbpfCapture`, counters, and a per-process report for `podtap check --tls`. Bounded: files by the
//! processes alive, the negative cache and the scan queue by fixed sizes.

use std::{
    collections::{HashMap, VecDeque},
    num::NonZeroUsize,
    time::{Duration, Instant},
};

use lru::LruCache;
use podtap_common::{TLS_FLAG_GO_STACK_ABI, TLS_OP_READ, TLS_OP_WRITE};

use super::{
    discover::{self, Candidate, FileId, Role},
    go_binary::{self, GoAbi, GoTls},
    mapped::MappedFile,
    openssl,
};
use crate::{
    capture::ebpf::{detach_all, EbpfCapture, TlsProgram, UprobeLink},
    host::procfs::ProcFs,
};

/// After an exec, when to look at the process again: its loader maps the libraries right after.
const SCANS_AFTER_EXEC: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_millis(20),
    Duration::from_millis(200),
    Duration::from_secs(1),
];
/// A process that opens a socket is looked at again at most this often.
const RESCAN_ON_SOCKET_AFTER: Duration = Duration::from_secs(2);
/// Every process is looked at this often (libraries `dlopen`ed long after start, missed events).
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(60);
const MAX_QUEUED_SCANS: usize = 8192;
/// Files known to hold no TLS code, remembered so short-lived processes do not make podtap read their
/// executable again and again.
const NOT_TLS_REMEMBERED: usize = 4096;
/// A file no process maps any more keeps its probes this long: the same program is often started
/// again (jobs, clients run in a loop), and detaching costs the kernel a grace period per probe.
const IDLE_DETACH_AFTER: Duration = Duration::from_secs(120);
/// Files kept hooked without users at most; beyond, the longest idle are detached.
const MAX_IDLE_FILES: usize = 64;

/// What a file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsCode {
    /// OpenSSL or BoringSSL with its symbols: the functions found.
    OpenSsl { functions: Vec<&'static str> },
    /// Go's crypto/tls.
    Go {
        version: Option<String>,
        abi: GoAbi,
        stripped: bool,
    },
}

/// Whether podtap sees the plaintext of a file's TLS code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookStatus {
    /// Probes attached.
    Hooked { probes: usize },
    /// TLS code that cannot be hooked, and why.
    Unhookable(String),
}

struct TlsFile {
    shown_path: String,
    code: Option<TlsCode>,
    status: HookStatus,
    links: Vec<UprobeLink>,
    /// Processes known to map it.
    users: usize,
    /// Since when no process maps it.
    idle_since: Option<Instant>,
}

struct Process {
    files: Vec<FileId>,
    last_scan: Instant,
}

/// Counters for podtap's own metrics and the summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsHookStats {
    /// Files with probes attached now.
    pub files_hooked: u64,
    /// Files with TLS code podtap could not hook (stripped libraries, attach errors).
    pub files_unhookable: u64,
    pub probes_attached: u64,
    pub process_scans: u64,
    pub scans_dropped: u64,
}

/// One line of `podtap check --tls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRow {
    pub pid: u32,
    pub process: String,
    pub path: String,
    pub code: Option<TlsCode>,
    pub status: HookStatus,
}

pub struct TlsHooks {
    proc: ProcFs,
    files: HashMap<FileId, TlsFile>,
    not_tls: LruCache<FileId, ()>,
    processes: HashMap<u32, Process>,
    queue: VecDeque<(Instant, u32)>,
    last_sweep: Instant,
    stats: TlsHookStats,
    /// Probes of files no process uses any more, detached in the background (`detach_all` takes a
    /// grace period), and the threads doing it.
    retired: Vec<UprobeLink>,
    detaching: Vec<std::thread::JoinHandle<()>>,
}

impl TlsHooks {
    #[must_use]
    pub fn new(proc: ProcFs) -> Self {
        Self {
            proc,
            files: HashMap::new(),
            not_tls: LruCache::new(
                NonZeroUsize::new(NOT_TLS_REMEMBERED).unwrap_or(NonZeroUsize::MIN),
            ),
            processes: HashMap::new(),
            queue: VecDeque::new(),
            last_sweep: Instant::now(),
            stats: TlsHookStats::default(),
            retired: Vec::new(),
            detaching: Vec::new(),
        }
    }

    /// Detaches every probe, in parallel, and waits for it (podtap's exit: one by one, the kernel
    /// would take a grace period each).
    pub fn shutdown(mut self) {
        let mut links = std::mem::take(&mut self.retired);
        for (_, file) in self.files.drain() {
            links.extend(file.links);
        }
        detach_all(links);
        for handle in self.detaching.drain(..) {
            let _ = handle.join();
        }
    }

    #[must_use]
    pub fn stats(&self) -> TlsHookStats {
        let mut stats = self.stats;
        stats.files_hooked = self
            .files
            .values()
            .filter(|f| matches!(f.status, HookStatus::Hooked { .. }))
            .count() as u64;
        stats.files_unhookable = self
            .files
            .values()
            .filter(|f| matches!(f.status, HookStatus::Unhookable(_)))
            .count() as u64;
        stats
    }

    /// Looks at every process now.
    pub fn scan_all(&mut self, capture: &mut EbpfCapture) {
        self.last_sweep = Instant::now();
        let pids = discover::pids(&self.proc);
        // Processes whose exit was missed: their files lose them as users, as at an exit.
        let alive: std::collections::HashSet<u32> = pids.iter().copied().collect();
        let gone: Vec<u32> = self
            .processes
            .keys()
            .copied()
            .filter(|pid| !alive.contains(pid))
            .collect();
        for pid in gone {
            self.exit(pid);
        }
        for pid in pids {
            self.scan(capture, pid);
        }
    }

    /// A process ran a new program.
    pub fn exec(&mut self, pid: u32, now: Instant) {
        log::trace!("TLS: exec {pid}");
        for delay in SCANS_AFTER_EXEC {
            self.enqueue(now + delay, pid);
        }
    }

    /// A process used a socket: it may have loaded a TLS library since it was last looked at.
    pub fn socket_used(&mut self, pid: u32, now: Instant) {
        let due = self
            .processes
            .get(&pid)
            .is_none_or(|p| now.duration_since(p.last_scan) >= RESCAN_ON_SOCKET_AFTER);
        if due {
            self.enqueue(now, pid);
        }
    }

    /// A process exited: its files lose a user; a file without users loses its probes.
    pub fn exit(&mut self, pid: u32) {
        if let Some(process) = self.processes.remove(&pid) {
            for id in process.files {
                self.release(id);
            }
        }
    }

    /// Runs the scans that are due, and the periodic sweep.
    pub fn run_due(&mut self, capture: &mut EbpfCapture, now: Instant) {
        if now.duration_since(self.last_sweep) >= FULL_SWEEP_EVERY {
            self.scan_all(capture);
        }
        while self.queue.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, pid)) = self.queue.pop_front() {
                self.scan(capture, pid);
            }
        }
        self.retire_idle(now);
        self.detaching.retain(|handle| !handle.is_finished());
        if !self.retired.is_empty() {
            let links = std::mem::take(&mut self.retired);
            self.detaching
                .push(std::thread::spawn(move || detach_all(links)));
        }
    }

    /// What every process maps and whether it is hooked.
    #[must_use]
    pub fn report(&self) -> Vec<ReportRow> {
        let mut rows = Vec::new();
        let mut pids: Vec<&u32> = self.processes.keys().collect();
        pids.sort_unstable();
        for pid in pids {
            let Some(process) = self.processes.get(pid) else {
                continue;
            };
            for id in &process.files {
                let Some(file) = self.files.get(id) else {
                    continue;
                };
                rows.push(ReportRow {
                    pid: *pid,
                    process: self.proc.comm(*pid).unwrap_or_default(),
                    path: file.shown_path.clone(),
                    code: file.code.clone(),
                    status: file.status.clone(),
                });
            }
        }
        rows
    }

    fn enqueue(&mut self, due: Instant, pid: u32) {
        if self.queue.len() >= MAX_QUEUED_SCANS {
            self.queue.pop_front();
            self.stats.scans_dropped += 1;
        }
        // Kept in due order: most entries are appended at the end.
        let at = self.queue.partition_point(|(d, _)| *d <= due);
        self.queue.insert(at, (due, pid));
    }

    fn scan(&mut self, capture: &mut EbpfCapture, pid: u32) {
        if pid == std::process::id() {
            return;
        }
        self.stats.process_scans += 1;
        let candidates = match discover::candidates(&self.proc, pid) {
            Ok(candidates) => candidates,
            Err(error) => {
                if !error.is_gone() {
                    log::debug!("TLS: pid {pid}: {error}");
                }
                self.exit(pid);
                return;
            }
        };
        log::trace!(
            "TLS: pid {pid}: {:?}",
            candidates.iter().map(|c| &c.shown_path).collect::<Vec<_>>()
        );
        let mut files = Vec::new();
        for candidate in candidates {
            if self.not_tls.get(&candidate.id).is_some() {
                continue;
            }
            if !self.files.contains_key(&candidate.id) {
                match self.look_at(capture, &candidate) {
                    Some(file) => {
                        self.files.insert(candidate.id, file);
                    }
                    None => {
                        self.not_tls.put(candidate.id, ());
                        continue;
                    }
                }
            }
            files.push(candidate.id);
        }
        files.sort_unstable();
        let previous = self.processes.insert(
            pid,
            Process {
                files: files.clone(),
                last_scan: Instant::now(),
            },
        );
        // Users are counted per (process, file): count the new ones, release the ones it no longer maps
        // (a new program after exec).
        let before = previous.map(|p| p.files).unwrap_or_default();
        for id in &files {
            if !before.contains(id) {
                if let Some(file) = self.files.get_mut(id) {
                    file.users += 1;
                    file.idle_since = None;
                }
            }
        }
        for id in before {
            if !files.contains(&id) {
                self.release(id);
            }
        }
    }

    fn release(&mut self, id: FileId) {
        let Some(file) = self.files.get_mut(&id) else {
            return;
        };
        file.users = file.users.saturating_sub(1);
        if file.users == 0 {
            file.idle_since = Some(Instant::now());
        }
    }

    /// Detaches (in the background) files idle for long, and the longest idle beyond the bound.
    fn retire_idle(&mut self, now: Instant) {
        let mut idle: Vec<(Instant, FileId)> = self
            .files
            .iter()
            .filter_map(|(id, file)| file.idle_since.map(|since| (since, *id)))
            .collect();
        idle.sort_unstable();
        let excess = idle.len().saturating_sub(MAX_IDLE_FILES);
        for (i, (since, id)) in idle.into_iter().enumerate() {
            if i >= excess && now.duration_since(since) < IDLE_DETACH_AFTER {
                break;
            }
            if let Some(file) = self.files.remove(&id) {
                log::debug!("TLS: {} unused: probes detached", file.shown_path);
                self.retired.extend(file.links);
            }
        }
    }

    /// Reads a candidate file and hooks its TLS code; `None` when it has none.
    fn look_at(&mut self, capture: &mut EbpfCapture, candidate: &Candidate) -> Option<TlsFile> {
        let file = match MappedFile::open(&candidate.open_path) {
            Ok(file) => file,
            Err(error) => {
                log::debug!("TLS: {}: {error}", candidate.open_path.display());
                return None;
            }
        };
        let data = file.bytes();
        let (code, plan) = match candidate.role {
            Role::SharedLibrary => match openssl::find(data) {
                Ok(functions) if functions.is_empty() => {
                    return Some(self.unhookable(
                        candidate,
                        None,
                        "a libssl without SSL_read/SSL_write symbols".into(),
                    ))
                }
                Ok(functions) => ssl_plan(&functions),
                Err(error) => return Some(self.unhookable(candidate, None, error.to_string())),
            },
            Role::Executable => match go_binary::inspect(data) {
                Ok(Some(go)) => go_plan(&go),
                Ok(None) => match openssl::find(data) {
                    Ok(functions) if !functions.is_empty() => ssl_plan(&functions),
                    _ => return None,
                },
                Err(error) => {
                    return Some(self.unhookable(
                        candidate,
                        None,
                        format!("a Go executable podtap cannot read: {error}"),
                    ))
                }
            },
        };
        drop(file);
        let mut links = Vec::with_capacity(plan.len());
        for probe in &plan {
            match capture.attach_uprobe(
                probe.program,
                &candidate.open_path,
                probe.offset,
                probe.cookie,
            ) {
                Ok(link) => links.push(link),
                Err(error) => {
                    self.retired.extend(links);
                    return Some(self.unhookable(candidate, Some(code), error.to_string()));
                }
            }
        }
        self.stats.probes_attached += links.len() as u64;
        log::info!(
            "TLS: hooked {} ({:?}, {} probes)",
            candidate.shown_path,
            code,
            links.len()
        );
        Some(TlsFile {
            shown_path: candidate.shown_path.clone(),
            code: Some(code),
            status: HookStatus::Hooked {
                probes: links.len(),
            },
            links,
            users: 0,
            idle_since: None,
        })
    }

    fn unhookable(&mut self, candidate: &Candidate, code: Option<TlsCode>, why: String) -> TlsFile {
        log::info!("TLS: cannot hook {}: {why}", candidate.shown_path);
        TlsFile {
            shown_path: candidate.shown_path.clone(),
            code,
            status: HookStatus::Unhookable(why),
            links: Vec::new(),
            users: 0,
            idle_since: None,
        }
    }
}

/// One uprobe to attach.
struct Probe {
    program: TlsProgram,
    offset: u64,
    cookie: u64,
}

fn ssl_plan(functions: &[openssl::SslFunction]) -> (TlsCode, Vec<Probe>) {
    let mut plan = Vec::new();
    for function in functions {
        for program in [TlsProgram::SslEntry, TlsProgram::SslReturn] {
            plan.push(Probe {
                program,
                offset: function.offset,
                cookie: function.cookie,
            });
        }
    }
    let code = TlsCode::OpenSsl {
        functions: functions.iter().map(|f| f.name).collect(),
    };
    (code, plan)
}

fn go_plan(go: &GoTls) -> (TlsCode, Vec<Probe>) {
    let abi_flag = match go.abi {
        GoAbi::Register => 0,
        GoAbi::Stack => TLS_FLAG_GO_STACK_ABI,
    };
    let mut plan = Vec::new();
    for (function, op) in [(&go.write, TLS_OP_WRITE), (&go.read, TLS_OP_READ)] {
        plan.push(Probe {
            program: TlsProgram::GoEntry,
            offset: function.entry,
            cookie: op | abi_flag,
        });
        for &offset in &function.returns {
            plan.push(Probe {
                program: TlsProgram::GoReturn,
                offset,
                cookie: op | abi_flag,
            });
        }
    }
    let code = TlsCode::Go {
        version: go.version.clone(),
        abi: go.abi,
        stripped: go.symbols == go_binary::SymbolSource::Pclntab,
    };
    (code, plan)
}

//! TLS plaintext from uprobes, put on the socket it travels over.
//!
//! Without kprobes there is no hook that sees both a TLS object (`SSL*`, `*tls.Conn`) and its socket. So
//! the entry probes store the call's arguments (OpenSSL: per thread; Go: per goroutine, because a
//! goroutine may come back on another thread), the socket tracepoints that fire *inside* the call look
//! the call up and tie its TLS object to the socket (`TLS_CONNS`), and the return probes emit the
//! plaintext on that socket. OpenSSL keeps reading ahead, so a read served from its buffer does no
//! socket operation: the tie made by an earlier call is what places it.

use core::{ffi::c_void, mem::size_of, ptr::addr_of_mut};

use aya_ebpf::{
    helpers::generated::{
        bpf_get_attach_cookie, bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id,
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_user,
    },
    macros::{map, tracepoint, uprobe, uretprobe},
    maps::{LruHashMap, RingBuf},
    programs::{ProbeContext, RetProbeContext, TracePointContext},
    EbpfContext,
};
use podtap_common::{
    PacketHeader, ProcessEvent, COUNTER_FILTERED, COUNTER_PROCESS_RINGBUF_FULL,
    COUNTER_TLS_RECORDS, COUNTER_TLS_RINGBUF_FULL, COUNTER_TLS_UNBOUND, DIR_EGRESS, DIR_INGRESS,
    EVENT_PROCESS, EVENT_TLS_DATA, LAYER_TLS, MAX_PAYLOAD_LIMIT, PROCESS_EXEC, PROCESS_EXIT,
    PROTO_TCP, TLS_FLAG_EX, TLS_FLAG_GO_STACK_ABI, TLS_OP_READ,
};

use crate::{
    capped, count, filtered_out, output_record, read_kernel, skipped_prefix, verifier_len, AF_INET,
    AF_INET6, SCRATCH, SCRATCH_TLS, SELF_TGID,
};

/// `offsetof(task_struct, thread.fsbase)`, from the kernel's BTF (set by the loader; 0: unknown, and
/// then stack-ABI Go cannot be followed).
#[unsafe(no_mangle)]
static TASK_FSBASE_OFFSET: u64 = 0;

/// The arguments of a TLS call in progress.
#[repr(C)]
#[derive(Clone, Copy)]
struct TlsCall {
    /// The TLS object: `SSL*` or `*tls.Conn`.
    conn: u64,
    buf: u64,
    /// `SSL_*_ex`: where the byte count is written (0 otherwise).
    count_ptr: u64,
    /// `TLS_OP_READ` or `TLS_OP_WRITE`.
    op: u64,
    /// When the call began (`bpf_ktime_get_ns`).
    entered: u64,
}

/// A goroutine of a process.
#[repr(C)]
#[derive(Clone, Copy)]
struct GoroutineKey {
    tgid: u32,
    _pad: u32,
    goroutine: u64,
}

/// A TLS object of a process.
#[repr(C)]
#[derive(Clone, Copy)]
struct TlsConnKey {
    tgid: u32,
    _pad: u32,
    conn: u64,
}

/// The socket a TLS object talks over, and how much plaintext went each way so far.
#[repr(C)]
#[derive(Clone, Copy)]
struct TlsConn {
    cookie: u64,
    /// Local and remote address (IPv4 in the first 4 bytes), ports in host order.
    local: [u8; 16],
    remote: [u8; 16],
    local_port: u16,
    remote_port: u16,
    family: u8,
    _pad: [u8; 3],
    /// Plaintext bytes so far, per direction (`DIR_*`): the records' `seq`.
    seq: [u32; 2],
}

/// OpenSSL calls in progress, by thread.
#[map]
static SSL_CALLS: LruHashMap<u64, TlsCall> = LruHashMap::with_max_entries(16_384, 0);

/// Go calls in progress, by goroutine.
#[map]
static GO_CALLS: LruHashMap<GoroutineKey, TlsCall> = LruHashMap::with_max_entries(16_384, 0);

/// Processes running hooked Go code: only their socket operations need the goroutine lookup.
#[map]
static GO_PROCESSES: LruHashMap<u32, u8> = LruHashMap::with_max_entries(8192, 0);

/// Process exec/exit records, apart from `EVENTS`: a flood of packets must not cost podtap the news of a
/// new program to hook.
#[map]
static PROCESS_EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// TLS object -> socket.
#[map]
static TLS_CONNS: LruHashMap<TlsConnKey, TlsConn> = LruHashMap::with_max_entries(65_536, 0);

/// Offsets in `struct sock_common` (unchanged since Linux 4.x): the IPv4 address pair, the port pair
/// (`skc_dport` big-endian, `skc_num` host order), and the IPv6 addresses.
const SKC_DADDR: usize = 0;
const SKC_RCV_SADDR: usize = 4;
const SKC_DPORT: usize = 12;
const SKC_NUM: usize = 14;
const SKC_V6_DADDR: usize = 56;
const SKC_V6_RCV_SADDR: usize = 72;

#[inline(always)]
fn self_tgid() -> u32 {
    // SAFETY: a global the loader may rewrite before load.
    unsafe { core::ptr::read_volatile(&SELF_TGID) }
}

/// Whether the capture filter leaves out the current process: its TLS calls are not followed at all
/// (no state, no record), and counted once per call.
#[inline(always)]
fn current_filtered_out() -> bool {
    // SAFETY: helper with a plain integer argument.
    if filtered_out(|level| unsafe { bpf_get_current_ancestor_cgroup_id(level) }) {
        count(COUNTER_FILTERED, 1);
        return true;
    }
    false
}

#[inline(always)]
unsafe fn read_user<T: Copy + Default>(src: u64) -> Result<T, i64> {
    let mut value = T::default();
    // SAFETY: the helper checks the user address itself; the destination is a local of size T.
    let ret = unsafe {
        bpf_probe_read_user(
            core::ptr::from_mut(&mut value).cast::<c_void>(),
            size_of::<T>() as u32,
            src as *const c_void,
        )
    };
    if ret < 0 {
        Err(ret)
    } else {
        Ok(value)
    }
}

/// The goroutine running on this thread: Go keeps it in thread-local storage, at FS base - 8, on
/// amd64 (and, since Go 1.17, in r14 too, which the probes prefer when they have the registers).
#[inline(always)]
fn current_goroutine() -> Option<u64> {
    // SAFETY: a global the loader may rewrite before load.
    let offset = unsafe { core::ptr::read_volatile(&TASK_FSBASE_OFFSET) };
    if offset == 0 {
        return None;
    }
    // SAFETY: helper without arguments; the result is only read through the checked helpers.
    let task = unsafe { bpf_get_current_task() };
    // SAFETY: probe read of a kernel address (checked by the helper).
    let fsbase: u64 = unsafe { read_kernel((task + offset) as *const u8) }.ok()?;
    if fsbase < 8 {
        return None;
    }
    // SAFETY: probe read of a user address (checked by the helper).
    let goroutine: u64 = unsafe { read_user(fsbase - 8) }.ok()?;
    (goroutine != 0).then_some(goroutine)
}

// ---- OpenSSL ----

/// Entry of `SSL_write(ssl, buf, num)`, `SSL_read(ssl, buf, num)` and their `_ex` forms (4th argument:
/// where the byte count goes). The attach cookie says which (`TLS_OP_*` | `TLS_FLAG_EX`).
#[uprobe]
pub fn podtap_ssl_entry(ctx: ProbeContext) -> u32 {
    // SAFETY: helper without arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    if (pid_tgid >> 32) as u32 == self_tgid() || current_filtered_out() {
        return 0;
    }
    // SAFETY: the program's own context.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let (Some(conn), Some(buf)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return 0;
    };
    let count_ptr = if cookie & TLS_FLAG_EX != 0 {
        ctx.arg::<u64>(3).unwrap_or(0)
    } else {
        0
    };
    let call = TlsCall {
        conn,
        buf,
        count_ptr,
        op: cookie & TLS_OP_READ,
        // SAFETY: helper without arguments.
        entered: unsafe { bpf_ktime_get_ns() },
    };
    let _ = SSL_CALLS.insert(&pid_tgid, &call, 0);
    0
}

/// Return of the same functions: `int` > 0 is the byte count; for `_ex`, 1 means success and the
/// count is behind the pointer saved at entry.
#[uretprobe]
pub fn podtap_ssl_return(ctx: RetProbeContext) -> u32 {
    // SAFETY: helper without arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    // SAFETY: plain map lookup, value copied.
    let Some(call) = (unsafe { SSL_CALLS.get(&pid_tgid) }).copied() else {
        return 0;
    };
    let _ = SSL_CALLS.remove(&pid_tgid);
    // The functions return C `int`: only the low 32 bits of rax are the value.
    let ret = ctx.ret::<u64>() as u32 as i32;
    let bytes = if call.count_ptr != 0 {
        if ret == 1 {
            // SAFETY: probe read of a user address (checked by the helper).
            unsafe { read_user::<u64>(call.count_ptr) }.unwrap_or(0)
        } else {
            0
        }
    } else if ret > 0 {
        ret as u64
    } else {
        0
    };
    if bytes > 0 {
        emit((pid_tgid >> 32) as u32, &call, bytes);
    }
    0
}

// ---- Go crypto/tls ----

/// Entry of `crypto/tls.(*Conn).Write(b)` / `Read(b)`. Register ABI: receiver in rax, `b`'s pointer
/// in rbx, goroutine in r14. Stack ABI: receiver at sp+8, `b`'s pointer at sp+16.
#[uprobe]
pub fn podtap_go_tls_entry(ctx: ProbeContext) -> u32 {
    // SAFETY: helper without arguments.
    let tgid = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    if tgid == self_tgid() || current_filtered_out() {
        return 0;
    }
    // SAFETY: the program's own context.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    // SAFETY: the context of a uprobe is the user's saved registers.
    let regs = unsafe { &*ctx.regs };
    let (conn, buf, goroutine) = if cookie & TLS_FLAG_GO_STACK_ABI != 0 {
        let sp = regs.rsp;
        // SAFETY: probe reads of user addresses (checked by the helper).
        let conn = unsafe { read_user::<u64>(sp + 8) };
        let buf = unsafe { read_user::<u64>(sp + 16) };
        match (conn, buf, current_goroutine()) {
            (Ok(conn), Ok(buf), Some(goroutine)) => (conn, buf, goroutine),
            _ => return 0,
        }
    } else {
        (regs.rax, regs.rbx, regs.r14)
    };
    let key = GoroutineKey {
        tgid,
        _pad: 0,
        goroutine,
    };
    let call = TlsCall {
        conn,
        buf,
        count_ptr: 0,
        op: cookie & TLS_OP_READ,
        // SAFETY: helper without arguments.
        entered: unsafe { bpf_ktime_get_ns() },
    };
    let _ = GO_CALLS.insert(&key, &call, 0);
    // SAFETY: plain map lookup.
    if unsafe { GO_PROCESSES.get(&tgid) }.is_none() {
        let _ = GO_PROCESSES.insert(&tgid, &1u8, 0);
    }
    0
}

/// A RET instruction of the same functions: `n` is in rax (register ABI) or at sp+40, after the
/// receiver and the 3-word slice (stack ABI; at the RET the frame is gone and sp is as at entry).
#[uprobe]
pub fn podtap_go_tls_return(ctx: ProbeContext) -> u32 {
    // SAFETY: helper without arguments.
    let tgid = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    // SAFETY: the program's own context.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    // SAFETY: the context of a uprobe is the user's saved registers.
    let regs = unsafe { &*ctx.regs };
    let (goroutine, n) = if cookie & TLS_FLAG_GO_STACK_ABI != 0 {
        let Some(goroutine) = current_goroutine() else {
            return 0;
        };
        // SAFETY: probe read of a user address (checked by the helper).
        let n = unsafe { read_user::<i64>(regs.rsp + 40) }.unwrap_or(0);
        (goroutine, n)
    } else {
        (regs.r14, regs.rax as i64)
    };
    let key = GoroutineKey {
        tgid,
        _pad: 0,
        goroutine,
    };
    // SAFETY: plain map lookup, value copied.
    let Some(call) = (unsafe { GO_CALLS.get(&key) }).copied() else {
        return 0;
    };
    let _ = GO_CALLS.remove(&key);
    if n > 0 {
        emit(tgid, &call, n as u64);
    }
    0
}

// ---- the tie between TLS objects and sockets ----

/// Called from the socket tracepoints (process context, inside `sendmsg`/`recvmsg`): if this thread
/// is inside a hooked TLS call, the call's TLS object talks over `sk`.
#[inline(always)]
pub(crate) fn bind_socket(sk: *mut c_void, family: u16, cookie: u64, pid_tgid: u64) {
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: plain map lookups, values copied.
    let conn = if let Some(call) = unsafe { SSL_CALLS.get(&pid_tgid) } {
        call.conn
    } else if unsafe { GO_PROCESSES.get(&tgid) }.is_some() {
        let Some(goroutine) = current_goroutine() else {
            return;
        };
        let key = GoroutineKey {
            tgid,
            _pad: 0,
            goroutine,
        };
        match unsafe { GO_CALLS.get(&key) } {
            Some(call) => call.conn,
            None => return,
        }
    } else {
        return;
    };
    let key = TlsConnKey {
        tgid,
        _pad: 0,
        conn,
    };
    // SAFETY: plain map lookup.
    if let Some(known) = unsafe { TLS_CONNS.get(&key) } {
        if known.cookie == cookie {
            return;
        }
        // A TLS object reused for another connection (freed and allocated again): start over.
    }
    let base = sk.cast::<u8>();
    let mut conn = TlsConn {
        cookie,
        local: [0; 16],
        remote: [0; 16],
        local_port: 0,
        remote_port: 0,
        family: 4,
        _pad: [0; 3],
        seq: [0; 2],
    };
    // SAFETY: probe reads of fields of the kernel socket the tracepoint handed over.
    unsafe {
        let Ok(ports) = read_kernel::<[u8; 4]>(base.wrapping_add(SKC_DPORT)) else {
            return;
        };
        conn.remote_port = u16::from_be_bytes([ports[0], ports[1]]);
        let Ok(num) = read_kernel::<u16>(base.wrapping_add(SKC_NUM)) else {
            return;
        };
        conn.local_port = num;
        if family == AF_INET {
            let (Ok(remote), Ok(local)) = (
                read_kernel::<[u8; 4]>(base.wrapping_add(SKC_DADDR)),
                read_kernel::<[u8; 4]>(base.wrapping_add(SKC_RCV_SADDR)),
            ) else {
                return;
            };
            conn.remote[..4].copy_from_slice(&remote);
            conn.local[..4].copy_from_slice(&local);
        } else if family == AF_INET6 {
            let (Ok(remote), Ok(local)) = (
                read_kernel::<[u8; 16]>(base.wrapping_add(SKC_V6_DADDR)),
                read_kernel::<[u8; 16]>(base.wrapping_add(SKC_V6_RCV_SADDR)),
            ) else {
                return;
            };
            conn.remote = remote;
            conn.local = local;
            conn.family = 6;
        } else {
            return;
        }
    }
    let _ = TLS_CONNS.insert(&key, &conn, 0);
}

/// Emits `bytes` bytes of plaintext at `call.buf` on the socket `call.conn` is tied to.
#[inline(always)]
fn emit(tgid: u32, call: &TlsCall, bytes: u64) {
    let key = TlsConnKey {
        tgid,
        _pad: 0,
        conn: call.conn,
    };
    let Some(conn) = TLS_CONNS.get_ptr_mut(&key) else {
        count(COUNTER_TLS_UNBOUND, 1);
        return;
    };
    let payload_len = if bytes > u64::from(u32::MAX) {
        u32::MAX
    } else {
        bytes as u32
    };
    let direction = if call.op == TLS_OP_READ {
        DIR_INGRESS
    } else {
        DIR_EGRESS
    };
    // SAFETY: a map value pointer, valid for this run; only this direction's counter is written
    // (one call per direction of a TLS object runs at a time).
    let (seq, info) = unsafe {
        let seq = (*conn).seq[direction as usize & 1];
        (*conn).seq[direction as usize & 1] = seq.wrapping_add(payload_len);
        (seq, *conn)
    };
    let Some(skipped) =
        skipped_prefix(info.cookie, direction, LAYER_TLS, true, seq, payload_len, 0)
    else {
        return;
    };
    let Some(scratch) = SCRATCH.get_ptr_mut(SCRATCH_TLS) else {
        return;
    };
    // SAFETY: the per-CPU scratch slot is ours for the duration of this program run.
    let header: &mut PacketHeader = unsafe { &mut (*scratch).header };
    header.kind = EVENT_TLS_DATA;
    // A write's bytes are the application's from the moment it calls; a read's once it returns. So
    // a request written is never later than the response read back, whichever probe reports first
    // (userspace orders by this time).
    header.ts_ns = if direction == DIR_EGRESS {
        call.entered
    } else {
        // SAFETY: helper without arguments.
        unsafe { bpf_ktime_get_ns() }
    };
    header.cookie = info.cookie;
    // SAFETY: helper without arguments.
    header.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    header.seq = seq;
    header.payload_len = payload_len;
    header.skipped = skipped;
    header.pid = tgid;
    if direction == DIR_EGRESS {
        header.saddr = info.local;
        header.daddr = info.remote;
        header.sport = info.local_port;
        header.dport = info.remote_port;
    } else {
        header.saddr = info.remote;
        header.daddr = info.local;
        header.sport = info.remote_port;
        header.dport = info.local_port;
    }
    header.family = info.family;
    header.direction = direction;
    header.tcp_flags = 0;
    header.protocol = PROTO_TCP;
    header._pad2 = 0;

    let want = capped(payload_len - skipped);
    let mut captured: u32 = 0;
    if want > 0 {
        // SAFETY: scratch is a valid per-CPU slot with MAX_PAYLOAD_LIMIT bytes of room; the length is
        // in [1, MAX_PAYLOAD_LIMIT].
        let payload: *mut [u8; MAX_PAYLOAD_LIMIT] = unsafe { addr_of_mut!((*scratch).payload) };
        let len = verifier_len(want);
        let ret = unsafe {
            bpf_probe_read_user(
                payload.cast::<c_void>(),
                len,
                (call.buf + u64::from(skipped)) as *const c_void,
            )
        };
        if ret == 0 {
            captured = want;
        }
    }
    if output_record(scratch, captured) {
        count(COUNTER_TLS_RECORDS, 1);
    } else {
        count(COUNTER_TLS_RINGBUF_FULL, 1);
    }
}

// ---- processes ----

#[tracepoint]
pub fn podtap_exec(_ctx: TracePointContext) -> u32 {
    // SAFETY: helper without arguments.
    let tgid = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    process_event(PROCESS_EXEC, tgid);
    0
}

#[tracepoint]
pub fn podtap_exit(_ctx: TracePointContext) -> u32 {
    // SAFETY: helper without arguments.
    let pid_tgid = unsafe { bpf_get_current_pid_tgid() };
    let tgid = (pid_tgid >> 32) as u32;
    if pid_tgid as u32 != tgid {
        return 0; // a thread, not the process
    }
    let _ = GO_PROCESSES.remove(&tgid);
    process_event(PROCESS_EXIT, tgid);
    0
}

#[inline(always)]
fn process_event(what: u32, tgid: u32) {
    let event = ProcessEvent {
        kind: EVENT_PROCESS,
        what,
        tgid,
        _pad: 0,
    };
    // Few and urgent (a new program may be about to use TLS): wake the reader every time.
    if PROCESS_EVENTS.output::<ProcessEvent>(&event, 0).is_err() {
        count(COUNTER_PROCESS_RINGBUF_FULL, 1);
    }
}

//! System calls: the entry stores a timestamp in the thread's in-flight entry, the exit pairs
//! it with the return value and writes the call's rows (syscall, socket layer for the probe
//! tiers, user→kernel copies measured during the call).
//!
//! Two tiers: the raw `sys_enter`/`sys_exit` tracepoints (one program each for every system
//! call; the id picks the tracked ones) and the per-call `syscalls:sys_{enter,exit}_*`
//! tracepoints, which cost more per event because the kernel first builds a trace record.
use core::ptr::write_volatile;

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use copytrace_common::{
    CallKey, InFlight, MSG_ZEROCOPY, SpanEvent, aux, counter, inflight, path, syscall,
};

use crate::{
    CONFIG, SAMPLE, SPANS,
    filter::{armed, traced},
    rows::{bump, config_u32, field, key, now, offsets, read_kernel, record, record_call},
    slots,
    socket::{SOCK_SEEN_HOOK, mark_fd_socket, sockets_by_fd},
};

/// A tracked call entered: `flags` are its send flags where it has them; `fd` its descriptor
/// when the socket paths' raw tier looks its socket up now (receives; see `socket`).
#[inline(always)]
fn on_enter(pid_tgid: u64, op: u16, flags: u64, fd: Option<u64>) {
    let bits = if flags & MSG_ZEROCOPY != 0 {
        aux::ZEROCOPY_REQUESTED
    } else {
        0
    };
    let state = inflight::ACTIVE | if armed() { inflight::IN_WINDOW } else { 0 };
    let start_ns = now();
    match slots::get(pid_tgid) {
        // SAFETY: valid map value owned by the current task. The socket cache stays.
        Some(p) => unsafe {
            let f = &mut *p;
            f.start_ns = start_ns;
            // One store each: merged, the three zeroings become a call to a byte-by-byte
            // memset (BPF has no memset instruction), 80 instructions on every call.
            write_volatile(&mut f.tcp_start_ns, 0);
            write_volatile(&mut f.copied, 0);
            write_volatile(&mut f.copy_calls, 0);
            f.aux = bits;
            f.op = op;
            f.state = state;
            mark_fd_socket(f, fd);
        },
        None => {
            let mut v = InFlight {
                start_ns,
                aux: bits,
                op,
                state,
                ..InFlight::default()
            };
            mark_fd_socket(&mut v, fd);
            if !slots::insert(pid_tgid, &v) {
                bump(counter::INFLIGHT_FULL);
            }
        }
    }
}

/// The thread is between tracked calls from now on (its first exit since attach).
#[inline(always)]
fn mark_between_calls(pid_tgid: u64) {
    if !slots::insert(pid_tgid, &InFlight::default()) {
        bump(counter::INFLIGHT_FULL);
    }
}

/// The in-flight entry of a call that just returned, and its state before it was marked
/// idle, if the thread has one. The entry is the current thread's alone: it is read in place,
/// not copied (only a new call of this thread rewrites it).
#[inline(always)]
fn take_call(pid_tgid: u64) -> Option<(&'static mut InFlight, u32)> {
    let p = slots::get(pid_tgid)?;
    // SAFETY: valid map value owned by the current task.
    Some(unsafe {
        let state = (*p).state;
        (*p).state = 0;
        (&mut *p, state)
    })
}

/// A tracked call `f`, in state `state` until it returned `ret`: write its rows.
#[inline(always)]
fn on_exit(pid_tgid: u64, f: &InFlight, state: u32, ret: i64) {
    let counted = inflight::ACTIVE | inflight::IN_WINDOW;
    let op = f.op;
    if state & counted != counted || (!syscall::socket_only(op) && f.sock_seen == 0) {
        return;
    }
    let end_ns = now();
    let ns = end_ns.saturating_sub(f.start_ns);
    let bytes = if ret > 0 { ret as u64 } else { 0 };
    let family_bits = (f.family as u32) << aux::FAMILY_SHIFT;
    if f.sock_seen == SOCK_SEEN_HOOK {
        // Probe and raw tiers of the socket layer: the row the sock:* tracepoints would have
        // written, with the call's return value, rides in the call's own row. Raw tier of
        // tcp_sendmsg: timed from its copy loop's first iteration to the call's return (no
        // event marks tcp_sendmsg's own return there), in the same row.
        let (tcp_bit, tcp_ns) = if syscall::is_send(op) && f.tcp_start_ns != 0 {
            (aux::TCP_TIMED, Some(end_ns.saturating_sub(f.tcp_start_ns)))
        } else {
            (0, None)
        };
        let key = CallKey {
            tgid: (pid_tgid >> 32) as u32,
            tid: pid_tgid as u32,
            op,
            proto: f.proto,
            aux: f.aux | family_bits | tcp_bit,
        };
        record_call(&key, bytes, ret < 0, ns, tcp_ns);
    } else {
        record(
            &key(pid_tgid, path::SYSCALL, op, f.aux | family_bits),
            1,
            bytes,
            ret < 0,
            Some(ns),
        );
    }
    // Copies measured by a probe during this call (the tracepoint-only tier derives copy
    // bytes in user space from the syscall rows instead: no work here).
    if f.copy_calls > 0 && f.sock_seen != 0 {
        record(
            &key(pid_tgid, path::COPY_FROM_USER, op, 0),
            f.copy_calls as u64,
            f.copied,
            false,
            None,
        );
    }
    sample(pid_tgid, f, op, ret, ns);
}

/// Emit one of every `sample_every` calls to the ring buffer for the timeline export.
#[inline(always)]
fn sample(pid_tgid: u64, f: &InFlight, op: u16, ret: i64, ns: u64) {
    let every = config_u32(&CONFIG.sample_every) as u64;
    if every == 0 {
        return;
    }
    let Some(c) = SAMPLE.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU slot; a lost race only shifts which call is sampled.
    let n = unsafe {
        *c += 1;
        *c
    };
    if n % every != 0 {
        return;
    }
    let ev = SpanEvent {
        start_ns: f.start_ns,
        duration_ns: ns,
        ret,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        op,
        family: f.family,
        aux: f.aux,
    };
    if SPANS.output::<SpanEvent>(&ev, 0).is_err() {
        bump(counter::RINGBUF_FULL);
    }
}

// --- tracepoint tier: syscalls:sys_{enter,exit}_<name> ---------------------------------------

#[inline(always)]
fn tp_enter(ctx: &TracePointContext, op: u16, flags_offset: Option<u32>) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !traced(pid_tgid) {
        return;
    }
    let flags = match flags_offset {
        Some(off) => field::<u64>(ctx, off).unwrap_or(0),
        None => 0,
    };
    on_enter(pid_tgid, op, flags, None);
}

#[inline(always)]
fn tp_exit(ctx: &TracePointContext, op: u16) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !traced(pid_tgid) {
        return;
    }
    let Some((f, state)) = take_call(pid_tgid) else {
        // A call that began before attach: not counted, and the thread is known from now on.
        bump(counter::UNPAIRED_EXIT);
        mark_between_calls(pid_tgid);
        return;
    };
    if f.op != op {
        return;
    }
    if let Some(ret) = field::<i64>(ctx, offsets().sys_exit_ret) {
        on_exit(pid_tgid, f, state, ret);
    }
}

macro_rules! syscall_programs {
    ($enter:ident, $exit:ident, $op:expr, $flags:expr) => {
        #[tracepoint]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            tp_enter(&ctx, $op, $flags);
            0
        }

        #[tracepoint]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            tp_exit(&ctx, $op);
            0
        }
    };
}

syscall_programs!(
    sys_enter_sendmsg,
    sys_exit_sendmsg,
    syscall::SENDMSG,
    Some(offsets().sendmsg_flags)
);
syscall_programs!(
    sys_enter_sendto,
    sys_exit_sendto,
    syscall::SENDTO,
    Some(offsets().sendto_flags)
);
syscall_programs!(sys_enter_write, sys_exit_write, syscall::WRITE, None);
syscall_programs!(sys_enter_writev, sys_exit_writev, syscall::WRITEV, None);
syscall_programs!(
    sys_enter_sendfile64,
    sys_exit_sendfile64,
    syscall::SENDFILE,
    None
);
syscall_programs!(sys_enter_recvmsg, sys_exit_recvmsg, syscall::RECVMSG, None);
syscall_programs!(
    sys_enter_recvfrom,
    sys_exit_recvfrom,
    syscall::RECVFROM,
    None
);
syscall_programs!(sys_enter_read, sys_exit_read, syscall::READ, None);

// --- raw tracepoint tier: sys_enter(regs, id) / sys_exit(regs, ret) ---------------------------

/// The tracked call with x86-64 system call number `nr`, if any (user space attaches this
/// tier on x86-64 only).
#[inline(always)]
fn op_of(nr: u64) -> Option<u16> {
    Some(match nr {
        0 => syscall::READ,
        1 => syscall::WRITE,
        20 => syscall::WRITEV,
        40 => syscall::SENDFILE,
        44 => syscall::SENDTO,
        45 => syscall::RECVFROM,
        46 => syscall::SENDMSG,
        47 => syscall::RECVMSG,
        _ => return None,
    })
}

/// x86-64 `struct pt_regs` offsets: the descriptor (1st argument: rdi), the flags argument of
/// sendmsg (3rd: rdx) and sendto (4th: r10), and the system call number.
const REGS_RDI: u32 = 14 * 8;
const REGS_RDX: u32 = 12 * 8;
const REGS_R10: u32 = 7 * 8;
const REGS_ORIG_RAX: u32 = 15 * 8;

/// The descriptor of a tracked call: its first argument (sendfile: the output). The saved
/// registers still hold it at exit (only `ax` takes the return value).
#[inline(always)]
fn call_fd(regs: *const u8) -> u64 {
    read_kernel::<u64>(regs, REGS_RDI)
}

#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn raw_sys_enter(ctx: RawTracePointContext) -> i32 {
    let nr: u64 = ctx.arg(1);
    let Some(op) = op_of(nr) else {
        return 0;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    if !traced(pid_tgid) {
        return 0;
    }
    let regs: *const u8 = ctx.arg(0);
    let flags = match op {
        syscall::SENDMSG => read_kernel::<u64>(regs, REGS_RDX),
        syscall::SENDTO => read_kernel::<u64>(regs, REGS_R10),
        _ => 0,
    };
    // A receive's socket is looked up now; a send's only at exit, if TCP did not name it.
    let fd = (!syscall::is_send(op) && sockets_by_fd()).then(|| call_fd(regs));
    on_enter(pid_tgid, op, flags, fd);
    0
}

#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn raw_sys_exit(ctx: RawTracePointContext) -> i32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !traced(pid_tgid) {
        return 0;
    }
    // System calls do not nest: a thread's next exit after a tracked entry is that call's.
    match take_call(pid_tgid) {
        Some((f, state)) if state & inflight::ACTIVE != 0 => {
            let counted = inflight::ACTIVE | inflight::IN_WINDOW;
            if state & counted == counted
                && f.sock_seen == 0
                && syscall::is_send(f.op)
                && sockets_by_fd()
            {
                // A send TCP's copy loop did not mark (another protocol, a file, a pipe, or
                // a TCP send that failed first): the socket behind its descriptor, if any.
                let regs: *const u8 = ctx.arg(0);
                mark_fd_socket(f, Some(call_fd(regs)));
            }
            on_exit(pid_tgid, f, state, ctx.arg(1))
        }
        Some(_) => {}
        None => {
            // The thread's first exit since attach: if it ends a tracked call, that call began
            // before attach (not counted), and the thread is known from now on.
            let regs: *const u8 = ctx.arg(0);
            if op_of(read_kernel::<u64>(regs, REGS_ORIG_RAX)).is_some() {
                bump(counter::UNPAIRED_EXIT);
                mark_between_calls(pid_tgid);
            }
        }
    }
    0
}

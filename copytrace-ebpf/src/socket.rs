//! The socket layer: `sock_sendmsg()`/`sock_recvmsg()` returning, with the return value as
//! the byte truth of the layer.
//!
//! Tiers: the `sock:sock_{send,recv}_length` tracepoints (kernel 6.3+) as raw tracepoints or
//! classic ones; on older kernels, fentry/kprobe on the LSM hook
//! `security_socket_{send,recv}msg`, which only marks the in-flight system call (its row is
//! written at the call's exit, see `syscalls`).
use aya_ebpf::{
    EbpfContext,
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, kprobe, raw_tracepoint, tracepoint},
    programs::{FEntryContext, ProbeContext, RawTracePointContext, TracePointContext},
};
use aya_log_ebpf::info;
use copytrace_common::{aux, inflight, path};

use crate::{
    ANNOUNCED, INFLIGHT,
    filter::window,
    rows::{key, now, offsets, read_kernel, record},
};

/// [`InFlight::sock_seen`]: a socket-layer event (tracepoint) was recorded during the call.
pub const SOCK_SEEN_EVENT: u16 = 1;
/// [`InFlight::sock_seen`]: the socket LSM hook fired; record the socket row at exit.
pub const SOCK_SEEN_HOOK: u16 = 2;

/// A socket-layer return: count it, and mark the in-flight system call as a socket call.
/// `sock_fields` reads (family, protocol) only once the task is known to be traced.
#[inline(always)]
fn sock_event<C: EbpfContext>(
    ctx: &C,
    path: u16,
    ret: i64,
    sock_fields: impl FnOnce() -> (u16, u16),
) {
    sock_event_on(ctx, path, ret, 0, sock_fields)
}

/// [`sock_event`] knowing the `struct sock *` (`sk`, 0 if not): (family, protocol) are read
/// once per socket and thread, then taken from the thread's entry.
#[inline(always)]
fn sock_event_on<C: EbpfContext>(
    ctx: &C,
    path: u16,
    ret: i64,
    sk: u64,
    sock_fields: impl FnOnce() -> (u16, u16),
) {
    let pid_tgid = bpf_get_current_pid_tgid();
    // Only traced threads have an entry: one lookup filters and finds the call.
    let Some((f, in_call)) = window(pid_tgid) else {
        return;
    };
    // SAFETY: valid map value owned by the current task.
    let (family, proto) = unsafe {
        if sk != 0 && (*f).sk_cache == sk {
            let v = (*f).sk_fields;
            ((v >> 16) as u16, v as u16)
        } else {
            let (family, proto) = sock_fields();
            if sk != 0 {
                (*f).sk_cache = sk;
                (*f).sk_fields = (family as u32) << 16 | proto as u32;
            }
            (family, proto)
        }
    };
    let bytes = if ret > 0 { ret as u64 } else { 0 };
    let mut bits = (family as u32) << aux::FAMILY_SHIFT;
    let mut tcp_ns = None;
    if in_call {
        // SAFETY: valid map value owned by the current task.
        let tcp_start = unsafe {
            (*f).sock_seen = SOCK_SEEN_EVENT;
            (*f).state |= inflight::NESTED;
            (*f).family = family;
            (*f).proto = proto;
            let t = (*f).tcp_start_ns;
            (*f).tcp_start_ns = 0;
            t
        };
        // Tracepoint tiers of tcp_sendmsg: its copy loop's first iteration left a timestamp
        // in the in-flight entry; sock_sendmsg returning ends the call. Its time rides in the
        // socket row (user space splits it off): one map update per send instead of two.
        if path == path::SOCK_SEND && tcp_start != 0 {
            bits |= aux::TCP_TIMED;
            tcp_ns = Some(now().saturating_sub(tcp_start));
        }
    }
    record(&key(pid_tgid, path, proto, bits), 1, bytes, ret < 0, tcp_ns);
    announce(ctx, pid_tgid, ret as i32);
}

/// One aya-log line on the first traced socket event, so a user can see the programs fire.
#[inline(always)]
fn announce<C: EbpfContext>(ctx: &C, pid_tgid: u64, ret: i32) {
    if let Some(p) = ANNOUNCED.get_ptr_mut(0) {
        // SAFETY: valid map value; a lost race only means a second log line.
        unsafe {
            if *p == 0 {
                *p = 1;
                info!(
                    ctx,
                    "first traced socket event: tgid={} tid={} ret={}",
                    (pid_tgid >> 32) as u32,
                    pid_tgid as u32,
                    ret
                );
            }
        }
    }
}

// --- tracepoint tier: sock:sock_{send,recv}_length -------------------------------------------

#[inline(always)]
fn on_sock_length(ctx: &TracePointContext, path: u16) -> Result<(), i32> {
    let off = offsets();
    // SAFETY: offset from the format file.
    let ret = unsafe { ctx.read_at::<i32>(off.sock_len_ret as usize)? };
    sock_event(ctx, path, ret as i64, || {
        // SAFETY: offsets from the format file.
        unsafe {
            (
                ctx.read_at::<u16>(off.sock_len_family as usize)
                    .unwrap_or(0),
                ctx.read_at::<u16>(off.sock_len_protocol as usize)
                    .unwrap_or(0),
            )
        }
    });
    Ok(())
}

#[tracepoint]
pub fn sock_send_length(ctx: TracePointContext) -> u32 {
    let _ = on_sock_length(&ctx, path::SOCK_SEND);
    0
}

#[tracepoint]
pub fn sock_recv_length(ctx: TracePointContext) -> u32 {
    let _ = on_sock_length(&ctx, path::SOCK_RECV);
    0
}

// --- raw tracepoint tier: sock_{send,recv}_length(struct sock *sk, int ret, int flags) --------

/// (family, protocol) of a `struct sock *`, through BTF offsets (0 when unknown).
#[inline(always)]
fn sock_fields(sk: *const u8) -> (u16, u16) {
    let off = offsets();
    if sk.is_null() || off.sock_family == 0 {
        return (0, 0);
    }
    (
        read_kernel::<u16>(sk, off.sock_family),
        read_kernel::<u16>(sk, off.sock_protocol),
    )
}

#[inline(always)]
fn raw_sock_length(ctx: &RawTracePointContext, path: u16) {
    let sk: *const u8 = ctx.arg(0);
    let ret: u64 = ctx.arg(1);
    sock_event_on(ctx, path, ret as i32 as i64, sk as u64, || sock_fields(sk));
}

#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn raw_sock_send_length(ctx: RawTracePointContext) -> i32 {
    raw_sock_length(&ctx, path::SOCK_SEND);
    0
}

#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn raw_sock_recv_length(ctx: RawTracePointContext) -> i32 {
    raw_sock_length(&ctx, path::SOCK_RECV);
    0
}

// --- probe tiers: the LSM hook security_socket_{send,recv}msg(sock, msg, size) ---------------
//
// sock_sendmsg()/sock_recvmsg() themselves are small and inlined into the system calls in
// distribution kernels (a probe on their out-of-line copy sees nothing), but every socket send
// and receive passes the LSM hook, which lives in another file and is never inlined.

/// (family, protocol) of a `struct socket *` (through its `sk`).
#[inline(always)]
fn socket_fields(sock: *const u8) -> (u16, u16) {
    let off = offsets();
    if off.socket_sk == 0 || sock.is_null() {
        return (0, 0);
    }
    sock_fields(read_kernel::<usize>(sock, off.socket_sk) as *const u8)
}

#[inline(always)]
fn sock_hook(sock: *const u8) {
    mark_socket_call(|| socket_fields(sock));
}

/// The in-flight system call reached a socket: its row is written at exit with the call's
/// return value as the bytes.
#[inline(always)]
fn mark_socket_call(fields: impl FnOnce() -> (u16, u16)) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some(f) = INFLIGHT.get_ptr_mut(pid_tgid)
        // SAFETY: valid map value owned by the current task.
        && unsafe { (*f).state } & inflight::ACTIVE != 0
    {
        let (family, proto) = fields();
        // SAFETY: valid map value owned by the current task.
        unsafe {
            (*f).sock_seen = SOCK_SEEN_HOOK;
            (*f).family = family;
            (*f).proto = proto;
        }
    }
}

#[fentry(function = "security_socket_sendmsg")]
pub fn fe_sock_send(ctx: FEntryContext) -> i32 {
    sock_hook(ctx.arg(0));
    0
}

#[fentry(function = "security_socket_recvmsg")]
pub fn fe_sock_recv(ctx: FEntryContext) -> i32 {
    sock_hook(ctx.arg(0));
    0
}

#[kprobe]
pub fn kp_sock_send(ctx: ProbeContext) -> u32 {
    if let Some(sock) = ctx.arg::<*const u8>(0) {
        sock_hook(sock);
    }
    0
}

#[kprobe]
pub fn kp_sock_recv(ctx: ProbeContext) -> u32 {
    if let Some(sock) = ctx.arg::<*const u8>(0) {
        sock_hook(sock);
    }
    0
}

// --- sendfile before 6.5: tcp_sendpage(struct sock *sk, struct page *, int, size_t, int) ------
//
// sendfile reached TCP through ->sendpage, past the socket LSM hook, until 6.5 (then through
// sock_sendmsg with MSG_SPLICE_PAGES, which the paths above see). Marking the call is enough:
// its bytes are the system call's own return value.

#[fentry(function = "tcp_sendpage")]
pub fn fe_tcp_sendpage(ctx: FEntryContext) -> i32 {
    let sk: *const u8 = ctx.arg(0);
    mark_socket_call(|| sock_fields(sk));
    0
}

#[kprobe]
pub fn kp_tcp_sendpage(ctx: ProbeContext) -> u32 {
    if let Some(sk) = ctx.arg::<*const u8>(0) {
        mark_socket_call(|| sock_fields(sk));
    }
    0
}

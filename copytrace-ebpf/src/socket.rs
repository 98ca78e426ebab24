//! The socket layer: which tracked system calls are socket calls, on which (family,
//! protocol), and the bytes the socket layer returned.
//!
//! Tiers: fentry/kprobe on the LSM hook `security_socket_{send,recv}msg`, which only marks the
//! in-flight system call (its row is written at the call's exit, see `syscalls`); the raw
//! tier, which takes a TCP send's socket from TCP's copy loop and finds any other call's
//! through its descriptor (no event in the socket layer at all, see [`fd_socket`]) and writes
//! the row at exit too; and the classic `sock:sock_{send,recv}_length` tracepoints (kernel
//! 6.3+), one event per `sock_sendmsg()` / `sock_recvmsg()` return, which also see socket
//! calls outside system calls (io_uring).
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task},
    macros::{fentry, kprobe, tracepoint},
    programs::{FEntryContext, ProbeContext, TracePointContext},
};
use aya_log_ebpf::info;
use copytrace_common::{InFlight, aux, inflight, path, plan, syscall};

use crate::{
    ANNOUNCED, PLAN,
    filter::window,
    rows::{field, key, now, offsets, read_kernel, record},
    slots,
};

/// [`InFlight::sock_seen`]: a socket-layer event (tracepoint) was recorded during the call.
pub const SOCK_SEEN_EVENT: u16 = 1;
/// [`InFlight::sock_seen`]: the socket LSM hook fired, or (raw tier) TCP's copy loop ran in
/// the call or its descriptor is a socket; record the socket row at exit.
pub const SOCK_SEEN_HOOK: u16 = 2;

/// A socket-layer return (classic `sock:*` tracepoints): count it, and mark the in-flight
/// system call as a socket call. `sock_fields` reads (family, protocol) only once the task is
/// known to be traced.
#[inline(always)]
fn sock_event<C: EbpfContext>(
    ctx: &C,
    path: u16,
    ret: i64,
    sock_fields: impl FnOnce() -> (u16, u16),
) {
    let pid_tgid = bpf_get_current_pid_tgid();
    // Only traced threads have an entry: one lookup filters and finds the call.
    let Some((f, in_call)) = window(pid_tgid) else {
        return;
    };
    let (family, proto) = sock_fields();
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
        // Tracepoint tier of tcp_sendmsg: its copy loop's first iteration left a timestamp
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
fn on_sock_length(ctx: &TracePointContext, path: u16) {
    let off = offsets();
    let Some(ret) = field::<i32>(ctx, off.sock_len_ret) else {
        return;
    };
    sock_event(ctx, path, ret as i64, || {
        (
            field::<u16>(ctx, off.sock_len_family).unwrap_or(0),
            field::<u16>(ctx, off.sock_len_protocol).unwrap_or(0),
        )
    });
}

#[tracepoint]
pub fn sock_send_length(ctx: TracePointContext) -> u32 {
    on_sock_length(&ctx, path::SOCK_SEND);
    0
}

#[tracepoint]
pub fn sock_recv_length(ctx: TracePointContext) -> u32 {
    on_sock_length(&ctx, path::SOCK_RECV);
    0
}

// --- raw tier: the socket behind the call's descriptor, or TCP's own -------------------------
//
// No program runs in the socket layer: every event there is one more dispatch for every
// socket call on the machine, traced or not. A TCP send says its socket where it passes
// anyway: `tcp:tcp_sendmsg_locked` (the tcp_sendmsg path's raw tier, `tcp`) marks the call
// with its `sk`. Every other tracked call of a traced thread is looked up through its
// descriptor: the call's file, whether its inode is a socket's, and the socket's (family,
// protocol) — receives at entry, sends not marked by TCP at exit (`syscalls`). The exit then
// writes the socket row with the call's return value, as the probe tiers do. Walking the
// descriptor takes six reads of kernel memory, which cost about 220 ns of a 64-byte TCP
// send here, half of the traced thread's program time.

/// `S_IFMT` / `S_IFSOCK` of `inode.i_mode`.
const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;

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

/// The current task's open file `fd` (null when there is none).
#[inline(always)]
fn fd_file(fd: u64) -> *const u8 {
    let off = offsets();
    // SAFETY: helper without preconditions; the pointer is only read through probe reads.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let files: *const u8 = read_kernel::<usize>(task, off.task_files) as *const u8;
    let fdt: *const u8 = read_kernel::<usize>(files, off.files_fdt) as *const u8;
    // `max_fds` and the `fd` array pointer, one read (adjacent: checked in user space).
    let [max_fds, array] = read_kernel::<[u64; 2]>(fdt, off.fdt_max_fds);
    if fd >= max_fds & 0xffff_ffff {
        return core::ptr::null();
    }
    read_kernel::<usize>(array as *const u8, (fd * 8) as u32) as *const u8
}

/// Is descriptor `fd` of the current task a socket? Its (family, protocol) if so. The
/// thread's entry `f` caches the last socket's inode and `struct sock`: a thread usually
/// works on one socket, and then five pointers are read (the file, its inode, the socket's
/// sock) but not the mode or the socket's fields.
#[inline(always)]
fn fd_socket(fd: u64, f: &mut InFlight) -> Option<(u16, u16)> {
    let off = offsets();
    let file = fd_file(fd);
    if file.is_null() {
        return None;
    }
    let inode = read_kernel::<u64>(file, off.file_inode);
    if inode == 0 {
        return None;
    }
    if inode != f.sock_inode {
        let mode = read_kernel::<u16>(inode as *const u8, off.inode_mode);
        if mode & S_IFMT != S_IFSOCK {
            return None;
        }
        f.sock_inode = inode;
    }
    // A socket's inode lives in one allocation with its `struct socket` (`socket_alloc`).
    let socket = (inode - off.socket_alloc_inode as u64) as *const u8;
    Some(cached_sock_fields(
        f,
        read_kernel::<u64>(socket, off.socket_sk),
    ))
}

/// (family, protocol) of the `struct sock` at `sk`, through the thread's one-socket cache in
/// `f` (see [`InFlight::sk_fields`]): a hit reads nothing.
#[inline(always)]
fn cached_sock_fields(f: &mut InFlight, sk: u64) -> (u16, u16) {
    if sk != 0 && f.sk_cache == sk {
        let v = f.sk_fields;
        return ((v >> 16) as u16, v as u16);
    }
    let (family, proto) = sock_fields(sk as *const u8);
    if sk != 0 {
        f.sk_cache = sk;
        f.sk_fields = (family as u32) << 16 | proto as u32;
    }
    (family, proto)
}

/// Does the raw tier find the socket paths (no program in the socket layer)?
#[inline(always)]
pub fn sockets_by_fd() -> bool {
    PLAN.get(0).is_some_and(|p| *p & plan::SOCKETS_BY_FD != 0)
}

/// Mark the call `f` as a socket call on a socket of `fields` (family, protocol), or as no
/// socket call (yet) with `None`.
#[inline(always)]
fn mark_socket(f: &mut InFlight, fields: Option<(u16, u16)>) {
    let (seen, (family, proto)) = match fields {
        Some(fields) => (SOCK_SEEN_HOOK, fields),
        None => (0, (0, 0)),
    };
    f.sock_seen = seen;
    f.family = family;
    f.proto = proto;
}

/// Mark the call `f` as a socket call on the socket behind its descriptor `fd`, if that is
/// one; unmark it otherwise.
#[inline(always)]
pub fn mark_fd_socket(f: &mut InFlight, fd: Option<u64>) {
    let fields = fd.and_then(|fd| fd_socket(fd, f));
    mark_socket(f, fields);
}

/// Raw tier: the send call `f` reached TCP's copy loop on `sk`, so it is a socket call on
/// `sk`'s (family, protocol) — what the probe tiers' LSM hook says of the same call, with no
/// descriptor walk (usually not even a read: one socket per thread hits the cache). Sends
/// that never reach the loop are found through their descriptor at exit instead.
#[inline(always)]
pub fn mark_tcp_socket(f: &mut InFlight, sk: u64) {
    if f.sock_seen != 0 || !syscall::is_send(f.op) || !sockets_by_fd() {
        return;
    }
    let fields = cached_sock_fields(f, sk);
    mark_socket(f, Some(fields));
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
    if let Some(f) = slots::get(pid_tgid)
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

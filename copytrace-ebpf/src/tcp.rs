//! `tcp_sendmsg()`: calls, bytes accepted and time inside.
//!
//! Probe tiers pair entry and return. The tracepoint tiers only have `tcp:tcp_sendmsg_locked`,
//! which fires once per copy-loop iteration: the first iteration of a call starts its clock
//! (in the system call's in-flight entry), `sock:sock_send_length` stops it (see `socket`).
//! On the raw tier the system call's exit stops it, and the tracepoint's `sk` names the
//! call's socket, so that no descriptor is walked for a TCP send.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, fexit, kprobe, kretprobe, raw_tracepoint, tracepoint},
    programs::{
        FEntryContext, FExitContext, ProbeContext, RawTracePointContext, RetProbeContext,
        TracePointContext,
    },
};
use copytrace_common::{InFlight, path};

use crate::{
    filter::in_call,
    pairing::{enter_counted, exit_with_bytes},
    rows::now,
    socket::mark_tcp_socket,
};

#[inline(always)]
fn tcp_enter() {
    enter_counted(path::TCP_SENDMSG);
}

#[inline(always)]
fn tcp_exit(ret: i64) {
    exit_with_bytes(path::TCP_SENDMSG, ret);
}

/// A copy-loop iteration: start the call's clock at the first one. Only traced tasks have an
/// in-flight entry, so the lookup is also the filter. Returns the call's entry.
#[inline(always)]
fn loop_iteration() -> Option<&'static mut InFlight> {
    let f = in_call(bpf_get_current_pid_tgid())?;
    // SAFETY: valid map value owned by the current task.
    unsafe {
        if (*f).tcp_start_ns == 0 {
            (*f).tcp_start_ns = now();
        }
        Some(&mut *f)
    }
}

#[fentry(function = "tcp_sendmsg")]
pub fn fe_tcp_sendmsg(_ctx: FEntryContext) -> i32 {
    tcp_enter();
    0
}

#[fexit(function = "tcp_sendmsg")]
pub fn fx_tcp_sendmsg(ctx: FExitContext) -> i32 {
    if let Ok(ret) = ctx.ret::<i32>() {
        tcp_exit(ret as i64);
    }
    0
}

#[kprobe]
pub fn kp_tcp_sendmsg(_ctx: ProbeContext) -> u32 {
    tcp_enter();
    0
}

#[kretprobe]
pub fn krp_tcp_sendmsg(ctx: RetProbeContext) -> u32 {
    tcp_exit(ctx.ret::<i32>() as i64);
    0
}

/// `tcp_sendmsg_locked(sk, msg, skb, size_goal)`: the raw tier also names the call's socket
/// (see `socket`).
#[raw_tracepoint(tracepoint = "tcp_sendmsg_locked")]
pub fn raw_tcp_sendmsg_locked(ctx: RawTracePointContext) -> i32 {
    if let Some(f) = loop_iteration() {
        mark_tcp_socket(f, ctx.arg(0));
    }
    0
}

#[tracepoint]
pub fn tcp_sendmsg_locked(_ctx: TracePointContext) -> u32 {
    loop_iteration();
    0
}

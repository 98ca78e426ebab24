//! Receive copies: `skb_copy_datagram_iter(skb, offset, to, len)` (0 on success) in the probe
//! tiers; the `skb:skb_copy_datagram_iovec(skb, len)` tracepoint (start of the copy, no return
//! value: a failed copy would still count) otherwise.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, fexit, kprobe, kretprobe, raw_tracepoint, tracepoint},
    programs::{
        FEntryContext, FExitContext, ProbeContext, RawTracePointContext, RetProbeContext,
        TracePointContext,
    },
};
use copytrace_common::{aux, path};

use crate::{
    filter::counts,
    pairing::{entry_key, pair_enter, pair_exit},
    rows::{field, key, offsets, record},
};

#[inline(always)]
fn recv_enter(len: u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if counts(pid_tgid) {
        pair_enter(&entry_key(pid_tgid, path::RECV_COPY), len);
    }
}

#[inline(always)]
fn recv_exit(ret: i64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some((e, ns)) = pair_exit(&entry_key(pid_tgid, path::RECV_COPY)) {
        let bytes = if ret == 0 { e.arg } else { 0 };
        record(
            &key(pid_tgid, path::RECV_COPY, 0, 0),
            1,
            bytes,
            ret != 0,
            Some(ns),
        );
    }
}

/// The tracepoint tiers: one copy of `len` bytes starts.
#[inline(always)]
fn copy_starts(len: i32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if counts(pid_tgid) {
        record(
            &key(pid_tgid, path::RECV_COPY, 0, aux::DERIVED),
            1,
            len.max(0) as u64,
            false,
            None,
        );
    }
}

#[fentry(function = "skb_copy_datagram_iter")]
pub fn fe_recv_copy(ctx: FEntryContext) -> i32 {
    let len: i32 = ctx.arg(3);
    recv_enter(len as u64);
    0
}

#[fexit(function = "skb_copy_datagram_iter")]
pub fn fx_recv_copy(ctx: FExitContext) -> i32 {
    if let Ok(ret) = ctx.ret::<i32>() {
        recv_exit(ret as i64);
    }
    0
}

#[kprobe]
pub fn kp_recv_copy(ctx: ProbeContext) -> u32 {
    if let Some(len) = ctx.arg::<u64>(3) {
        recv_enter(len & 0xffff_ffff);
    }
    0
}

#[kretprobe]
pub fn krp_recv_copy(ctx: RetProbeContext) -> u32 {
    recv_exit(ctx.ret::<i32>() as i64);
    0
}

#[raw_tracepoint(tracepoint = "skb_copy_datagram_iovec")]
pub fn raw_skb_copy_datagram_iovec(ctx: RawTracePointContext) -> i32 {
    let len: u64 = ctx.arg(1);
    copy_starts(len as i32);
    0
}

#[tracepoint]
pub fn skb_copy_datagram_iovec(ctx: TracePointContext) -> u32 {
    if let Some(len) = field::<i32>(&ctx, offsets().skb_copy_len) {
        copy_starts(len);
    }
    0
}

//! Receive copies: `skb_copy_datagram_iter(skb, offset, to, len)` (0 on success), probe
//! tiers only.
//!
//! No tracepoint tier: `skb:skb_copy_datagram_iovec` fires for every skb every receiver on the
//! machine copies, traced or not, and filtering them out cost an untraced 64-byte iperf3
//! server about 7 % of its throughput here (one of the five events of each of its messages).
//! Without a probe, user space derives the path from the socket receive rows instead (the
//! bytes receive calls returned from sockets: what the copies wrote).
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use copytrace_common::path;

use crate::{
    filter::counts,
    pairing::{entry_key, pair_enter, pair_exit},
    rows::{key, record},
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

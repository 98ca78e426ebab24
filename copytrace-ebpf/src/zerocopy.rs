//! Zero-copy attach: `skb_zerocopy_iter_stream()` returns the bytes it attached to skbs by
//! reference (MSG_ZEROCOPY) instead of copying them. Probe tiers only.
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
fn zc_enter() {
    let pid_tgid = bpf_get_current_pid_tgid();
    if counts(pid_tgid) {
        pair_enter(&entry_key(pid_tgid, path::ZEROCOPY), 0);
    }
}

#[inline(always)]
fn zc_exit(ret: i64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some((_, ns)) = pair_exit(&entry_key(pid_tgid, path::ZEROCOPY)) {
        let bytes = if ret > 0 { ret as u64 } else { 0 };
        record(
            &key(pid_tgid, path::ZEROCOPY, 0, 0),
            1,
            bytes,
            ret < 0,
            Some(ns),
        );
    }
}

#[fentry(function = "skb_zerocopy_iter_stream")]
pub fn fe_zc_iter(_ctx: FEntryContext) -> i32 {
    zc_enter();
    0
}

#[fexit(function = "skb_zerocopy_iter_stream")]
pub fn fx_zc_iter(ctx: FExitContext) -> i32 {
    if let Ok(ret) = ctx.ret::<i32>() {
        zc_exit(ret as i64);
    }
    0
}

#[kprobe]
pub fn kp_zc_iter(_ctx: ProbeContext) -> u32 {
    zc_enter();
    0
}

#[kretprobe]
pub fn krp_zc_iter(ctx: RetProbeContext) -> u32 {
    zc_exit(ctx.ret::<i32>() as i64);
    0
}

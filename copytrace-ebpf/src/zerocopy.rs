//! Zero-copy attach: `skb_zerocopy_iter_stream()` returns the bytes it attached to skbs by
//! reference (MSG_ZEROCOPY) instead of copying them. Probe tiers only.
use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use copytrace_common::path;

use crate::pairing::{enter_counted, exit_with_bytes};

#[inline(always)]
fn zc_enter() {
    enter_counted(path::ZEROCOPY);
}

#[inline(always)]
fn zc_exit(ret: i64) {
    exit_with_bytes(path::ZEROCOPY, ret);
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

//! Page pinning: `get_user_pages_fast(start, nr_pages, gup_flags, pages)` and its renamed
//! successors, inside send calls; `bytes` of the row holds **pages**, and a second row the
//! pages requested. Probe tiers only.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use copytrace_common::{aux, inflight, path};

use crate::{
    filter::in_send,
    pairing::{entry_key, pair_enter, pair_exit},
    rows::{key, record},
};

#[inline(always)]
fn pin_enter(nr_pages: u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some(f) = in_send(pid_tgid) {
        // SAFETY: valid map value owned by the current task.
        unsafe { (*f).state |= inflight::NESTED };
        pair_enter(&entry_key(pid_tgid, path::PIN_PAGES), nr_pages);
    }
}

#[inline(always)]
fn pin_exit(ret: i64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some((e, ns)) = pair_exit(&entry_key(pid_tgid, path::PIN_PAGES)) {
        let pinned = if ret > 0 { ret as u64 } else { 0 };
        record(
            &key(pid_tgid, path::PIN_PAGES, 0, 0),
            1,
            pinned,
            pinned < e.arg,
            Some(ns),
        );
        record(
            &key(pid_tgid, path::PIN_PAGES, 0, aux::REQUESTED),
            1,
            e.arg,
            false,
            None,
        );
    }
}

#[fentry(function = "get_user_pages_fast")]
pub fn fe_pin(ctx: FEntryContext) -> i32 {
    let nr: i32 = ctx.arg(1);
    pin_enter(nr as u64);
    0
}

#[fexit(function = "get_user_pages_fast")]
pub fn fx_pin(ctx: FExitContext) -> i32 {
    if let Ok(ret) = ctx.ret::<i32>() {
        pin_exit(ret as i64);
    }
    0
}

#[kprobe]
pub fn kp_pin(ctx: ProbeContext) -> u32 {
    if let Some(nr) = ctx.arg::<u64>(1) {
        pin_enter(nr & 0xffff_ffff);
    }
    0
}

#[kretprobe]
pub fn krp_pin(ctx: RetProbeContext) -> u32 {
    pin_exit(ctx.ret::<i32>() as i64);
    0
}

//! Zero-copy completions: `msg_zerocopy_callback(skb, uarg, success)` (renamed
//! `msg_zerocopy_complete` in 6.10), counted by success. Probe tiers only.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use copytrace_common::path;

use crate::{
    filter::{armed, attributed_key},
    rows::record,
};

#[inline(always)]
fn zc_completion(success: bool) {
    if !armed() {
        return;
    }
    let k = attributed_key(
        bpf_get_current_pid_tgid(),
        path::ZC_COMPLETION,
        success as u32,
    );
    record(&k, 1, 0, false, None);
}

#[fentry(function = "msg_zerocopy_callback")]
pub fn fe_zc_done(ctx: FEntryContext) -> i32 {
    let success: u8 = ctx.arg(2);
    zc_completion(success != 0);
    0
}

#[kprobe]
pub fn kp_zc_done(ctx: ProbeContext) -> u32 {
    if let Some(s) = ctx.arg::<u64>(2) {
        zc_completion(s & 0xff != 0);
    }
    0
}

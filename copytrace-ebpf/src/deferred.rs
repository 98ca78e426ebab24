//! Deferred copies: `skb_copy_ubufs(skb, gfp)`, where the kernel copies pinned user pages
//! after all (delivery to a local socket, a device without scatter-gather). Runs in softirq
//! context, so it is attributed to the current task when traced, else to tgid 0. Probe tiers
//! only.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};
use copytrace_common::path;

use crate::{
    filter::{armed, attributed_key},
    pairing::{entry_key_cpu, pair_enter, pair_exit},
    rows::{offsets, read_kernel, record},
};

#[inline(always)]
fn ubufs_enter(skb: *const u8) {
    if !armed() {
        return;
    }
    let off = offsets().skb_data_len;
    let bytes = if off == 0 {
        0
    } else {
        read_kernel::<u32>(skb, off) as u64
    };
    pair_enter(
        &entry_key_cpu(bpf_get_current_pid_tgid(), path::DEFERRED_COPY),
        bytes,
    );
}

#[inline(always)]
fn ubufs_exit(ret: i64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some((e, ns)) = pair_exit(&entry_key_cpu(pid_tgid, path::DEFERRED_COPY)) {
        let bytes = if ret == 0 { e.arg } else { 0 };
        record(
            &attributed_key(pid_tgid, path::DEFERRED_COPY, 0),
            1,
            bytes,
            ret != 0,
            Some(ns),
        );
    }
}

#[fentry(function = "skb_copy_ubufs")]
pub fn fe_ubufs(ctx: FEntryContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    ubufs_enter(skb);
    0
}

#[fexit(function = "skb_copy_ubufs")]
pub fn fx_ubufs(ctx: FExitContext) -> i32 {
    if let Ok(ret) = ctx.ret::<i32>() {
        ubufs_exit(ret as i64);
    }
    0
}

#[kprobe]
pub fn kp_ubufs(ctx: ProbeContext) -> u32 {
    if let Some(skb) = ctx.arg::<*const u8>(0) {
        ubufs_enter(skb);
    }
    0
}

#[kretprobe]
pub fn krp_ubufs(ctx: RetProbeContext) -> u32 {
    ubufs_exit(ctx.ret::<i32>() as i64);
    0
}

//! io_uring sends: requests never pass through a send system call, so they are followed from
//! submission (`io_uring:io_uring_submit_req`, in the submitting thread) to completion
//! (`io_uring:io_uring_complete`, wherever the request finished: inline, in task work, or in
//! an io-wq worker), keyed by the request. The row belongs to the submitting thread, with the
//! completion's result as the bytes and submission-to-completion as the time.
//!
//! SEND_ZC posts a second completion, the notification (`IORING_CQE_F_NOTIF`, a request of
//! its own), when the kernel no longer needs the pages; with `IORING_SEND_ZC_REPORT_USAGE` its
//! result says whether the kernel copied them after all. It runs as task work of the
//! submitting task, so the current task is the submitter.
//!
//! A completion that overflows the application's completion ring names no request
//! (`io_uring_cqe_overflow`): such requests are counted as lost, never guessed.
//!
//! Tiers: classic tracepoints on every kernel (6.0+; the submission event is
//! `io_uring_submit_sqe` before 6.3); no probe tier (the request
//! structure's layout is not needed this way).
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext,
};
use copytrace_common::{UringReq, completion, counter, path, uring};

use crate::{
    URING,
    filter::{armed, attributed_key, traced},
    rows::{bump, field, key, now, offsets, record},
};

#[inline(always)]
fn on_submit(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !traced(pid_tgid) || !armed() {
        return Ok(());
    }
    let off = offsets();
    let Some(op) = field::<u8>(ctx, off.uring_submit_opcode).and_then(uring::from_opcode) else {
        return Ok(());
    };
    let Some(req) = field::<u64>(ctx, off.uring_submit_req) else {
        return Ok(());
    };
    let v = UringReq {
        start_ns: now(),
        pid_tgid,
        op: op as u32,
        _pad: 0,
    };
    URING.insert(req, v, 0).map_err(i64::from)
}

#[inline(always)]
fn on_complete(ctx: &TracePointContext) -> Result<(), i64> {
    let off = offsets();
    let (Some(req), Some(res), Some(cflags)) = (
        field::<u64>(ctx, off.uring_complete_req),
        field::<i32>(ctx, off.uring_complete_res),
        field::<u32>(ctx, off.uring_complete_cflags),
    ) else {
        return Ok(());
    };
    if cflags & uring::CQE_F_NOTIF != 0 {
        // A notification is a request of its own, never submitted: it cannot end a send.
        if armed() {
            notification(res);
        }
        return Ok(());
    }
    if let Some(p) = URING.get_ptr(req) {
        // SAFETY: valid map value, copied before removal.
        let r = unsafe { *p };
        let _ = URING.remove(req);
        let bytes = if res > 0 { res as u64 } else { 0 };
        let ns = now().saturating_sub(r.start_ns);
        let k = key(r.pid_tgid, path::URING_SEND, r.op as u16, 0);
        record(&k, 1, bytes, res < 0, Some(ns));
    }
    Ok(())
}

/// A SEND_ZC notification, in the submitter's task work.
#[inline(always)]
fn notification(res: i32) {
    let by_reference = (res as u32) & uring::NOTIF_USAGE_ZC_COPIED == 0;
    let mut k = attributed_key(
        bpf_get_current_pid_tgid(),
        path::ZC_COMPLETION,
        by_reference as u32,
    );
    k.op = completion::IO_URING;
    record(&k, 1, 0, false, None);
}

/// A completion that found the application's completion ring full: the kernel keeps it on an
/// overflow list, and the event names no request. A traced task's is counted as lost (its
/// request stays in `URING` until the LRU evicts it or the request's memory is submitted
/// again, which overwrites it).
#[tracepoint]
pub fn io_uring_cqe_overflow(_ctx: TracePointContext) -> u32 {
    if armed() && traced(bpf_get_current_pid_tgid()) {
        bump(counter::URING_OVERFLOW);
    }
    0
}

#[tracepoint]
pub fn io_uring_submit_req(ctx: TracePointContext) -> u32 {
    let _ = on_submit(&ctx);
    0
}

/// The same event before 6.3, with the same fields.
#[tracepoint]
pub fn io_uring_submit_sqe(ctx: TracePointContext) -> u32 {
    let _ = on_submit(&ctx);
    0
}

#[tracepoint]
pub fn io_uring_complete(ctx: TracePointContext) -> u32 {
    let _ = on_complete(&ctx);
    0
}

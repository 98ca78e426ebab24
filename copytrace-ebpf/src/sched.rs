//! Scheduling and process tracking: time traced threads spend off CPU (`sched_switch`, one
//! entry per traced thread, stamped when it leaves the CPU and cleared when it runs again), and
//! children of traced processes traced too (`sched_process_fork`/`exit`, like `perf trace`),
//! so `copytrace trace -- sh -c 'python3 …'` sees the python process. Raw tracepoints read
//! `task_struct.pid` through its BTF offset; classic ones read the record's fields.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use copytrace_common::{OffCpu, StatKey, counter, filter, path};

use crate::{
    CONFIG, OFFCPU, PIDS,
    filter::{armed, maybe_traced, traced},
    rows::{bump, config_u32, field, now, offsets, read_kernel, record},
    slots,
};

/// Is the task being switched out (the current one) traced, and inside the window?
#[inline(always)]
fn prev_traced() -> bool {
    let prev = bpf_get_current_pid_tgid();
    prev as u32 != 0 && traced(prev) && armed()
}

/// A context switch, in the context of the task switched out: `prev_traced` when that task
/// is traced, in the window, and not making its last switch (it has exited: nothing may be
/// left behind for it); `next` the tid switched in, 0 when it cannot be a traced task.
///
/// A thread's entry lives from its first switch out until it exits and is updated in place
/// (`since_ns` 0: on CPU): an insert and a delete per switch (each through the map's bucket
/// lock and free list) cost a quarter of the program's time.
#[inline(always)]
fn switch(prev_traced: bool, next: u32) {
    if !prev_traced && next == 0 {
        return;
    }
    let t = now();
    if prev_traced {
        switch_out(t);
    }
    if next == 0 {
        return;
    }
    if let Some(o) = OFFCPU.get_ptr_mut(next) {
        // SAFETY: valid map value. Its task is switched in here and nowhere else: the switch
        // out that set it finished first (a task on a CPU is not picked by another).
        let o = unsafe { &mut *o };
        if o.since_ns == 0 {
            return;
        }
        let k = StatKey {
            tgid: o.tgid,
            tid: next,
            path: path::OFF_CPU,
            op: 0,
            aux: 0,
        };
        record(&k, 1, 0, false, Some(t.saturating_sub(o.since_ns)));
        o.since_ns = 0;
    }
}

/// The current (traced) thread leaves the CPU at `t`.
#[inline(always)]
fn switch_out(t: u64) {
    let prev = bpf_get_current_pid_tgid();
    match OFFCPU.get_ptr_mut(prev as u32) {
        // SAFETY: valid map value of the current task.
        Some(o) => unsafe {
            // A thread that switches out is on CPU: a time left in its entry is from a
            // switch in not seen here. That interval is lost; this one replaces it.
            if (*o).since_ns != 0 {
                bump(counter::OFFCPU_MISSED_SWITCH_IN);
            }
            (*o).since_ns = t;
            (*o).tgid = (prev >> 32) as u32;
        },
        None => {
            let v = OffCpu {
                since_ns: t,
                tgid: (prev >> 32) as u32,
                _pad: 0,
            };
            if OFFCPU.insert(prev as u32, v, 0).is_err() {
                bump(counter::OFFCPU_FULL);
            }
        }
    }
}

/// A fork by the current task: follow `child` (tid or tgid) if the parent is followed.
#[inline(always)]
fn fork(child: u32) {
    if config_u32(&CONFIG.follow_children) == 0 || config_u32(&CONFIG.filter_mode) != filter::PIDS {
        return;
    }
    let parent_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if PIDS.get_ptr(parent_tgid).is_none() {
        return;
    }
    // For a new thread `child` is its tid: harmless while it lives (tids and tgids share one
    // number space) and removed again at its exit below.
    if PIDS.insert(child, 1, 0).is_err() {
        bump(counter::PIDS_FULL);
    }
}

/// The current task exits: forget its thread-level state.
#[inline(always)]
fn exit() {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    if tid != (pid_tgid >> 32) as u32 {
        let _ = PIDS.remove(tid);
    }
    slots::remove(pid_tgid);
    let _ = OFFCPU.remove(tid);
}

/// `prev_state` of the classic record: the state index reported as a bit; a task's last
/// switch reports `EXIT_DEAD` (0x10) or `EXIT_ZOMBIE` (0x20).
const REPORTED_EXIT: i64 = 0x10 | 0x20;

#[tracepoint]
pub fn sched_switch(ctx: TracePointContext) -> u32 {
    let off = offsets();
    if let Some(next) = field::<i32>(&ctx, off.switch_next_pid) {
        // The record names no process of `next`: every switch-in is looked up.
        let exits =
            field::<i64>(&ctx, off.switch_prev_state).is_some_and(|s| s & REPORTED_EXIT != 0);
        switch(!exits && prev_traced(), next as u32);
    }
    0
}

/// `sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next, …)`. Most
/// switches on a machine involve no traced task: they cost one read (the process of `next`)
/// and the filter, no clock and no map.
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn raw_sched_switch(ctx: RawTracePointContext) -> i32 {
    let off = offsets();
    let next: *const u8 = ctx.arg(2);
    let next_maybe = maybe_traced(read_kernel::<i32>(next, off.task_tgid) as u32);
    let prev = prev_traced();
    if !next_maybe && !prev {
        return 0;
    }
    // A task's exit_state is set before its last switch (exit_notify, then do_task_dead).
    let exits = prev && read_kernel::<i32>(ctx.arg(1), off.task_exit_state) != 0;
    let next_tid = if next_maybe {
        read_kernel::<i32>(next, off.task_pid) as u32
    } else {
        0
    };
    switch(prev && !exits, next_tid);
    0
}

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    if let Some(child) = field::<i32>(&ctx, offsets().fork_child_pid) {
        fork(child as u32);
    }
    0
}

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn raw_sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let child: *const u8 = ctx.arg(1);
    fork(read_kernel::<i32>(child, offsets().task_pid) as u32);
    0
}

#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    exit();
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn raw_sched_process_exit(_ctx: RawTracePointContext) -> i32 {
    exit();
    0
}

//! Programs that make the kernel skip runs on purpose, for the tests of user space's
//! skipped-run counting (`copytrace::trace::skipped`); a trace never attaches them.
//!
//! A trigger prints one trace line on each `getppid()` of a traced task. Printing runs the
//! `bpf_trace_printk` tracepoint and `bpf_bprintf_prepare` inside the trigger's own run,
//! where a victim sees its nested run refused: the raw-tracepoint victim by its own recursion
//! guard (it prints again, from inside its own run); the kprobe victim because the kprobe
//! trigger's handler is still running (the kprobe's `missed`), or because the classic
//! tracepoint trigger's program holds `bpf_prog_active` (the program's `recursion_misses`).
//! One refused run per `getppid()`, each counted by the kernel.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_printk},
    macros::{kprobe, raw_tracepoint, tracepoint},
    programs::{ProbeContext, RawTracePointContext, TracePointContext},
};

use crate::filter::traced;

/// `getppid` on x86_64.
const NR_GETPPID: u64 = 110;

#[inline(always)]
fn print_if_traced() {
    if traced(bpf_get_current_pid_tgid()) {
        // SAFETY: the helper only reads the format string.
        unsafe { bpf_printk!(c"copytrace skipcheck") };
    }
}

/// The trigger, on `raw_syscalls:sys_enter` (args: regs, id).
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn skipcheck_trigger_raw(ctx: RawTracePointContext) -> i32 {
    if ctx.arg::<u64>(1) == NR_GETPPID {
        print_if_traced();
    }
    0
}

/// The trigger as a kprobe, on `__x64_sys_getppid`.
#[kprobe]
pub fn skipcheck_trigger_kprobe(_ctx: ProbeContext) -> u32 {
    print_if_traced();
    0
}

/// The trigger on the classic tracepoint `syscalls:sys_enter_getppid`.
#[tracepoint]
pub fn skipcheck_trigger_tracepoint(_ctx: TracePointContext) -> u32 {
    print_if_traced();
    0
}

/// Victim on the raw tracepoint `bpf_trace_printk`: prints from inside its own run.
#[raw_tracepoint(tracepoint = "bpf_trace_printk")]
pub fn skipcheck_victim_raw(_ctx: RawTracePointContext) -> i32 {
    print_if_traced();
    0
}

/// Victim as a kprobe on a function the printing calls (`bpf_bprintf_prepare`).
#[kprobe]
pub fn skipcheck_victim_kprobe(_ctx: ProbeContext) -> u32 {
    0
}

//! Programs that count nothing: the feature probes `copytrace probe` loads and attaches to
//! learn which program types this kernel allows, and the empty programs of the cost floor
//! (`copytrace trace --floor`), attached to the same hooks as a real trace to measure what
//! the hooks alone cost.
use aya_ebpf::{
    macros::{btf_tracepoint, fentry, kprobe, kretprobe, raw_tracepoint, tracepoint},
    programs::{
        BtfTracePointContext, FEntryContext, ProbeContext, RawTracePointContext, RetProbeContext,
        TracePointContext,
    },
};

#[kprobe]
pub fn probe_kprobe(_ctx: ProbeContext) -> u32 {
    0
}

#[fentry(function = "tcp_sendmsg")]
pub fn probe_fentry(_ctx: FEntryContext) -> i32 {
    0
}

#[btf_tracepoint(function = "sched_process_exec")]
pub fn probe_tp_btf(_ctx: BtfTracePointContext) -> i32 {
    0
}

#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn probe_raw_tp(_ctx: RawTracePointContext) -> i32 {
    0
}

/// The floor on classic tracepoints (one program, attached to each).
#[tracepoint]
pub fn floor_tracepoint(_ctx: TracePointContext) -> u32 {
    0
}

/// The floor on raw tracepoints (one program, attached to each).
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn floor_raw_tp(_ctx: RawTracePointContext) -> i32 {
    0
}

/// The floor on kretprobes (`probe_kprobe` serves kprobes).
#[kretprobe]
pub fn floor_kretprobe(_ctx: RetProbeContext) -> u32 {
    0
}

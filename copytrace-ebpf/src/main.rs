//! copytrace's kernel programs.
//!
//! Small and boring on purpose: every program filters by process first, then adds to a per-CPU
//! hash map keyed by (tgid, tid, path, op, aux). Keys carry the thread id, so two tasks never
//! update the same per-CPU value and no atomics are needed even on preemptible kernels.
//! User space sums the per-CPU values when it reads.
//!
//! Tracepoint field offsets are not compiled in: user space reads them from tracefs `format`
//! files and writes them into [`CONFIG`] before loading.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::{btf_tracepoint, fentry, kprobe, map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, PerCpuArray, PerCpuHashMap},
    programs::{
        BtfTracePointContext, FEntryContext, ProbeContext, RawTracePointContext, TracePointContext,
    },
};
use aya_log_ebpf::info;
use copytrace_common::{
    Config, HIST_BUCKETS, InFlight, MSG_ZEROCOPY, StatKey, Stats, TpOffsets, aux, counter, filter,
    path, syscall,
};

/// Written by user space (`EbpfLoader::override_global`) before load.
#[unsafe(no_mangle)]
static CONFIG: Config = Config::ZERO;

#[map]
static STATS: PerCpuHashMap<StatKey, Stats> = PerCpuHashMap::with_max_entries(16384, 0);

/// System calls between enter and exit, keyed by pid_tgid.
#[map]
static INFLIGHT: HashMap<u64, InFlight> = HashMap::with_max_entries(16384, 0);

/// Traced tgids (filter mode PIDS). Values are unused.
#[map]
static PIDS: HashMap<u32, u32> = HashMap::with_max_entries(8192, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// A zeroed `Stats` to insert from: a 288-byte value would not fit the 512-byte BPF stack
/// comfortably next to everything else.
#[map]
static ZERO: PerCpuArray<Stats> = PerCpuArray::with_max_entries(1, 0);

/// Set once the first traced event has been logged.
#[map]
static ANNOUNCED: Array<u64> = Array::with_max_entries(1, 0);

#[inline(always)]
fn config_u32(field: &u32) -> u32 {
    // SAFETY: reading a global; volatile so the loader's override is not constant-folded away.
    unsafe { core::ptr::read_volatile(field) }
}

#[inline(always)]
fn offsets() -> TpOffsets {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&CONFIG.offsets) }
}

#[inline(always)]
fn bump(idx: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(idx) {
        // Health counters only (never data): the BPF target has no atomic fetch-add in Rust, and
        // a same-CPU preemption between load and store could at worst lose one increment of a
        // counter that is already reporting a problem.
        // SAFETY: the map value is a valid, aligned u64 for the lifetime of the program.
        unsafe { *p += 1 };
    }
}

/// Is the current task one we trace?
#[inline(always)]
fn traced(pid_tgid: u64) -> bool {
    let tgid = (pid_tgid >> 32) as u32;
    if tgid == config_u32(&CONFIG.self_tgid) {
        return false;
    }
    if config_u32(&CONFIG.filter_mode) == filter::PIDS && PIDS.get_ptr(tgid).is_none() {
        return false;
    }
    // SAFETY: reading a global.
    let cgroup = unsafe { core::ptr::read_volatile(&CONFIG.cgroup_id) };
    // SAFETY: helper without preconditions.
    if cgroup != 0 && unsafe { bpf_get_current_cgroup_id() } != cgroup {
        return false;
    }
    true
}

/// floor(log2(v)), 0 for 0, branch-light so the verifier sees a bounded result.
#[inline(always)]
fn log2(mut v: u64) -> u32 {
    let mut r: u32 = 0;
    let mut shift: u32;
    shift = ((v > 0xFFFF_FFFF) as u32) << 5;
    v >>= shift;
    r |= shift;
    shift = ((v > 0xFFFF) as u32) << 4;
    v >>= shift;
    r |= shift;
    shift = ((v > 0xFF) as u32) << 3;
    v >>= shift;
    r |= shift;
    shift = ((v > 0xF) as u32) << 2;
    v >>= shift;
    r |= shift;
    shift = ((v > 0x3) as u32) << 1;
    v >>= shift;
    r |= shift;
    r | ((v >> 1) as u32)
}

/// Add one event to the stats row `key`. `ns` is recorded in total/histogram when `Some`.
#[inline(always)]
fn record(key: &StatKey, bytes: u64, failed: bool, ns: Option<u64>) {
    let p = match STATS.get_ptr_mut(key) {
        Some(p) => p,
        None => {
            let Some(zero) = ZERO.get_ptr(0) else {
                return;
            };
            // SAFETY: `zero` points at a map value of type Stats. EEXIST (another CPU won the
            // race to create the row) is fine: the lookup below finds it. Passing the reference
            // (not `*zero`) keeps the 288-byte value off the BPF stack.
            #[allow(clippy::needless_borrows_for_generic_args)]
            let _ = STATS.insert(key, unsafe { &*zero }, BPF_NOEXIST as u64);
            match STATS.get_ptr_mut(key) {
                Some(p) => p,
                None => {
                    bump(counter::STATS_FULL);
                    return;
                }
            }
        }
    };
    // SAFETY: `p` is this CPU's value for a key only the current task writes (tid in key).
    unsafe {
        (*p).count += 1;
        (*p).bytes += bytes;
        if failed {
            (*p).errors += 1;
        }
        if let Some(ns) = ns {
            (*p).total_ns += ns;
            let b = (log2(ns) as usize) & (HIST_BUCKETS - 1);
            (*p).hist[b] += 1;
        }
    }
}

#[inline(always)]
fn key(pid_tgid: u64, path: u16, op: u16, aux: u32) -> StatKey {
    StatKey {
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        path,
        op,
        aux,
    }
}

// ---------------------------------------------------------------------------------------------
// System calls: enter stores a timestamp, exit pairs it with the return value.
// ---------------------------------------------------------------------------------------------

#[inline(always)]
fn on_enter(ctx: &TracePointContext, op: u16, flags_offset: Option<u32>) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !traced(pid_tgid) {
        return;
    }
    let mut bits = 0;
    if let Some(off) = flags_offset {
        // SAFETY: offset comes from this kernel's tracepoint format file.
        if let Ok(flags) = unsafe { ctx.read_at::<u64>(off as usize) }
            && flags & MSG_ZEROCOPY != 0
        {
            bits |= aux::ZEROCOPY_REQUESTED;
        }
    }
    let v = InFlight {
        // SAFETY: helper without preconditions.
        start_ns: unsafe { bpf_ktime_get_ns() },
        op,
        sock_seen: 0,
        aux: bits,
        family: 0,
        proto: 0,
        _pad: 0,
    };
    if INFLIGHT.insert(pid_tgid, v, 0).is_err() {
        bump(counter::INFLIGHT_FULL);
    }
}

#[inline(always)]
fn on_exit(ctx: &TracePointContext, op: u16) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(p) = INFLIGHT.get_ptr(pid_tgid) else {
        if traced(pid_tgid) {
            bump(counter::UNPAIRED_EXIT);
        }
        return;
    };
    // SAFETY: valid map value; copied out before the element is deleted.
    let f = unsafe { *p };
    let _ = INFLIGHT.remove(pid_tgid);
    if f.op != op || (!syscall::socket_only(op) && f.sock_seen == 0) {
        return;
    }
    // SAFETY: offset from the format file.
    let Ok(ret) = (unsafe { ctx.read_at::<i64>(offsets().sys_exit_ret as usize) }) else {
        return;
    };
    // SAFETY: helper without preconditions.
    let ns = unsafe { bpf_ktime_get_ns() }.saturating_sub(f.start_ns);
    let bytes = if ret > 0 { ret as u64 } else { 0 };
    let bits = f.aux | ((f.family as u32) << aux::FAMILY_SHIFT);
    record(
        &key(pid_tgid, path::SYSCALL, op, bits),
        bytes,
        ret < 0,
        Some(ns),
    );
}

macro_rules! syscall_programs {
    ($enter:ident, $exit:ident, $op:expr, $flags:expr) => {
        #[tracepoint]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            on_enter(&ctx, $op, $flags);
            0
        }

        #[tracepoint]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            on_exit(&ctx, $op);
            0
        }
    };
}

syscall_programs!(
    sys_enter_sendmsg,
    sys_exit_sendmsg,
    syscall::SENDMSG,
    Some(offsets().sendmsg_flags)
);
syscall_programs!(
    sys_enter_sendto,
    sys_exit_sendto,
    syscall::SENDTO,
    Some(offsets().sendto_flags)
);
syscall_programs!(sys_enter_write, sys_exit_write, syscall::WRITE, None);
syscall_programs!(sys_enter_writev, sys_exit_writev, syscall::WRITEV, None);
syscall_programs!(
    sys_enter_sendfile64,
    sys_exit_sendfile64,
    syscall::SENDFILE,
    None
);
syscall_programs!(sys_enter_recvmsg, sys_exit_recvmsg, syscall::RECVMSG, None);
syscall_programs!(
    sys_enter_recvfrom,
    sys_exit_recvfrom,
    syscall::RECVFROM,
    None
);
syscall_programs!(sys_enter_read, sys_exit_read, syscall::READ, None);

// ---------------------------------------------------------------------------------------------
// Socket layer: sock:sock_send_length / sock:sock_recv_length fire when sock_sendmsg() /
// sock_recvmsg() return, with the return value: the byte truth of the socket layer.
// ---------------------------------------------------------------------------------------------

#[inline(always)]
fn on_sock_length(ctx: &TracePointContext, path: u16) -> Result<(), i32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !traced(pid_tgid) {
        return Ok(());
    }
    let off = offsets();
    // SAFETY: offsets from the format file.
    let (family, proto, ret) = unsafe {
        (
            ctx.read_at::<u16>(off.sock_len_family as usize)?,
            ctx.read_at::<u16>(off.sock_len_protocol as usize)?,
            ctx.read_at::<i32>(off.sock_len_ret as usize)?,
        )
    };
    let bytes = if ret > 0 { ret as u64 } else { 0 };
    let bits = (family as u32) << aux::FAMILY_SHIFT;
    record(&key(pid_tgid, path, proto, bits), bytes, ret < 0, None);
    if let Some(f) = INFLIGHT.get_ptr_mut(pid_tgid) {
        // SAFETY: valid map value owned by the current task.
        unsafe {
            (*f).sock_seen = 1;
            (*f).family = family;
            (*f).proto = proto;
        }
    }
    announce(ctx, pid_tgid, ret);
    Ok(())
}

/// One aya-log line on the first traced socket event, so a user can see the programs fire.
#[inline(always)]
fn announce<C: EbpfContext>(ctx: &C, pid_tgid: u64, ret: i32) {
    if let Some(p) = ANNOUNCED.get_ptr_mut(0) {
        // SAFETY: valid map value; a lost race only means a second log line.
        unsafe {
            if *p == 0 {
                *p = 1;
                info!(
                    ctx,
                    "first traced socket event: tgid={} tid={} ret={}",
                    (pid_tgid >> 32) as u32,
                    pid_tgid as u32,
                    ret
                );
            }
        }
    }
}

#[tracepoint]
pub fn sock_send_length(ctx: TracePointContext) -> u32 {
    let _ = on_sock_length(&ctx, path::SOCK_SEND);
    0
}

#[tracepoint]
pub fn sock_recv_length(ctx: TracePointContext) -> u32 {
    let _ = on_sock_length(&ctx, path::SOCK_RECV);
    0
}

// ---------------------------------------------------------------------------------------------
// Process tracking: children of traced processes are traced too (like `perf trace`), so
// `copytrace trace -- sh -c 'python3 …'` sees the python process.
// ---------------------------------------------------------------------------------------------

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    if config_u32(&CONFIG.follow_children) == 0 || config_u32(&CONFIG.filter_mode) != filter::PIDS {
        return 0;
    }
    let parent_tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if PIDS.get_ptr(parent_tgid).is_none() {
        return 0;
    }
    // SAFETY: offset from the format file.
    if let Ok(child) = unsafe { ctx.read_at::<i32>(offsets().fork_child_pid as usize) } {
        // For a new thread `child` is its tid: harmless while it lives (tids and tgids share
        // one number space) and removed again at its exit below.
        if PIDS.insert(child as u32, 1, 0).is_err() {
            bump(counter::PIDS_FULL);
        }
    }
    0
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    if tid != (pid_tgid >> 32) as u32 {
        let _ = PIDS.remove(tid);
    }
    let _ = INFLIGHT.remove(pid_tgid);
    let _ = ctx;
    0
}

// ---------------------------------------------------------------------------------------------
// Feature probes: trivial programs `copytrace probe` loads and attaches to learn which program
// types this kernel allows. They count nothing.
// ---------------------------------------------------------------------------------------------

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

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(not(target_arch = "bpf"))]
fn main() {}

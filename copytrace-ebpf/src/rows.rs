//! Stats rows: the configuration accessors, the clock, health counters and the one function
//! that adds to a row of the `STATS` map.
use core::mem::{MaybeUninit, size_of};

use aya_ebpf::{
    EbpfContext as _,
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_ktime_get_ns, bpf_probe_read_kernel, generated,
    },
    maps::{PerCpuArray, PerCpuHashMap},
    programs::TracePointContext,
};
use copytrace_common::{
    CallKey, HIST_BUCKETS, StatKey, Stats, TaskInfo, TpOffsets, counter, hist_bucket,
};

use crate::{CALLS, CONFIG, COUNTERS, STATS, TASKS, ZERO, ZERO_CALL};

#[inline(always)]
pub fn config_u32(field: &u32) -> u32 {
    // SAFETY: reading a global; volatile so the loader's override is not constant-folded away.
    unsafe { core::ptr::read_volatile(field) }
}

#[inline(always)]
pub fn offsets() -> TpOffsets {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&CONFIG.offsets) }
}

#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// A field of a classic tracepoint's record: the `T` at `off` (from the format file), `None`
/// when it cannot be read.
///
/// Not aya's `read_at`: its `Result<T, c_long>` is compiled into one register that holds the
/// field or, copied from the helper's return, the error code. The verifier of 6.1 keeps the
/// copy linked to the return value, and on the path where the read succeeded (return 0) it
/// takes the field for 0 too: with the branches it then never explores dropped as dead code.
/// The classic `sched_switch` lost its whole switch-in path that way (no off-CPU time at all
/// on 6.1; 6.12 and later verify the same object correctly). Here the field is loaded on its
/// own from where the helper wrote it, so nothing is copied from the return value.
#[inline(always)]
pub fn field<T>(ctx: &TracePointContext, off: u32) -> Option<T> {
    let mut v = MaybeUninit::<T>::uninit();
    // SAFETY: the helper checks the address (`off` lies inside the record: format file) and
    // writes `size_of::<T>()` bytes to `v`, zeroes where the read fails.
    let ret = unsafe {
        generated::bpf_probe_read_kernel(
            v.as_mut_ptr().cast(),
            size_of::<T>() as u32,
            ctx.as_ptr().cast::<u8>().add(off as usize).cast(),
        )
    };
    // SAFETY: initialized by the helper either way. Volatile: the field is loaded as such,
    // never merged with the return value into one register.
    let v = unsafe { core::ptr::read_volatile(v.as_ptr()) };
    (ret == 0).then_some(v)
}

/// Read a `T` at `base + off` in kernel memory (0/default when it cannot be read).
#[inline(always)]
pub fn read_kernel<T: Default>(base: *const u8, off: u32) -> T {
    // SAFETY: the helper checks the address; a failed read yields the default.
    unsafe { bpf_probe_read_kernel(base.add(off as usize) as *const T) }.unwrap_or_default()
}

#[inline(always)]
pub fn bump(idx: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(idx) {
        // Health counters only (never data): the BPF target has no atomic fetch-add in Rust, and
        // a same-CPU preemption between load and store could at worst lose one increment of a
        // counter that is already reporting a problem.
        // SAFETY: the map value is a valid, aligned u64 for the lifetime of the program.
        unsafe { *p += 1 };
    }
}

/// This CPU's value of row `key` in `map`, created from `zero` (a zeroed value) if missing.
/// `tid` is the row's thread (0: none), named when the row is created.
#[inline(always)]
fn row<K, V>(
    map: &PerCpuHashMap<K, V>,
    zero: &PerCpuArray<V>,
    key: &K,
    tid: u32,
) -> Option<*mut V> {
    if let Some(p) = map.get_ptr_mut(key) {
        return Some(p);
    }
    let zero = zero.get_ptr(0)?;
    remember_task(tid);
    // SAFETY: `zero` points at a map value of type V. EEXIST (another CPU won the race to
    // create the row) is fine: the lookup below finds it. Passing the reference (not `*zero`)
    // keeps the value (hundreds of bytes) off the BPF stack.
    #[allow(clippy::needless_borrows_for_generic_args)]
    let _ = map.insert(key, unsafe { &*zero }, BPF_NOEXIST as u64);
    let p = map.get_ptr_mut(key);
    if p.is_none() {
        bump(counter::STATS_FULL);
    }
    p
}

/// Add one event timed `ns` to the histogram `hist` and its total `total_ns`.
#[inline(always)]
fn add_time(total_ns: &mut u64, hist: &mut [u64; HIST_BUCKETS], ns: u64) {
    *total_ns += ns;
    hist[hist_bucket(ns)] += 1;
}

/// Add `count` events and `bytes` to `s`; `ns` goes into its total and histogram.
#[inline(always)]
fn add(s: &mut Stats, count: u64, bytes: u64, failed: bool, ns: Option<u64>) {
    s.count += count;
    s.bytes += bytes;
    if failed {
        s.errors += 1;
    }
    if let Some(ns) = ns {
        add_time(&mut s.total_ns, &mut s.hist, ns);
    }
}

/// Add `count` events and `bytes` to the stats row `key`. `ns` goes into total/histogram.
#[inline(always)]
pub fn record(key: &StatKey, count: u64, bytes: u64, failed: bool, ns: Option<u64>) {
    if let Some(p) = row(&STATS, &ZERO, key, key.tid) {
        // SAFETY: `p` is this CPU's value for a key only the current task writes (tid in key).
        add(unsafe { &mut *p }, count, bytes, failed, ns);
    }
}

/// Add one socket system call of `bytes`, timed `ns`, to the calls row `key`, with the
/// tcp_sendmsg it timed (`tcp_ns`, when `key` has [`copytrace_common::aux::TCP_TIMED`]).
#[inline(always)]
pub fn record_call(key: &CallKey, bytes: u64, failed: bool, ns: u64, tcp_ns: Option<u64>) {
    let Some(p) = row(&CALLS, &ZERO_CALL, key, key.tid) else {
        return;
    };
    // SAFETY: as in `record`.
    let c = unsafe { &mut *p };
    add(&mut c.call, 1, bytes, failed, Some(ns));
    if let Some(ns) = tcp_ns {
        add_time(&mut c.tcp_ns, &mut c.tcp_hist, ns);
    }
}

/// Name the thread of a new row while it is the current task (rows written on behalf of
/// another thread, such as off-CPU time at switch-in, are named later from /proc). Runs only
/// when a row is created, never per event.
#[inline(always)]
fn remember_task(tid: u32) {
    if tid == 0 || bpf_get_current_pid_tgid() as u32 != tid {
        return;
    }
    let info = TaskInfo {
        comm: bpf_get_current_comm().unwrap_or_default(),
        // SAFETY: helper without preconditions.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
    };
    let _ = TASKS.insert(tid, info, BPF_NOEXIST as u64);
}

#[inline(always)]
pub fn key(pid_tgid: u64, path: u16, op: u16, aux: u32) -> StatKey {
    StatKey {
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        path,
        op,
        aux,
    }
}

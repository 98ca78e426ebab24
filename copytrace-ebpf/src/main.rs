//! copytrace's kernel programs.
//!
//! Small and boring on purpose: every program filters by process first, then adds to a per-CPU
//! hash map keyed by (tgid, tid, path, op, aux). Keys carry the thread id, so two tasks never
//! update the same per-CPU value and no atomics are needed even on preemptible kernels.
//! User space sums the per-CPU values when it reads.
//!
//! Each kernel path has up to three implementations, one per attach tier: fentry/fexit,
//! kprobe/kretprobe, and tracepoints. User space (the attach planner) attaches exactly one tier
//! per path, so no event is counted twice. Tracepoint field offsets and the one struct offset
//! needed (`sk_buff.data_len`) are not compiled in: user space reads them from tracefs and BTF
//! and writes them into [`CONFIG`] before loading.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_smp_processor_id,
        bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::{btf_tracepoint, fentry, fexit, kprobe, kretprobe, map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{
        BtfTracePointContext, FEntryContext, FExitContext, ProbeContext, RawTracePointContext,
        RetProbeContext, TracePointContext,
    },
};
use aya_log_ebpf::info;
use copytrace_common::{
    Config, EntryKey, EntryVal, InFlight, MAX_CONFIG_PIDS, MSG_ZEROCOPY, OffCpu, SpanEvent,
    StatKey, Stats, TpOffsets, aux, counter, filter, hist_bucket, inflight, path, syscall,
};

/// [`InFlight::sock_seen`]: a socket-layer event (tracepoint) was recorded during the call.
const SOCK_SEEN_EVENT: u16 = 1;
/// [`InFlight::sock_seen`]: the socket LSM hook fired; record the socket row at exit.
const SOCK_SEEN_HOOK: u16 = 2;

/// Written by user space (`EbpfLoader::override_global`) before load.
#[unsafe(no_mangle)]
static CONFIG: Config = Config::ZERO;

#[map]
static STATS: PerCpuHashMap<StatKey, Stats> = PerCpuHashMap::with_max_entries(16384, 0);

/// Traced threads: their tracked system call in flight, or their state between calls, keyed
/// by pid_tgid. An entry lives from the thread's first tracked call (or exit) after attach
/// until the thread exits; updating it in place costs less than an insert and a delete per
/// call.
#[map]
static INFLIGHT: HashMap<u64, InFlight> = HashMap::with_max_entries(65536, 0);

/// Whether the trace window is open (index 0, non-zero = armed). User space attaches every
/// program first and then arms them all with one write, and disarms them with one write at
/// the end, so every layer counts over the same window.
#[map]
static ARMED: Array<u32> = Array::with_max_entries(1, 0);

/// Function entries waiting for their return (LRU: a missed return cannot leak an entry).
#[map]
static ENTRY: LruHashMap<EntryKey, EntryVal> = LruHashMap::with_max_entries(65536, 0);

/// Traced threads that are off CPU, keyed by tid (LRU: a thread that dies off CPU is evicted).
#[map]
static OFFCPU: LruHashMap<u32, OffCpu> = LruHashMap::with_max_entries(65536, 0);

/// Traced tgids (filter mode PIDS). Values are unused.
#[map]
static PIDS: HashMap<u32, u32> = HashMap::with_max_entries(8192, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// A zeroed `Stats` to insert from: a 288-byte value would not fit the 512-byte BPF stack
/// comfortably next to everything else.
#[map]
static ZERO: PerCpuArray<Stats> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU call counter for sampling.
#[map]
static SAMPLE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Sampled system calls for the timeline export.
#[map]
static SPANS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

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
fn now() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
fn armed() -> bool {
    ARMED.get(0).is_some_and(|v| *v != 0)
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

/// Is `tgid` one of the traced processes? The config list first (no map lookup: this runs
/// for every system call on the machine), the map only when children are followed.
#[inline(always)]
fn pid_listed(tgid: u32) -> bool {
    let mut i = 0;
    while i < MAX_CONFIG_PIDS {
        // SAFETY: reading a global.
        if unsafe { core::ptr::read_volatile(&CONFIG.pids[i]) } == tgid {
            return true;
        }
        i += 1;
    }
    config_u32(&CONFIG.pids_in_map) != 0 && PIDS.get_ptr(tgid).is_some()
}

/// Is the current task one we trace?
#[inline(always)]
fn traced(pid_tgid: u64) -> bool {
    let tgid = (pid_tgid >> 32) as u32;
    if tgid == config_u32(&CONFIG.self_tgid) {
        return false;
    }
    if config_u32(&CONFIG.filter_mode) == filter::PIDS && !pid_listed(tgid) {
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

/// Add `count` events and `bytes` to the stats row `key`. `ns` goes into total/histogram.
#[inline(always)]
fn record(key: &StatKey, count: u64, bytes: u64, failed: bool, ns: Option<u64>) {
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
        (*p).count += count;
        (*p).bytes += bytes;
        if failed {
            (*p).errors += 1;
        }
        if let Some(ns) = ns {
            (*p).total_ns += ns;
            (*p).hist[hist_bucket(ns)] += 1;
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
    if let Some(off) = flags_offset
        // SAFETY: offset comes from this kernel's tracepoint format file.
        && let Ok(flags) = unsafe { ctx.read_at::<u64>(off as usize) }
        && flags & MSG_ZEROCOPY != 0
    {
        bits |= aux::ZEROCOPY_REQUESTED;
    }
    let v = InFlight {
        start_ns: now(),
        tcp_start_ns: 0,
        copied: 0,
        copy_calls: 0,
        aux: bits,
        op,
        sock_seen: 0,
        family: 0,
        proto: 0,
        state: inflight::ACTIVE | if armed() { inflight::IN_WINDOW } else { 0 },
        _pad: 0,
    };
    match INFLIGHT.get_ptr_mut(pid_tgid) {
        // SAFETY: valid map value owned by the current task.
        Some(p) => unsafe { *p = v },
        None => {
            if INFLIGHT.insert(pid_tgid, v, 0).is_err() {
                bump(counter::INFLIGHT_FULL);
            }
        }
    }
}

/// The thread is between tracked calls from now on (its first exit since attach).
#[inline(always)]
fn mark_between_calls(pid_tgid: u64) {
    let v = InFlight::default();
    if INFLIGHT.insert(pid_tgid, v, 0).is_err() {
        bump(counter::INFLIGHT_FULL);
    }
}

#[inline(always)]
fn on_exit(ctx: &TracePointContext, op: u16) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(p) = INFLIGHT.get_ptr_mut(pid_tgid) else {
        // A call that began before attach: not counted, and the thread is known from now on.
        if traced(pid_tgid) {
            bump(counter::UNPAIRED_EXIT);
            mark_between_calls(pid_tgid);
        }
        return;
    };
    // SAFETY: valid map value owned by the current task; copied out, then marked idle.
    let f = unsafe {
        let f = *p;
        (*p).state = 0;
        f
    };
    let counted = inflight::ACTIVE | inflight::IN_WINDOW;
    if f.state & counted != counted || f.op != op || (!syscall::socket_only(op) && f.sock_seen == 0)
    {
        return;
    }
    // SAFETY: offset from the format file.
    let Ok(ret) = (unsafe { ctx.read_at::<i64>(offsets().sys_exit_ret as usize) }) else {
        return;
    };
    let t = now();
    let ns = t.saturating_sub(f.start_ns);
    let bytes = if ret > 0 { ret as u64 } else { 0 };
    let family_bits = (f.family as u32) << aux::FAMILY_SHIFT;
    record(
        &key(pid_tgid, path::SYSCALL, op, f.aux | family_bits),
        1,
        bytes,
        ret < 0,
        Some(ns),
    );
    if f.sock_seen == SOCK_SEEN_HOOK {
        // Probe tier of the socket layer: the row the sock:* tracepoints would have written.
        let p = if syscall::is_send(op) {
            path::SOCK_SEND
        } else {
            path::SOCK_RECV
        };
        record(
            &key(pid_tgid, p, f.proto, family_bits),
            1,
            bytes,
            ret < 0,
            None,
        );
    }
    // Copies measured by a probe during this call (the tracepoint-only tier derives copy
    // bytes in user space from the syscall rows instead: no work here).
    if f.copy_calls > 0 && f.sock_seen != 0 {
        record(
            &key(pid_tgid, path::COPY_FROM_USER, op, 0),
            f.copy_calls as u64,
            f.copied,
            false,
            None,
        );
    }
    sample(pid_tgid, &f, op, ret, ns);
}

/// Emit one of every `sample_every` calls to the ring buffer for the timeline export.
#[inline(always)]
fn sample(pid_tgid: u64, f: &InFlight, op: u16, ret: i64, ns: u64) {
    let every = config_u32(&CONFIG.sample_every) as u64;
    if every == 0 {
        return;
    }
    let Some(c) = SAMPLE.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: per-CPU slot; a lost race only shifts which call is sampled.
    let n = unsafe {
        *c += 1;
        *c
    };
    if n % every != 0 {
        return;
    }
    let ev = SpanEvent {
        start_ns: f.start_ns,
        duration_ns: ns,
        ret,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        op,
        family: f.family,
        aux: f.aux,
    };
    if SPANS.output::<SpanEvent>(&ev, 0).is_err() {
        bump(counter::RINGBUF_FULL);
    }
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

/// A socket-layer return (`sock_sendmsg()`/`sock_recvmsg()`): count it, and mark the
/// in-flight system call as a socket call. `sock_fields` reads (family, protocol) only once
/// the task is known to be traced.
/// Does an event of the current thread fall inside the trace window? Inside a tracked call:
/// when the call entered while armed (so every layer of a call counts, or none). Between
/// calls: when armed now. A traced thread not seen since attach may be inside a call that
/// began before; its events are not counted (and counted as such). Returns the thread's
/// entry and whether it is inside a call.
#[inline(always)]
fn window(pid_tgid: u64) -> Option<(*mut InFlight, bool)> {
    let Some(f) = INFLIGHT.get_ptr_mut(pid_tgid) else {
        if armed() && traced(pid_tgid) {
            bump(counter::UNKNOWN_CONTEXT);
        }
        return None;
    };
    // SAFETY: valid map value owned by the current task.
    let state = unsafe { (*f).state };
    let in_call = state & inflight::ACTIVE != 0;
    let counts = if in_call {
        state & inflight::IN_WINDOW != 0
    } else {
        armed()
    };
    counts.then_some((f, in_call))
}

/// [`window`] for probe-tier events nested in a call: also marks the call as having counted
/// something (user space waits for such calls to exit when it disarms).
#[inline(always)]
fn counts(pid_tgid: u64) -> bool {
    let Some((f, in_call)) = window(pid_tgid) else {
        return false;
    };
    if in_call {
        // SAFETY: valid map value owned by the current task.
        unsafe { (*f).state |= inflight::NESTED };
    }
    true
}

#[inline(always)]
fn sock_event<C: EbpfContext>(
    ctx: &C,
    path: u16,
    ret: i64,
    sock_fields: impl FnOnce() -> (u16, u16),
) {
    let pid_tgid = bpf_get_current_pid_tgid();
    // Only traced threads have an entry: one lookup filters and finds the call.
    let Some((f, in_call)) = window(pid_tgid) else {
        return;
    };
    let (family, proto) = sock_fields();
    let bytes = if ret > 0 { ret as u64 } else { 0 };
    let bits = (family as u32) << aux::FAMILY_SHIFT;
    record(&key(pid_tgid, path, proto, bits), 1, bytes, ret < 0, None);
    if in_call {
        // SAFETY: valid map value owned by the current task.
        let tcp_start = unsafe {
            (*f).sock_seen = SOCK_SEEN_EVENT;
            (*f).state |= inflight::NESTED;
            (*f).family = family;
            (*f).proto = proto;
            let t = (*f).tcp_start_ns;
            (*f).tcp_start_ns = 0;
            t
        };
        // Tracepoint tier of tcp_sendmsg: its copy loop's first iteration left a timestamp in
        // the in-flight entry; sock_sendmsg returning ends the call.
        if path == path::SOCK_SEND && tcp_start != 0 {
            record(
                &key(pid_tgid, path::TCP_SENDMSG, 0, aux::DERIVED),
                1,
                bytes,
                ret < 0,
                Some(now().saturating_sub(tcp_start)),
            );
        }
    }
    announce(ctx, pid_tgid, ret as i32);
}

/// Tracepoint tier (`sock:sock_send_length` / `sock:sock_recv_length`, kernel 6.3+).
#[inline(always)]
fn on_sock_length(ctx: &TracePointContext, path: u16) -> Result<(), i32> {
    let off = offsets();
    // SAFETY: offset from the format file.
    let ret = unsafe { ctx.read_at::<i32>(off.sock_len_ret as usize)? };
    sock_event(ctx, path, ret as i64, || {
        // SAFETY: offsets from the format file.
        unsafe {
            (
                ctx.read_at::<u16>(off.sock_len_family as usize)
                    .unwrap_or(0),
                ctx.read_at::<u16>(off.sock_len_protocol as usize)
                    .unwrap_or(0),
            )
        }
    });
    Ok(())
}

/// (family, protocol) of a `struct socket *`, through BTF offsets (0 when unknown).
#[inline(always)]
fn socket_fields(sock: *const u8) -> (u16, u16) {
    let off = offsets();
    if off.socket_sk == 0 || sock.is_null() {
        return (0, 0);
    }
    // SAFETY: kernel pointers read through the helper.
    unsafe {
        let Ok(sk) = bpf_probe_read_kernel(sock.add(off.socket_sk as usize) as *const *const u8)
        else {
            return (0, 0);
        };
        if sk.is_null() {
            return (0, 0);
        }
        let family =
            bpf_probe_read_kernel(sk.add(off.sock_family as usize) as *const u16).unwrap_or(0);
        let proto =
            bpf_probe_read_kernel(sk.add(off.sock_protocol as usize) as *const u16).unwrap_or(0);
        (family, proto)
    }
}

// Probe tiers of the socket layer, for kernels without the sock:* length tracepoints (< 6.3).
// sock_sendmsg()/sock_recvmsg() themselves are small and inlined into the system calls in
// distribution kernels (a probe on their out-of-line copy sees nothing), but every socket send
// and receive passes the LSM hook security_socket_{send,recv}msg(sock, msg, size), which lives
// in another file and is never inlined. The hook only marks the in-flight system call as a
// socket call; its socket-layer row is recorded at the system call's exit, with the return
// value as the byte count.

#[inline(always)]
fn sock_hook(sock: *const u8) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some(f) = INFLIGHT.get_ptr_mut(pid_tgid)
        // SAFETY: valid map value owned by the current task.
        && unsafe { (*f).state } & inflight::ACTIVE != 0
    {
        let (family, proto) = socket_fields(sock);
        // SAFETY: valid map value owned by the current task.
        unsafe {
            (*f).sock_seen = SOCK_SEEN_HOOK;
            (*f).family = family;
            (*f).proto = proto;
        }
    }
}

#[fentry(function = "security_socket_sendmsg")]
pub fn fe_sock_send(ctx: FEntryContext) -> i32 {
    sock_hook(ctx.arg(0));
    0
}

#[fentry(function = "security_socket_recvmsg")]
pub fn fe_sock_recv(ctx: FEntryContext) -> i32 {
    sock_hook(ctx.arg(0));
    0
}

#[kprobe]
pub fn kp_sock_send(ctx: ProbeContext) -> u32 {
    if let Some(sock) = ctx.arg::<*const u8>(0) {
        sock_hook(sock);
    }
    0
}

#[kprobe]
pub fn kp_sock_recv(ctx: ProbeContext) -> u32 {
    if let Some(sock) = ctx.arg::<*const u8>(0) {
        sock_hook(sock);
    }
    0
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
// Entry/return pairing shared by the probe tiers.
// ---------------------------------------------------------------------------------------------

#[inline(always)]
fn entry_key(pid_tgid: u64, path: u16) -> EntryKey {
    EntryKey {
        pid_tgid,
        path: path as u64,
    }
}

/// Key for paths that run in softirq context, where the "current" task may be the idle task
/// (pid 0 on every CPU): the CPU disambiguates, and no migration happens with BHs disabled.
#[inline(always)]
fn entry_key_cpu(pid_tgid: u64, path: u16) -> EntryKey {
    // SAFETY: helper without preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() } as u64;
    EntryKey {
        pid_tgid,
        path: path as u64 | (cpu << 16),
    }
}

#[inline(always)]
fn pair_enter(k: &EntryKey, arg: u64) {
    let v = EntryVal {
        start_ns: now(),
        arg,
    };
    if ENTRY.insert(k, v, 0).is_err() {
        bump(counter::ENTRY_FULL);
    }
}

/// The entry saved for `k` (removed) and the time since.
#[inline(always)]
fn pair_exit(k: &EntryKey) -> Option<(EntryVal, u64)> {
    let p = ENTRY.get_ptr(k)?;
    // SAFETY: valid map value, copied before removal.
    let v = unsafe { *p };
    let _ = ENTRY.remove(k);
    Some((v, now().saturating_sub(v.start_ns)))
}

/// Is the current task inside a tracked system call that counts? Returns its entry.
#[inline(always)]
fn in_call(pid_tgid: u64) -> Option<*mut InFlight> {
    let f = INFLIGHT.get_ptr_mut(pid_tgid)?;
    let counted = inflight::ACTIVE | inflight::IN_WINDOW;
    // SAFETY: valid map value.
    (unsafe { (*f).state } & counted == counted).then_some(f)
}

/// [`in_call`], for send-type calls only.
#[inline(always)]
fn in_send(pid_tgid: u64) -> Option<*mut InFlight> {
    let f = in_call(pid_tgid)?;
    // SAFETY: valid map value.
    syscall::is_send(unsafe { (*f).op }).then_some(f)
}

/// Key for events that may run in another task's context (counted while armed): the traced
/// task's own key, or tgid 0 ("not attributable") when the current task is not traced.
#[inline(always)]
fn attributed_key(pid_tgid: u64, path: u16, aux: u32) -> StatKey {
    if traced(pid_tgid) {
        key(pid_tgid, path, 0, aux)
    } else {
        key(0, path, 0, aux)
    }
}

// --- tcp_sendmsg -----------------------------------------------------------------------------

#[inline(always)]
fn tcp_enter() {
    let pid_tgid = bpf_get_current_pid_tgid();
    if counts(pid_tgid) {
        pair_enter(&entry_key(pid_tgid, path::TCP_SENDMSG), 0);
    }
}

#[inline(always)]
fn tcp_exit(ret: i64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some((_, ns)) = pair_exit(&entry_key(pid_tgid, path::TCP_SENDMSG)) {
        let bytes = if ret > 0 { ret as u64 } else { 0 };
        record(
            &key(pid_tgid, path::TCP_SENDMSG, 0, 0),
            1,
            bytes,
            ret < 0,
            Some(ns),
        );
    }
}

#[fentry(function = "tcp_sendmsg")]
pub fn fe_tcp_sendmsg(_ctx: FEntryContext) -> i32 {
    tcp_enter();
    0
}

#[fexit(function = "tcp_sendmsg")]
pub fn fx_tcp_sendmsg(ctx: FExitContext) -> i32 {
    if let Ok(ret) = ctx.ret::<i32>() {
        tcp_exit(ret as i64);
    }
    0
}

#[kprobe]
pub fn kp_tcp_sendmsg(_ctx: ProbeContext) -> u32 {
    tcp_enter();
    0
}

#[kretprobe]
pub fn krp_tcp_sendmsg(ctx: RetProbeContext) -> u32 {
    tcp_exit(ctx.ret::<i32>() as i64);
    0
}

/// Tracepoint tier: `tcp:tcp_sendmsg_locked` fires once per copy-loop iteration. The first
/// iteration of a call starts its clock (in the system call's in-flight entry: only traced
/// tasks have one, so no filter lookup); `sock:sock_send_length` (the return) stops it.
#[tracepoint]
pub fn tcp_sendmsg_locked(_ctx: TracePointContext) -> u32 {
    if let Some(f) = in_call(bpf_get_current_pid_tgid()) {
        // SAFETY: valid map value owned by the current task.
        unsafe {
            if (*f).tcp_start_ns == 0 {
                (*f).tcp_start_ns = now();
            }
        }
    }
    0
}

// --- user -> kernel copies (__check_object_size(ptr, n, to_user)) ----------------------------

#[inline(always)]
fn usercopy(n: u64, to_user: bool) {
    if to_user {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    // Only copies inside a send call count, and only once the call has reached the socket
    // layer (its LSM hook marks the call): before that, sendmsg copies its iovec array in
    // (16 bytes per entry, through the same check), which is metadata, not data sent. They
    // are attributed at the call's exit, once we know the call really went to a socket.
    if let Some(f) = in_send(pid_tgid) {
        // SAFETY: valid map value owned by the current task.
        unsafe {
            if (*f).sock_seen != 0 {
                (*f).copied += n;
                (*f).copy_calls += 1;
            }
        }
    }
}

#[fentry(function = "__check_object_size")]
pub fn fe_usercopy(ctx: FEntryContext) -> i32 {
    let n: u64 = ctx.arg(1);
    let to_user: u8 = ctx.arg(2);
    usercopy(n, to_user != 0);
    0
}

#[kprobe]
pub fn kp_usercopy(ctx: ProbeContext) -> u32 {
    if let (Some(n), Some(to_user)) = (ctx.arg::<u64>(1), ctx.arg::<u64>(2)) {
        usercopy(n, to_user & 0xff != 0);
    }
    0
}

// --- zero-copy attach (skb_zerocopy_iter_stream returns the bytes attached) -------------------

#[inline(always)]
fn zc_enter() {
    let pid_tgid = bpf_get_current_pid_tgid();
    if counts(pid_tgid) {
        pair_enter(&entry_key(pid_tgid, path::ZEROCOPY), 0);
    }
}

#[inline(always)]
fn zc_exit(ret: i64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some((_, ns)) = pair_exit(&entry_key(pid_tgid, path::ZEROCOPY)) {
        let bytes = if ret > 0 { ret as u64 } else { 0 };
        record(
            &key(pid_tgid, path::ZEROCOPY, 0, 0),
            1,
            bytes,
            ret < 0,
            Some(ns),
        );
    }
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

// --- page pinning (get_user_pages_fast(start, nr_pages, gup_flags, pages) and friends) --------

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

// --- deferred copies (skb_copy_ubufs(skb, gfp): the kernel copies pinned pages after all) -----

#[inline(always)]
fn ubufs_enter(skb: *const u8) {
    if !armed() {
        return;
    }
    let off = offsets().skb_data_len;
    let bytes = if off == 0 {
        0
    } else {
        // SAFETY: reading a kernel pointer through the helper.
        unsafe { bpf_probe_read_kernel(skb.add(off as usize) as *const u32) }.unwrap_or(0) as u64
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

// --- zero-copy completions (msg_zerocopy_callback(skb, uarg, success)) ------------------------

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

// --- receive copies (skb_copy_datagram_iter(skb, offset, to, len), 0 on success) --------------

#[inline(always)]
fn recv_enter(len: u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if counts(pid_tgid) {
        pair_enter(&entry_key(pid_tgid, path::RECV_COPY), len);
    }
}

#[inline(always)]
fn recv_exit(ret: i64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some((e, ns)) = pair_exit(&entry_key(pid_tgid, path::RECV_COPY)) {
        let bytes = if ret == 0 { e.arg } else { 0 };
        record(
            &key(pid_tgid, path::RECV_COPY, 0, 0),
            1,
            bytes,
            ret != 0,
            Some(ns),
        );
    }
}

#[fentry(function = "skb_copy_datagram_iter")]
pub fn fe_recv_copy(ctx: FEntryContext) -> i32 {
    let len: i32 = ctx.arg(3);
    recv_enter(len as u64);
    0
}

#[fexit(function = "skb_copy_datagram_iter")]
pub fn fx_recv_copy(ctx: FExitContext) -> i32 {
    if let Ok(ret) = ctx.ret::<i32>() {
        recv_exit(ret as i64);
    }
    0
}

#[kprobe]
pub fn kp_recv_copy(ctx: ProbeContext) -> u32 {
    if let Some(len) = ctx.arg::<u64>(3) {
        recv_enter(len & 0xffff_ffff);
    }
    0
}

#[kretprobe]
pub fn krp_recv_copy(ctx: RetProbeContext) -> u32 {
    recv_exit(ctx.ret::<i32>() as i64);
    0
}

/// Tracepoint tier: `skb:skb_copy_datagram_iovec` fires at the start of the copy with its
/// length (no return value: a failed copy would still count).
#[tracepoint]
pub fn skb_copy_datagram_iovec(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !counts(pid_tgid) {
        return 0;
    }
    // SAFETY: offset from the format file.
    if let Ok(len) = unsafe { ctx.read_at::<i32>(offsets().skb_copy_len as usize) } {
        record(
            &key(pid_tgid, path::RECV_COPY, 0, aux::DERIVED),
            1,
            len.max(0) as u64,
            false,
            None,
        );
    }
    0
}

// --- scheduling: time traced threads spend off CPU --------------------------------------------

#[tracepoint]
pub fn sched_switch(ctx: TracePointContext) -> u32 {
    // Runs in the context of the task being switched out.
    let prev = bpf_get_current_pid_tgid();
    let t = now();
    if prev as u32 != 0 && traced(prev) && armed() {
        let v = OffCpu {
            since_ns: t,
            tgid: (prev >> 32) as u32,
            _pad: 0,
        };
        let _ = OFFCPU.insert(prev as u32, v, 0);
    }
    // SAFETY: offset from the format file.
    let Ok(next) = (unsafe { ctx.read_at::<i32>(offsets().switch_next_pid as usize) }) else {
        return 0;
    };
    let next = next as u32;
    if let Some(o) = OFFCPU.get_ptr(next) {
        // SAFETY: valid map value, copied before removal.
        let o = unsafe { *o };
        let _ = OFFCPU.remove(next);
        let k = StatKey {
            tgid: o.tgid,
            tid: next,
            path: path::OFF_CPU,
            op: 0,
            aux: 0,
        };
        record(&k, 1, 0, false, Some(t.saturating_sub(o.since_ns)));
    }
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
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    if tid != (pid_tgid >> 32) as u32 {
        let _ = PIDS.remove(tid);
    }
    let _ = INFLIGHT.remove(pid_tgid);
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

//! copytrace's kernel programs.
//!
//! Small and boring on purpose: every program filters by process first, then adds to a per-CPU
//! hash map keyed by (tgid, tid, path, op, aux). Keys carry the thread id, so two tasks never
//! update the same per-CPU value and no atomics are needed even on preemptible kernels.
//! User space sums the per-CPU values when it reads.
//!
//! One module per kernel path. Each holds that path's entry points for every attach tier it
//! has — fentry/fexit, kprobe/kretprobe, raw tracepoint, tracepoint — side by side over one
//! shared body; user space (the attach planner) attaches exactly one tier per path, so no
//! event is counted twice. Tracepoint field offsets and the struct offsets needed are not
//! compiled in: user space reads them from tracefs and BTF and writes them into [`CONFIG`]
//! before loading. This file holds only the maps, the configuration and the module list.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use copytrace_common::{
    CallKey, CallStats, Config, EntryKey, EntryVal, InFlight, InFlightSlot, OffCpu, StatKey, Stats,
    TaskInfo, UringReq, counter,
};

// Shared machinery: who and when counts, stats rows, entry/return pairing.
mod filter;
mod pairing;
mod rows;
mod slots;

// Kernel paths.
mod completions;
mod deferred;
mod pinning;
mod probes;
mod receive;
mod sched;
mod socket;
mod syscalls;
mod tcp;
mod uring;
mod usercopy;
mod zerocopy;

// Never attached by a trace: the tests make the kernel skip their runs.
mod skipcheck;

/// Written by user space (`EbpfLoader::override_global`) before load.
#[unsafe(no_mangle)]
static CONFIG: Config = Config::ZERO;

#[map]
static STATS: PerCpuHashMap<StatKey, Stats> = PerCpuHashMap::with_max_entries(16384, 0);

/// Socket system calls of the probe and raw tiers, each with its socket-layer row (and the
/// tcp_sendmsg it timed) in the same value: one update per call (see `CallStats`).
#[map]
static CALLS: PerCpuHashMap<CallKey, CallStats> = PerCpuHashMap::with_max_entries(8192, 0);

/// The name and cgroup of each thread with stats rows, captured when its first row is created
/// (the exporter names rows of threads that exited before it read them). User space removes
/// an entry when it reaps the thread's rows; a full map costs only the name (user space then
/// reads /proc).
#[map]
static TASKS: HashMap<u32, TaskInfo> = HashMap::with_max_entries(16384, 0);

/// Traced threads: their tracked system call in flight, or their state between calls, one
/// slot per thread indexed by tid (see `slots`). A slot lives from the thread's first
/// tracked call (or exit) after attach until the thread exits; updating it in place costs
/// less than an insert and a delete per call. User space sets the length (its default is
/// [`copytrace_common::INFLIGHT_SLOTS`]) and maps it to find calls still open at disarm.
#[map]
static INFLIGHT_SLOTS: Array<InFlightSlot> =
    Array::with_max_entries(copytrace_common::INFLIGHT_SLOTS, BPF_F_MMAPABLE);

/// Which thread claimed each slot of `INFLIGHT_SLOTS` (slot index to pid_tgid): the claim's
/// arbiter, since an insert of an existing key fails atomically. As long as the array.
#[map]
static SLOT_OWNERS: HashMap<u32, u64> =
    HashMap::with_max_entries(copytrace_common::INFLIGHT_SLOTS, 0);

/// Traced threads whose slot another live thread owns, keyed by pid_tgid.
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

/// Traced threads and since when they are off CPU (0: on CPU), keyed by tid: created at a
/// thread's first switch out, updated in place at each switch, removed when the thread exits;
/// a thread's last switch-out (after it exited) creates nothing. Not an LRU map (its inserts
/// cost microseconds here), and no insert and delete per switch: in place, a traced ping-pong's
/// `sched_switch` runs cost a quarter less.
#[map]
static OFFCPU: HashMap<u32, OffCpu> = HashMap::with_max_entries(65536, 0);

/// How user space attached the paths ([`copytrace_common::plan`] bits, index 0), written
/// once before the trace is armed.
#[map]
static PLAN: Array<u32> = Array::with_max_entries(1, 0);

/// io_uring send requests between submission and completion, keyed by the request (LRU: a
/// request cancelled without a completion event cannot leak an entry).
#[map]
static URING: LruHashMap<u64, UringReq> = LruHashMap::with_max_entries(16384, 0);

/// Traced tgids (filter mode PIDS). Values are unused.
#[map]
static PIDS: HashMap<u32, u32> = HashMap::with_max_entries(8192, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// A zeroed `Stats` to insert from: a 288-byte value would not fit the 512-byte BPF stack
/// comfortably next to everything else.
#[map]
static ZERO: PerCpuArray<Stats> = PerCpuArray::with_max_entries(1, 0);

/// A zeroed `CallStats`, for the same reason.
#[map]
static ZERO_CALL: PerCpuArray<CallStats> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU call counter for sampling.
#[map]
static SAMPLE: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Sampled system calls for the timeline export.
#[map]
static SPANS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

/// Set once the first traced event has been logged.
#[map]
static ANNOUNCED: Array<u64> = Array::with_max_entries(1, 0);

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

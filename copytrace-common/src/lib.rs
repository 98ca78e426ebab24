//! Types shared by the eBPF programs (`copytrace-ebpf`) and user space (`copytrace`).
//!
//! Everything here is `#[repr(C)]` with explicit padding so that the bytes the kernel writes into
//! a map are exactly the bytes user space reads back: a hash key with implicit padding would hash
//! garbage and split one logical row into several.
#![no_std]

/// Kernel paths a byte can take. A row in the stats map belongs to exactly one path.
pub mod path {
    /// A system call, paired enter/exit: `count` calls, `bytes` = sum of positive return values.
    pub const SYSCALL: u16 = 0;
    /// `sock_sendmsg()` returning (tracepoint `sock:sock_send_length`), `bytes` = positive `ret`.
    pub const SOCK_SEND: u16 = 1;
    /// `sock_recvmsg()` returning (tracepoint `sock:sock_recv_length`).
    pub const SOCK_RECV: u16 = 2;
    /// `tcp_sendmsg()`: one row per call, bytes accepted (return value), time inside.
    pub const TCP_SENDMSG: u16 = 3;
    /// Bytes the CPU copied from user memory into kernel buffers during send system calls.
    pub const COPY_FROM_USER: u16 = 4;
    /// Bytes attached to skbs by reference (MSG_ZEROCOPY) instead of being copied.
    pub const ZEROCOPY: u16 = 5;
    /// User pages pinned for zero-copy during send calls (`bytes` holds **pages**).
    pub const PIN_PAGES: u16 = 6;
    /// Bytes the kernel copied *later* out of pinned user pages (`skb_copy_ubufs`).
    pub const DEFERRED_COPY: u16 = 7;
    /// Bytes copied from skbs to user memory on receive.
    pub const RECV_COPY: u16 = 8;
    /// Time a traced thread spent off CPU (`sched:sched_switch`), `count` = switches.
    pub const OFF_CPU: u16 = 9;
    /// Zero-copy completions: `msg_zerocopy_callback` (op [`super::completion::SOCKET`], aux
    /// 1 = sent by reference), or io_uring SEND_ZC notifications (op
    /// [`super::completion::IO_URING`], aux 0 = the kernel reported it copied).
    pub const ZC_COMPLETION: u16 = 10;
    /// io_uring send requests, submission to completion (`io_uring:io_uring_submit_req` /
    /// `io_uring_complete`): `op` one of [`super::uring`], `bytes` = positive results,
    /// attributed to the submitting thread wherever the request completed.
    pub const URING_SEND: u16 = 11;
    pub const COUNT: u16 = 12;
}

/// Sources of [`path::ZC_COMPLETION`] rows (in [`StatKey::op`]).
pub mod completion {
    pub const SOCKET: u16 = 0;
    pub const IO_URING: u16 = 1;
}

/// io_uring send opcodes copytrace follows, as [`StatKey::op`] of [`path::URING_SEND`] rows.
pub mod uring {
    pub const SEND: u16 = 0;
    pub const SEND_ZC: u16 = 1;
    pub const SENDMSG: u16 = 2;
    pub const SENDMSG_ZC: u16 = 3;
    pub const COUNT: u16 = 4;
    pub const NAMES: [&str; COUNT as usize] = [
        "io_uring send",
        "io_uring send_zc",
        "io_uring sendmsg",
        "io_uring sendmsg_zc",
    ];

    /// The kernel's opcode (`enum io_uring_op`) to ours.
    pub const fn from_opcode(opcode: u8) -> Option<u16> {
        match opcode {
            26 => Some(SEND),
            47 => Some(SEND_ZC),
            9 => Some(SENDMSG),
            48 => Some(SENDMSG_ZC),
            _ => None,
        }
    }

    pub const fn zero_copy(op: u16) -> bool {
        matches!(op, SEND_ZC | SENDMSG_ZC)
    }

    /// `IORING_CQE_F_NOTIF`: the completion is a SEND_ZC notification.
    pub const CQE_F_NOTIF: u32 = 1 << 3;
    /// `IORING_NOTIF_USAGE_ZC_COPIED`, in a notification's result.
    pub const NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;
}

/// An io_uring send request between submission and completion (key: the request pointer).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UringReq {
    pub start_ns: u64,
    /// The submitting thread.
    pub pid_tgid: u64,
    /// One of [`uring`].
    pub op: u32,
    pub _pad: u32,
}

/// System calls we pair enter/exit for. Stored in [`StatKey::op`] for [`path::SYSCALL`] rows.
pub mod syscall {
    pub const SENDMSG: u16 = 0;
    pub const SENDTO: u16 = 1;
    pub const WRITE: u16 = 2;
    pub const WRITEV: u16 = 3;
    pub const SENDFILE: u16 = 4;
    pub const RECVMSG: u16 = 5;
    pub const RECVFROM: u16 = 6;
    pub const READ: u16 = 7;
    pub const COUNT: u16 = 8;
    /// Not a system call: [`super::path::COPY_FROM_USER`] rows of copies inside io_uring send
    /// requests (inside `tcp_sendmsg`, between tracked calls), probe tiers.
    pub const IO_URING: u16 = COUNT;

    /// Tracepoint names (`syscalls:sys_enter_<name>`), indexed by the constants above.
    pub const NAMES: [&str; COUNT as usize] = [
        "sendmsg",
        "sendto",
        "write",
        "writev",
        "sendfile64",
        "recvmsg",
        "recvfrom",
        "read",
    ];

    /// Calls that only make sense on sockets: counted even when they fail before reaching the
    /// socket layer. `write`/`read`/`writev`/`sendfile64` are counted only when a socket
    /// tracepoint fired during the call, so file I/O never pollutes the breakdown.
    pub const fn socket_only(op: u16) -> bool {
        matches!(op, SENDMSG | SENDTO | RECVMSG | RECVFROM)
    }

    /// Calls that may send on a socket.
    pub const fn is_send(op: u16) -> bool {
        matches!(op, SENDMSG | SENDTO | WRITE | WRITEV | SENDFILE)
    }
}

/// Layout of [`StatKey::aux`].
pub mod aux {
    /// [`path::SYSCALL`] rows: the call passed `MSG_ZEROCOPY`.
    pub const ZEROCOPY_REQUESTED: u32 = 1;
    /// The row was derived from other events rather than measured by a probe on the path
    /// (tcp_sendmsg timed between tracepoints).
    pub const DERIVED: u32 = 2;
    /// [`path::PIN_PAGES`]: pages *requested* (the nr_pages argument) rather than pinned.
    pub const REQUESTED: u32 = 4;
    /// [`path::SOCK_SEND`] rows as the kernel writes them: each event also ended a
    /// tcp_sendmsg timed from its first copy-loop iteration (tracepoint tiers), and the row's
    /// time is that tcp_sendmsg's. One row instead of two saves a map update per send; user
    /// space splits it into the socket row and the derived [`path::TCP_SENDMSG`] row.
    pub const TCP_TIMED: u32 = 8;
    /// The socket's address family is stored in the upper 16 bits (0 = not a socket / unknown).
    pub const FAMILY_SHIFT: u32 = 16;

    pub const fn family(aux: u32) -> u16 {
        (aux >> FAMILY_SHIFT) as u16
    }
}

/// Linux `MSG_ZEROCOPY`.
pub const MSG_ZEROCOPY: u64 = 0x0400_0000;

/// Key of the per-CPU stats hash map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatKey {
    /// 0 for events in a context copytrace could not attribute (softirq of another task).
    pub tgid: u32,
    pub tid: u32,
    /// One of [`path`].
    pub path: u16,
    /// For [`path::SYSCALL`], one of [`syscall`]; for socket paths, the IP protocol.
    pub op: u16,
    /// Path-specific qualifier (see [`aux`]).
    pub aux: u32,
}

/// Number of log2 latency buckets: bucket `i` holds values `v` with `floor(log2(v)) == i`
/// (`v == 0` lands in bucket 0); the last bucket also holds everything larger.
pub const HIST_BUCKETS: usize = 32;

/// The histogram bucket of `v`: floor(log2(v)) clamped to the last bucket. Branch-light so the
/// eBPF verifier sees a bounded index.
#[inline(always)]
pub fn hist_bucket(mut v: u64) -> usize {
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
    let log2 = (r | ((v >> 1) as u32)) as usize;
    if log2 > HIST_BUCKETS - 1 {
        HIST_BUCKETS - 1
    } else {
        log2
    }
}

/// Value of the per-CPU stats hash map.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub count: u64,
    pub bytes: u64,
    /// Calls that returned a negative errno.
    pub errors: u64,
    pub total_ns: u64,
    /// log2 histogram of per-event nanoseconds.
    pub hist: [u64; HIST_BUCKETS],
}

impl Stats {
    pub const ZERO: Stats = Stats {
        count: 0,
        bytes: 0,
        errors: 0,
        total_ns: 0,
        hist: [0; HIST_BUCKETS],
    };
}

impl Default for Stats {
    fn default() -> Self {
        Self::ZERO
    }
}

/// Key of the per-CPU calls map: a socket system call and its socket-layer row in one
/// update (see [`CallStats`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallKey {
    pub tgid: u32,
    pub tid: u32,
    /// One of [`syscall`].
    pub op: u16,
    /// The socket's IP protocol.
    pub proto: u16,
    /// The system call row's [`aux`] bits with the socket's family, and [`aux::TCP_TIMED`]
    /// when the calls also timed a tcp_sendmsg.
    pub aux: u32,
}

/// Value of the per-CPU calls map: socket system calls whose socket layer a probe or TCP's
/// copy loop saw. Each is three rows to the reader — the system call (`call`), its socket-layer
/// row (the same events and bytes, from the call's return value) and, with
/// [`aux::TCP_TIMED`], the tcp_sendmsg it timed (`tcp_ns`, `tcp_hist`) — written with one map
/// update instead of two (one hash lookup less per traced call).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CallStats {
    pub call: Stats,
    pub tcp_ns: u64,
    /// log2 histogram of the tcp_sendmsg times, as [`Stats::hist`].
    pub tcp_hist: [u64; HIST_BUCKETS],
}

impl CallStats {
    pub const ZERO: CallStats = CallStats {
        call: Stats::ZERO,
        tcp_ns: 0,
        tcp_hist: [0; HIST_BUCKETS],
    };
}

impl Default for CallStats {
    fn default() -> Self {
        Self::ZERO
    }
}

/// Bits of the `PLAN` map (index 0): how user space attached the paths, for programs whose
/// work depends on it. Written once after planning, before the trace is armed.
pub mod plan {
    /// The socket paths' raw tier (no program runs in the socket layer): TCP's copy loop
    /// names a send's socket, the system call finds any other call's behind its descriptor.
    pub const SOCKETS_BY_FD: u32 = 1;
}

/// [`InFlight::state`] bits.
pub mod inflight {
    /// The thread is inside a tracked system call. Without it the entry says the thread is
    /// *between* tracked calls: entries outlive their calls (until the thread exits), so a
    /// thread with no entry at all is one not seen since attach, which may be inside a call
    /// that began before the programs were attached.
    pub const ACTIVE: u32 = 1;
    /// The call entered while the trace was armed: it and everything nested in it count, so
    /// every layer of one call is counted, or none is.
    pub const IN_WINDOW: u32 = 2;
    /// Something nested in the call was counted; its exit is still to come (user space waits
    /// for such calls when it disarms).
    pub const NESTED: u32 = 4;
}

/// A thread's tracked system call, between its enter and exit tracepoints (see [`InFlightSlot`]),
/// or the thread's state between calls (see [`inflight`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InFlight {
    pub start_ns: u64,
    /// Tracepoint tier of tcp_sendmsg: first copy-loop iteration of the current call (0 =
    /// not inside one).
    pub tcp_start_ns: u64,
    /// Bytes copied from user space during the call (fentry/kprobe tier).
    pub copied: u64,
    pub copy_calls: u32,
    /// [`aux`] bits decided at entry.
    pub aux: u32,
    pub op: u16,
    /// Set when a socket tracepoint fired during the call.
    pub sock_seen: u16,
    /// Address family and protocol of the socket (from the socket tracepoint).
    pub family: u16,
    pub proto: u16,
    /// [`inflight`] bits.
    pub state: u32,
    /// (family, protocol) of the socket `sk_cache` last seen by the raw tier (the descriptor
    /// walk, or `tcp_sendmsg_locked`'s `sk`), packed family << 16 | protocol: a thread usually
    /// sends on one socket, and reading the two fields from the socket costs two helper calls
    /// per event. A freed socket's address is reused only by a socket of the same protocol
    /// (each protocol allocates its socks from its own slab cache), so the pair cannot go
    /// stale.
    pub sk_fields: u32,
    /// The `struct sock *` those fields belong to (0: none yet). Kept across calls.
    pub sk_cache: u64,
    /// Raw tier, sockets found through the descriptor: the inode of the last socket this
    /// thread used (0: none). Socket inodes come from their own slab cache, so an address
    /// found here again is a socket's inode, whatever became of the old one.
    pub sock_inode: u64,
}

/// A traced thread's slot in the in-flight array (`INFLIGHT_SLOTS`, indexed by tid modulo
/// its length): `owner` is the thread's `pid_tgid` (0 = free). Only the owner reads or
/// writes `call`; a thread whose slot another thread owns keeps its state in the `INFLIGHT`
/// hash map instead.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InFlightSlot {
    pub owner: u64,
    pub call: InFlight,
}

/// Slots in the in-flight array: tids below this never share one (the kernel's default
/// `pid_max` is 32768; 4 MiB of slots covers that and twice over).
pub const INFLIGHT_SLOTS: u32 = 65536;

/// Key of the `ENTRY` map pairing a function's entry with its return (kprobe/kretprobe,
/// fentry/fexit where the exit needs something only the entry saw).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryKey {
    pub pid_tgid: u64,
    /// One of [`path`].
    pub path: u64,
}

/// Value of the `ENTRY` map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EntryVal {
    pub start_ns: u64,
    /// Path-specific: requested pages, bytes to copy, …
    pub arg: u64,
}

/// A traced thread's time off CPU (key: tid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OffCpu {
    /// When it last switched out; 0 while it runs.
    pub since_ns: u64,
    pub tgid: u32,
    pub _pad: u32,
}

/// A sampled system call, for the timeline export (ring buffer).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SpanEvent {
    pub start_ns: u64,
    pub duration_ns: u64,
    pub ret: i64,
    pub tgid: u32,
    pub tid: u32,
    pub op: u16,
    pub family: u16,
    pub aux: u32,
}

/// Indices of the `COUNTERS` per-CPU array: the tracer's own health.
pub mod counter {
    /// Stats map full: an update was dropped.
    pub const STATS_FULL: u32 = 0;
    /// In-flight map full: a call could not be timed (and is not counted).
    pub const INFLIGHT_FULL: u32 = 1;
    /// An exit without a matching enter (the call began before we attached).
    pub const UNPAIRED_EXIT: u32 = 2;
    /// Events of a traced thread not counted because it had not been seen entering or leaving
    /// a tracked system call since attach (it may be inside one that began before).
    pub const UNKNOWN_CONTEXT: u32 = 6;
    /// Tracked-process set full: a child could not be followed.
    pub const PIDS_FULL: u32 = 3;
    /// Sampled events dropped because the ring buffer was full.
    pub const RINGBUF_FULL: u32 = 4;
    /// Entry/return pairing map full: a probed call was not counted.
    pub const ENTRY_FULL: u32 = 5;
    /// io_uring completions of traced tasks that overflowed the application's completion
    /// ring (`io_uring_cqe_overflow`): that event names no request, so the request is not
    /// counted.
    pub const URING_OVERFLOW: u32 = 7;
    /// Off-CPU map full: a traced thread's time off CPU could not be timed.
    pub const OFFCPU_FULL: u32 = 8;
    /// A traced thread switched out while its last switch out was still open: the switch in
    /// between was not seen (one off-CPU interval lost, uncounted by the kernel; seen while
    /// other tracers attach to or detach from `sched_switch`, under fork churn, and after
    /// tasks whose switch out fires no `sched_switch`, such as a VM agent's threads).
    pub const OFFCPU_MISSED_SWITCH_IN: u32 = 9;
    /// Traced threads whose in-flight state went to the hash map because another live
    /// thread owned their array slot (not a loss: the hash lookup costs more, nothing else).
    pub const INFLIGHT_SHARED: u32 = 10;
    pub const COUNT: u32 = 11;
}

/// Tracepoint field offsets, read at run time from tracefs `format` files, so the programs do
/// not hard-code a layout that differs between kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TpOffsets {
    /// `ret` of `syscalls:sys_exit_*` (identical for all of them; verified in user space).
    pub sys_exit_ret: u32,
    /// `flags` of `syscalls:sys_enter_sendmsg`.
    pub sendmsg_flags: u32,
    /// `flags` of `syscalls:sys_enter_sendto`.
    pub sendto_flags: u32,
    /// `family` / `protocol` / `ret` of `sock:sock_send_length` and `sock:sock_recv_length`
    /// (one event class, so one layout; verified in user space).
    pub sock_len_family: u32,
    pub sock_len_protocol: u32,
    pub sock_len_ret: u32,
    /// `child_pid` of `sched:sched_process_fork`.
    pub fork_child_pid: u32,
    /// `pid` of `sched:sched_process_exit`.
    pub exit_pid: u32,
    /// `next_pid` / `prev_state` of `sched:sched_switch`.
    pub switch_next_pid: u32,
    pub switch_prev_state: u32,
    /// Byte offset of `struct sk_buff.data_len`, from the running kernel's BTF (0 = unknown).
    pub skb_data_len: u32,
    /// `struct socket.sk`, `struct sock.__sk_common.skc_family` and `struct sock.sk_protocol`
    /// (from BTF), for the probe tiers of the socket layer (kernels without the sock:*
    /// length tracepoints). 0 = unknown.
    pub socket_sk: u32,
    pub sock_family: u32,
    pub sock_protocol: u32,
    /// `struct task_struct.pid` (from BTF), for the raw tracepoints of the scheduler.
    pub task_pid: u32,
    /// `struct task_struct.tgid` and `.exit_state` (from BTF): the raw `sched_switch` program
    /// filters the task switched in by its process, and knows a task's last switch-out.
    pub task_tgid: u32,
    pub task_exit_state: u32,
    /// The path from a descriptor to its socket (from BTF): `task_struct.files`,
    /// `files_struct.fdt`, `fdtable.max_fds` (the `fd` array pointer follows it),
    /// `file.f_inode`, `inode.i_mode`, `socket_alloc.vfs_inode` (a socket's inode and its
    /// `struct socket` are one allocation). The raw tier of the socket paths reads them for
    /// the calls TCP does not name the socket of, instead of taking an event in the socket
    /// layer. `task_files` 0 = unknown (that tier is then refused).
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub file_inode: u32,
    pub inode_mode: u32,
    pub socket_alloc_inode: u32,
    /// `req` / `opcode` of `io_uring:io_uring_submit_req`.
    pub uring_submit_req: u32,
    pub uring_submit_opcode: u32,
    /// `req` / `res` / `cflags` of `io_uring:io_uring_complete`.
    pub uring_complete_req: u32,
    pub uring_complete_res: u32,
    pub uring_complete_cflags: u32,
    // An even number of `u32` fields keeps [`Config`] free of implicit padding (checked in
    // the tests below): add a `_pad` when adding or removing one.
}

impl TpOffsets {
    pub const ZERO: TpOffsets = TpOffsets {
        sys_exit_ret: 0,
        sendmsg_flags: 0,
        sendto_flags: 0,
        sock_len_family: 0,
        sock_len_protocol: 0,
        sock_len_ret: 0,
        fork_child_pid: 0,
        exit_pid: 0,
        switch_next_pid: 0,
        switch_prev_state: 0,
        skb_data_len: 0,
        socket_sk: 0,
        sock_family: 0,
        sock_protocol: 0,
        task_pid: 0,
        task_tgid: 0,
        task_exit_state: 0,
        task_files: 0,
        files_fdt: 0,
        fdt_max_fds: 0,
        file_inode: 0,
        inode_mode: 0,
        socket_alloc_inode: 0,
        uring_submit_req: 0,
        uring_submit_opcode: 0,
        uring_complete_req: 0,
        uring_complete_res: 0,
        uring_complete_cflags: 0,
    };
}

/// Filter modes of [`Config::filter_mode`].
pub mod filter {
    /// Every process except copytrace itself.
    pub const ALL: u32 = 0;
    /// Only processes whose tgid is in the `PIDS` map.
    pub const PIDS: u32 = 1;
    /// Only threads whose name (`comm`) is one of [`super::Config::comms`] at the event.
    pub const COMMS: u32 = 2;
}

/// Who wrote a stats row, captured by the kernel when the thread's first row is created (so a
/// thread that exits before user space reads its rows can still be named): value of the
/// `TASKS` map, keyed by tid. User space removes the entry when it reaps the thread's rows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskInfo {
    /// The thread's name then (NUL-padded).
    pub comm: [u8; COMM_LEN],
    /// Its cgroup v2 id then (the cgroup directory's inode).
    pub cgroup_id: u64,
}

/// Length of a task's `comm` (TASK_COMM_LEN, NUL included).
pub const COMM_LEN: usize = 16;

/// Thread names that fit in [`Config::comms`].
pub const MAX_CONFIG_COMMS: usize = 8;

/// Run-time configuration, written into the `CONFIG` global before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    pub filter_mode: u32,
    /// Add children forked by traced processes to `PIDS`.
    pub follow_children: u32,
    /// Only count tasks in this cgroup v2 (0 = any).
    pub cgroup_id: u64,
    /// copytrace's own tgid, never traced (0 = trace it too).
    pub self_tgid: u32,
    /// Emit one of every `sample_every` system calls to the ring buffer (0 = none).
    pub sample_every: u32,
    /// Filter mode PIDS: up to [`MAX_CONFIG_PIDS`] tgids checked without a map lookup (the
    /// common case: one benchmark or one `-p`). 0 = unused slot.
    pub pids: [u32; MAX_CONFIG_PIDS],
    /// Filter mode PIDS: also consult the `PIDS` map (children followed, or more tgids than
    /// fit above).
    pub pids_in_map: u32,
    /// Filter mode COMMS: how many of [`Config::comms`] are set.
    pub n_comms: u32,
    /// The in-flight array's length minus one (a power of two minus one): a thread's slot is
    /// its tid masked with this. User space sets the array to that length.
    pub inflight_slot_mask: u32,
    pub _pad: u32,
    /// Filter mode COMMS: thread names to trace, NUL-padded.
    pub comms: [[u8; COMM_LEN]; MAX_CONFIG_COMMS],
    pub offsets: TpOffsets,
}

/// Tgids that fit in [`Config::pids`].
pub const MAX_CONFIG_PIDS: usize = 8;

impl Config {
    pub const ZERO: Config = Config {
        filter_mode: 0,
        follow_children: 0,
        cgroup_id: 0,
        self_tgid: 0,
        sample_every: 0,
        pids: [0; MAX_CONFIG_PIDS],
        pids_in_map: 0,
        n_comms: 0,
        inflight_slot_mask: 0,
        _pad: 0,
        comms: [[0; COMM_LEN]; MAX_CONFIG_COMMS],
        offsets: TpOffsets::ZERO,
    };
}

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: all types are repr(C), Copy, and have no implicit padding.
    unsafe impl aya::Pod for StatKey {}
    unsafe impl aya::Pod for Stats {}
    unsafe impl aya::Pod for CallKey {}
    unsafe impl aya::Pod for CallStats {}
    unsafe impl aya::Pod for InFlight {}
    unsafe impl aya::Pod for InFlightSlot {}
    unsafe impl aya::Pod for EntryKey {}
    unsafe impl aya::Pod for EntryVal {}
    unsafe impl aya::Pod for OffCpu {}
    unsafe impl aya::Pod for UringReq {}
    unsafe impl aya::Pod for SpanEvent {}
    unsafe impl aya::Pod for TpOffsets {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for TaskInfo {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn histogram_buckets_are_floor_log2_clamped() {
        assert_eq!(hist_bucket(0), 0);
        assert_eq!(hist_bucket(1), 0);
        assert_eq!(hist_bucket(2), 1);
        assert_eq!(hist_bucket(3), 1);
        assert_eq!(hist_bucket(1024), 10);
        assert_eq!(hist_bucket(2047), 10);
        assert_eq!(hist_bucket((1 << 31) - 1), 30);
        assert_eq!(hist_bucket(1 << 31), 31);
        // 5 s off CPU: past the last bucket, clamped rather than wrapped to bucket 0.
        assert_eq!(hist_bucket(5_000_000_000), 31);
        assert_eq!(hist_bucket(u64::MAX), 31);
        for shift in 0..31 {
            assert_eq!(hist_bucket(1 << shift), shift as usize);
        }
    }

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<StatKey>(), 4 + 4 + 2 + 2 + 4);
        assert_eq!(size_of::<Stats>(), 8 * (4 + HIST_BUCKETS));
        assert_eq!(size_of::<CallKey>(), size_of::<StatKey>());
        assert_eq!(
            size_of::<CallStats>(),
            size_of::<Stats>() + 8 * (1 + HIST_BUCKETS)
        );
        assert_eq!(
            size_of::<InFlight>(),
            8 + 8 + 8 + 4 + 4 + 2 * 4 + 4 + 4 + 8 + 8
        );
        assert_eq!(size_of::<InFlightSlot>(), 8 + size_of::<InFlight>());
        assert_eq!(size_of::<EntryKey>(), 16);
        assert_eq!(size_of::<EntryVal>(), 16);
        assert_eq!(size_of::<OffCpu>(), 16);
        assert_eq!(size_of::<SpanEvent>(), 8 * 3 + 4 * 2 + 2 * 2 + 4);
        assert_eq!(size_of::<TpOffsets>(), 4 * 28);
        assert_eq!(size_of::<UringReq>(), 24);
        assert_eq!(size_of::<TaskInfo>(), COMM_LEN + 8);
        assert_eq!(
            size_of::<Config>(),
            4 + 4
                + 8
                + 4 * 2
                + 4 * MAX_CONFIG_PIDS
                + 4
                + 4
                + 4 * 2
                + COMM_LEN * MAX_CONFIG_COMMS
                + size_of::<TpOffsets>()
        );
    }
}

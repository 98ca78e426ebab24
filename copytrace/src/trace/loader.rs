//! Loading the eBPF object, attaching its programs (through the planner) and feeding it the
//! processes to trace.
//!
//! Everything the kernel side needs to know about this kernel (tracepoint field offsets, the
//! `sk_buff.data_len` offset from BTF) and about this run (filter, own pid, sampling) is
//! written into the `CONFIG` global before load.
use std::path::Path;

use std::time::{Duration, Instant};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, RingBuf},
};
use copytrace_common::{
    COMM_LEN, CallKey, CallStats, Config, InFlight, InFlightSlot, MAX_CONFIG_COMMS,
    MAX_CONFIG_PIDS, SpanEvent, StatKey, Stats, TaskInfo, TpOffsets, filter, inflight, plan,
    syscall,
};
use log::debug;

use crate::{
    error::{Error, Result},
    trace::{
        TracerCost, btf, cost,
        maps::{MappedArray, map_mut, map_ref},
        planner::{self, KernelSymbols, PathDecision, Phase, PlanOptions, Tier},
        skipped,
        snapshot::Snapshot,
        tracefs::{self, Format},
    },
};

/// How long [`Tracer::disarm`] waits for calls that straddle the end of the window. A send
/// is between its socket-layer return and its exit for microseconds; only a receive blocked
/// with part of its data copied (MSG_WAITALL) stays longer.
const DISARM_WAIT: Duration = Duration::from_millis(250);

/// The eBPF object built by build.rs.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/copytrace"));

/// Which processes to trace, and how.
#[derive(Clone, Debug)]
pub struct TraceOptions {
    /// Thread-group ids to trace; empty means every process except copytrace.
    pub pids: Vec<u32>,
    /// Also trace processes forked by traced ones.
    pub follow_children: bool,
    /// Only count tasks in this cgroup v2 id (0 = any).
    pub cgroup_id: u64,
    /// Trace copytrace's own process too (tests that are their own ground truth use this).
    pub include_self: bool,
    /// Best attach tier the planner may use (lower it to test the kprobe tier where fentry
    /// works).
    pub best_tier: Tier,
    /// Sample one in this many system calls into the timeline ring buffer (0 = off).
    pub sample_every: u32,
    /// Attach empty programs to the planned hooks instead of the real ones: what the hooks
    /// alone cost (the floor `cargo xtask trace-overhead` measures against).
    pub floor: bool,
    /// Only threads with one of these names (`comm`, at most [`MAX_CONFIG_COMMS`] of at most
    /// 15 bytes); empty means any. Combines with `cgroup_id`, not with `pids`.
    pub comms: Vec<String>,
    /// Length of the in-flight array, a power of two (default
    /// [`copytrace_common::INFLIGHT_SLOTS`]): threads whose tids are equal modulo it share a
    /// slot, and all but its first claimant keep their state in the hash map. Tests lower it
    /// to make threads share.
    pub inflight_slots: u32,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            pids: Vec::new(),
            follow_children: false,
            cgroup_id: 0,
            include_self: false,
            best_tier: Tier::Fentry,
            sample_every: 0,
            floor: false,
            comms: Vec::new(),
            inflight_slots: copytrace_common::INFLIGHT_SLOTS,
        }
    }
}

/// The configured thread names as the kernel stores them (NUL-padded, 15 bytes at most).
fn comm_config(comms: &[String]) -> Result<(u32, [[u8; COMM_LEN]; MAX_CONFIG_COMMS])> {
    let mut out = [[0; COMM_LEN]; MAX_CONFIG_COMMS];
    if comms.len() > MAX_CONFIG_COMMS {
        return Err(Error::Usage(format!(
            "at most {MAX_CONFIG_COMMS} thread names can be traced ({} given)",
            comms.len()
        )));
    }
    for (slot, c) in out.iter_mut().zip(comms) {
        if c.is_empty() || c.len() >= COMM_LEN || c.contains('\0') {
            return Err(Error::Usage(format!(
                "thread name {c:?} cannot match: the kernel keeps names of 1 to {} bytes",
                COMM_LEN - 1
            )));
        }
        slot[..c.len()].copy_from_slice(c.as_bytes());
    }
    Ok((comms.len() as u32, out))
}

/// Read every offset the programs use from this kernel's format files and BTF.
///
/// Offsets of tracepoints that do not exist are left at 0: the planner does not attach their
/// programs, so the offsets are never used.
pub fn read_offsets(root: &Path) -> Result<TpOffsets> {
    let exit = Format::read(root, "syscalls", "sys_exit_sendmsg")?;
    let sys_exit_ret = exit.offset("ret")?;
    for name in syscall::NAMES {
        let f = Format::read(root, "syscalls", &format!("sys_exit_{name}"))?;
        same_offset(&f, "ret", sys_exit_ret)?;
    }
    let mut o = TpOffsets {
        sys_exit_ret,
        sendmsg_flags: Format::read(root, "syscalls", "sys_enter_sendmsg")?.offset("flags")?,
        sendto_flags: Format::read(root, "syscalls", "sys_enter_sendto")?.offset("flags")?,
        ..TpOffsets::ZERO
    };
    let optional = |cat: &str, name: &str, field: &str| -> Result<u32> {
        if tracefs::tracepoint_exists(root, cat, name) {
            Format::read(root, cat, name)?.offset(field)
        } else {
            Ok(0)
        }
    };
    if tracefs::tracepoint_exists(root, "sock", "sock_send_length") {
        let f = Format::read(root, "sock", "sock_send_length")?;
        o.sock_len_family = f.offset("family")?;
        o.sock_len_protocol = f.offset("protocol")?;
        o.sock_len_ret = f.offset("ret")?;
        if tracefs::tracepoint_exists(root, "sock", "sock_recv_length") {
            // The programs share one reader for both events; make sure that is valid here.
            let r = Format::read(root, "sock", "sock_recv_length")?;
            same_offset(&r, "family", o.sock_len_family)?;
            same_offset(&r, "protocol", o.sock_len_protocol)?;
            same_offset(&r, "ret", o.sock_len_ret)?;
        }
    }
    o.fork_child_pid = optional("sched", "sched_process_fork", "child_pid")?;
    o.exit_pid = optional("sched", "sched_process_exit", "pid")?;
    o.switch_next_pid = optional("sched", "sched_switch", "next_pid")?;
    o.switch_prev_state = optional("sched", "sched_switch", "prev_state")?;
    let submit = if tracefs::tracepoint_exists(root, "io_uring", "io_uring_submit_req") {
        "io_uring_submit_req"
    } else {
        "io_uring_submit_sqe" // before 6.3
    };
    o.uring_submit_req = optional("io_uring", submit, "req")?;
    o.uring_submit_opcode = optional("io_uring", submit, "opcode")?;
    o.uring_complete_req = optional("io_uring", "io_uring_complete", "req")?;
    o.uring_complete_res = optional("io_uring", "io_uring_complete", "res")?;
    o.uring_complete_cflags = optional("io_uring", "io_uring_complete", "cflags")?;
    // Deferred-copy byte counts read sk_buff.data_len; without BTF they are reported as 0
    // bytes (and the count of copies still stands).
    match btf::Btf::from_sys_fs() {
        Ok(b) => {
            o.skb_data_len = b.member_offset("sk_buff", "data_len").unwrap_or(0);
            o.socket_sk = b.member_offset("socket", "sk").unwrap_or(0);
            o.sock_family = b
                .member_path_offset("sock", &["__sk_common", "skc_family"])
                .unwrap_or(0);
            o.sock_protocol = b.member_offset("sock", "sk_protocol").unwrap_or(0);
            o.task_pid = b.member_offset("task_struct", "pid").unwrap_or(0);
            o.task_tgid = b.member_offset("task_struct", "tgid").unwrap_or(0);
            o.task_exit_state = b.member_offset("task_struct", "exit_state").unwrap_or(0);
            fd_offsets(&b, &mut o);
        }
        Err(e) => log::warn!(
            "no kernel BTF ({e}): deferred-copy bytes and socket families unavailable on \
             probe tiers"
        ),
    }
    Ok(o)
}

/// The offsets from a descriptor to its socket. Some are 0 (first members), so one missing
/// member leaves them all 0: `task_files` (never 0) says whether they are known. The programs
/// read `fdtable.max_fds` and `.fd` in one go: they must be adjacent, as they have always been.
fn fd_offsets(b: &btf::Btf, o: &mut TpOffsets) {
    let found = (|| {
        let max_fds = b.member_offset("fdtable", "max_fds")?;
        (b.member_offset("fdtable", "fd")? == max_fds + 8).then_some(())?;
        Some([
            b.member_offset("task_struct", "files")?,
            b.member_offset("files_struct", "fdt")?,
            max_fds,
            b.member_offset("file", "f_inode")?,
            b.member_offset("inode", "i_mode")?,
            b.member_offset("socket_alloc", "vfs_inode")?,
        ])
    })();
    if let Some([files, fdt, max_fds, inode, mode, alloc_inode]) = found {
        o.task_files = files;
        o.files_fdt = fdt;
        o.fdt_max_fds = max_fds;
        o.file_inode = inode;
        o.inode_mode = mode;
        o.socket_alloc_inode = alloc_inode;
    }
}

/// Why the raw tracepoint programs cannot run with `o`, if they cannot: they read the
/// tracepoints' struct arguments through offsets from the kernel's BTF.
fn raw_refused(o: &TpOffsets) -> Option<&'static str> {
    let needed = [
        o.task_pid,
        o.task_tgid,
        o.task_exit_state,
        o.sock_family,
        o.sock_protocol,
    ];
    needed.contains(&0).then_some(
        "raw tracepoints need task_struct/sock offsets from the kernel's BTF, which is missing",
    )
}

/// Why the socket paths cannot find sockets through the call's descriptor with `o`: that is
/// done by the raw `sys_enter` program (x86-64), through the file and socket offsets from
/// BTF.
fn sockets_by_fd_refused(o: &TpOffsets) -> Option<&'static str> {
    if !cfg!(target_arch = "x86_64") {
        return Some("the raw system call tier is x86-64 only");
    }
    (raw_refused(o).is_some() || o.task_files == 0 || o.socket_sk == 0).then_some(
        "finding the socket behind a descriptor needs file/socket offsets from the kernel's \
         BTF, which is missing",
    )
}

/// (name, kernel id) of every loaded program of the object.
fn program_ids(ebpf: &Ebpf) -> Vec<(String, u32)> {
    ebpf.programs()
        .filter_map(|(name, p)| Some((name.to_string(), p.info().ok()?.id())))
        .collect()
}

fn same_offset(f: &Format, field: &str, want: u32) -> Result<()> {
    let got = f.offset(field)?;
    if got != want {
        return Err(Error::InconsistentField {
            tracepoint: f.tracepoint.clone(),
            field: field.to_string(),
            got,
            want,
        });
    }
    Ok(())
}

/// Raise RLIMIT_MEMLOCK for kernels that still charge BPF maps to it (< 5.11); harmless after.
fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        debug!(
            "setrlimit(RLIMIT_MEMLOCK): {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Fail early with a clear message instead of a wall of EPERMs.
pub fn require_root() -> Result<()> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::NotRoot);
    }
    Ok(())
}

/// Load the object with `config` (not attached to anything yet). The in-flight array and
/// its claims map get the length `config`'s slot mask names.
pub fn load_object(config: &Config) -> Result<Ebpf> {
    require_root()?;
    raise_memlock();
    let slots = config.inflight_slot_mask + 1;
    Ok(EbpfLoader::new()
        .override_global("CONFIG", config, true)
        .map_max_entries("INFLIGHT_SLOTS", slots)
        .map_max_entries("SLOT_OWNERS", slots)
        .load(EBPF_OBJECT)?)
}

/// A running trace. Dropping it detaches and unloads every program.
pub struct Tracer {
    ebpf: Ebpf,
    /// Samples the kernel's program statistics (the reason when it cannot, or should not).
    sampler: std::result::Result<cost::Sampler, String>,
    /// Calibrated dispatch cost per event, per hook kind.
    dispatch: Vec<cost::Dispatch>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    decisions: Vec<PathDecision>,
    spans: Option<RingBuf<MapData>>,
}

impl Tracer {
    /// Plan and attach every path, then start tracing `opts.pids` (or everything).
    pub fn start(opts: &TraceOptions) -> Result<Tracer> {
        require_root()?;
        let root = tracefs::ensure_mounted()?;
        if !opts.pids.is_empty() && !opts.comms.is_empty() {
            return Err(Error::Usage(
                "trace either processes or thread names, not both".into(),
            ));
        }
        if !opts.inflight_slots.is_power_of_two() {
            return Err(Error::Usage(format!(
                "the in-flight array's length must be a power of two, not {}",
                opts.inflight_slots
            )));
        }
        let (n_comms, comms) = comm_config(&opts.comms)?;
        let config = Config {
            filter_mode: if !opts.pids.is_empty() {
                filter::PIDS
            } else if n_comms > 0 {
                filter::COMMS
            } else {
                filter::ALL
            },
            n_comms,
            comms,
            follow_children: opts.follow_children as u32,
            cgroup_id: opts.cgroup_id,
            // 0 is never the tgid of a task that makes system calls.
            self_tgid: if opts.include_self {
                0
            } else {
                std::process::id()
            },
            sample_every: opts.sample_every,
            pids: {
                let mut a = [0; MAX_CONFIG_PIDS];
                if opts.pids.len() <= MAX_CONFIG_PIDS {
                    a[..opts.pids.len()].copy_from_slice(&opts.pids);
                }
                a
            },
            pids_in_map: u32::from(opts.follow_children || opts.pids.len() > MAX_CONFIG_PIDS),
            inflight_slot_mask: opts.inflight_slots - 1,
            _pad: 0,
            offsets: read_offsets(&root)?,
        };
        let mut ebpf = load_object(&config)?;
        // Before anything is attached: the calibration times system calls. The floor is only
        // hooks: nothing to report, and no statistics to pay for.
        let (stats, dispatch) = if opts.floor {
            (Err("the floor reports no cost".to_string()), Vec::new())
        } else {
            match cost::enable_stats() {
                Ok(_) => (Ok(()), cost::calibrate(&mut ebpf)),
                Err(e) => (
                    Err(format!("no program statistics on this kernel: {e}")),
                    Vec::new(),
                ),
            }
        };
        // aya-log needs the AYA_LOGS map; a failure here only costs us the log lines.
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                log::warn!("eBPF logging unavailable: {e}");
                None
            }
        };
        let btf = aya::Btf::from_sys_fs().ok();
        let syms = KernelSymbols::read(&root);
        let popts = PlanOptions {
            best_tier: opts.best_tier,
            raw_refused: raw_refused(&config.offsets),
            floor: opts.floor,
            sockets_by_fd_refused: sockets_by_fd_refused(&config.offsets),
        };
        let mut decisions =
            planner::attach_paths(&mut ebpf, btf.as_ref(), &root, &syms, popts, Phase::Probes);
        // The base paths (syscalls above all) start the counting: attach them last, so that
        // every event they see already has the other paths in place.
        let base = planner::attach_paths(&mut ebpf, btf.as_ref(), &root, &syms, popts, Phase::Base);
        decisions.extend(base);
        planner::canonical_order(&mut decisions);
        skipped::note_uncounted(&mut decisions);
        if let Some(d) = decisions
            .iter()
            .find(|d| d.path == planner::names::SYSCALLS && d.tier == Tier::Unavailable)
        {
            let why = d
                .attempts
                .first()
                .map_or("unknown".to_string(), |a| a.error.clone());
            return Err(Error::MissingTracepoint(format!(
                "syscalls:* (needed for every path): {why}"
            )));
        }
        let spans = if opts.sample_every > 0 {
            let m = ebpf.take_map("SPANS").ok_or_else(|| Error::Missing {
                kind: "map",
                name: "SPANS".into(),
            })?;
            Some(RingBuf::try_from(m).map_err(|source| Error::Map {
                map: "SPANS".into(),
                source,
            })?)
        } else {
            None
        };
        let sampler = stats.map(|()| cost::Sampler::start(program_ids(&ebpf)));
        let mut tracer = Tracer {
            ebpf,
            sampler,
            dispatch,
            logger,
            decisions,
            spans,
        };
        for tgid in &opts.pids {
            tracer.add_pid(*tgid)?;
        }
        tracer.set_plan()?;
        // Everything is attached: open the window for every program at one instant.
        tracer.set_armed(true)?;
        Ok(tracer)
    }

    /// Tell the programs how the paths were attached ([`copytrace_common::plan`]).
    fn set_plan(&mut self) -> Result<()> {
        let bits = if planner::sockets_by_fd(&self.decisions) {
            plan::SOCKETS_BY_FD
        } else {
            0
        };
        let mut m: Array<&mut MapData, u32> = map_mut(&mut self.ebpf, "PLAN")?;
        m.set(0, bits, 0).map_err(|source| Error::Map {
            map: "PLAN".into(),
            source,
        })
    }

    fn set_armed(&mut self, on: bool) -> Result<()> {
        let mut armed: Array<&mut MapData, u32> = map_mut(&mut self.ebpf, "ARMED")?;
        armed.set(0, u32::from(on), 0).map_err(|source| Error::Map {
            map: "ARMED".into(),
            source,
        })
    }

    /// Close the window for every program at one instant, then wait (briefly) for the calls
    /// that entered inside it and already counted a nested event to exit, so the next
    /// snapshot has every layer of every counted call. Returns how many such calls were still
    /// in flight when the wait gave up (their nested events are counted, the calls are not).
    pub fn disarm(&mut self) -> Result<usize> {
        self.set_armed(false)?;
        let deadline = Instant::now() + DISARM_WAIT;
        loop {
            let open = self.open_calls()?;
            if open == 0 || Instant::now() >= deadline {
                return Ok(open);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Calls inside the window that counted a nested event and have not exited yet: in the
    /// threads' own slots and in the hash map of those that share one.
    fn open_calls(&self) -> Result<usize> {
        let open = inflight::ACTIVE | inflight::IN_WINDOW | inflight::NESTED;
        let is_open = |f: &InFlight| usize::from(f.state & open == open);
        let slots: MappedArray<InFlightSlot> = MappedArray::new(&self.ebpf, "INFLIGHT_SLOTS")?;
        let mut n: usize = slots
            .values()
            .filter(|s| s.owner != 0)
            .map(|s| is_open(&s.call))
            .sum();
        let m: HashMap<&MapData, u64, InFlight> = map_ref(&self.ebpf, "INFLIGHT")?;
        for item in m.iter() {
            let (_, f) = item.map_err(|source| Error::Map {
                map: "INFLIGHT".into(),
                source,
            })?;
            n += is_open(&f);
        }
        Ok(n)
    }

    /// Put `tgid` in the `PIDS` map (consulted when the config list does not suffice).
    fn add_pid(&mut self, tgid: u32) -> Result<()> {
        let mut pids: HashMap<&mut MapData, u32, u32> = map_mut(&mut self.ebpf, "PIDS")?;
        pids.insert(tgid, 1, 0).map_err(|source| Error::Map {
            map: "PIDS".into(),
            source,
        })
    }

    /// The sampled program statistics so far (empty without statistics).
    pub fn cost_reading(&self) -> cost::Sampled {
        match &self.sampler {
            Ok(s) => s.reading(),
            Err(_) => cost::Sampled::default(),
        }
    }

    /// What the programs cost between two [`Tracer::cost_reading`]s.
    pub fn cost_between(&self, a: &cost::Sampled, b: &cost::Sampled) -> TracerCost {
        match &self.sampler {
            Ok(_) => TracerCost::between(a, b, &self.dispatch),
            Err(why) => TracerCost {
                note: Some(why.clone()),
                ..TracerCost::default()
            },
        }
    }

    /// Names of the loaded programs.
    pub fn program_names(&self) -> Vec<String> {
        program_ids(&self.ebpf)
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    /// The calibrated dispatch cost per event, per hook type (empty when not calibrated).
    pub fn dispatch(&self) -> &[cost::Dispatch] {
        &self.dispatch
    }

    /// Why there are no program statistics, if there are none.
    pub fn stats_unavailable(&self) -> Option<String> {
        self.sampler.as_ref().err().cloned()
    }

    /// What the planner chose per path.
    pub fn decisions(&self) -> &[PathDecision] {
        &self.decisions
    }

    /// Read the kernel-side totals so far.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Snapshot::read(&self.ebpf)
    }

    /// The names and cgroups the kernel captured for threads with rows, by tid.
    pub fn tasks(&self) -> Result<std::collections::HashMap<u32, TaskInfo>> {
        let m: HashMap<&MapData, u32, TaskInfo> = map_ref(&self.ebpf, "TASKS")?;
        m.iter()
            .collect::<std::result::Result<_, _>>()
            .map_err(|source| Error::Map {
                map: "TASKS".into(),
                source,
            })
    }

    /// Delete every stats row and the captured name of threads `tids`, which have exited:
    /// nothing writes their rows any more, so what was read before this call is final.
    /// Returns how many rows were deleted.
    pub fn forget_threads(&mut self, tids: &std::collections::HashSet<u32>) -> Result<usize> {
        if tids.is_empty() {
            return Ok(0);
        }
        let stats = remove_thread_rows::<StatKey, Stats>(&mut self.ebpf, "STATS", tids, |k| k.tid)?;
        let calls =
            remove_thread_rows::<CallKey, CallStats>(&mut self.ebpf, "CALLS", tids, |k| k.tid)?;
        let mut tasks: HashMap<&mut MapData, u32, TaskInfo> = map_mut(&mut self.ebpf, "TASKS")?;
        for tid in tids {
            let _ = tasks.remove(tid);
        }
        Ok(stats + calls)
    }

    /// Move sampled spans from the ring buffer into `out`.
    pub fn drain_spans(&mut self, out: &mut Vec<SpanEvent>) {
        if let Some(rb) = self.spans.as_mut() {
            while let Some(item) = rb.next() {
                if item.len() >= std::mem::size_of::<SpanEvent>() {
                    // SAFETY: the kernel wrote a SpanEvent; read_unaligned copes with alignment.
                    out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) });
                }
            }
        }
    }

    /// Print pending aya-log records through the `log` crate.
    pub fn flush_logs(&mut self) {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
    }
}

/// Delete the rows of threads `tids` from the per-CPU map `name` (keys `K` naming their
/// thread by `tid_of`); returns how many were deleted.
fn remove_thread_rows<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &str,
    tids: &std::collections::HashSet<u32>,
    tid_of: fn(&K) -> u32,
) -> Result<usize> {
    let mut map: aya::maps::PerCpuHashMap<&mut MapData, K, V> = map_mut(ebpf, name)?;
    let dead: Vec<K> = map
        .keys()
        .filter_map(|k| k.ok())
        .filter(|k| tids.contains(&tid_of(k)))
        .collect();
    for k in &dead {
        // A key already gone (another reaper does not exist) is not an error worth failing on.
        let _ = map.remove(k);
    }
    Ok(dead.len())
}

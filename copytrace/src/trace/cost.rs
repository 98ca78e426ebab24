//! What watching cost: copytrace's own kernel-side time, reported with every trace.
//!
//! The kernel counts each program's run time and runs only while statistics are on
//! (`BPF_ENABLE_STATS`; `kernel.bpf_stats_enabled` is never written, and the previous state
//! returns when the file descriptor closes). Statistics cost two clock reads per program run —
//! on this project's VM that took a traced 64-byte stream from 0.74× to 0.64× of untraced — so
//! a [`Sampler`] turns them on for `ON` out of every `PERIOD` (10 %), and the totals are
//! scaled up from those windows. The run time excludes the dispatch — building a classic
//! tracepoint's record, the raw tracepoint or trampoline call — so bpftop-style figures
//! undercount; the dispatch cost per event is calibrated on this kernel at start (an empty
//! program on the same kind of hook, timed over a loop of cheap system calls, minus its own
//! run time) and added as an estimate.
use std::{
    collections::BTreeMap,
    os::fd::OwnedFd,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    programs::{Program, ProgramError, RawTracePoint, TracePoint},
};
use serde::{Deserialize, Serialize};

use crate::trace::planner::{self, Tier};

/// Statistics on for as long as this lives (kernel 5.8+); the reason otherwise.
pub fn enable_stats() -> Result<OwnedFd, String> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| e.to_string())
}

/// (run ns, runs) the kernel counted for a program.
type RunStats = (u64, u64);

fn run_stats(info: &aya::programs::ProgramInfo) -> RunStats {
    (info.run_time().as_nanos() as u64, info.run_count())
}

/// Statistics sampling: on for `ON` of every `PERIOD`.
const PERIOD: Duration = Duration::from_millis(500);
const ON: Duration = Duration::from_millis(50);

/// What the sampled windows saw so far: per program (run ns, runs), and how long they were on.
#[derive(Clone, Debug, Default)]
pub struct Sampled {
    pub programs: BTreeMap<String, (u64, u64)>,
    pub on_ns: u64,
    /// When this reading was taken.
    pub at: Option<Instant>,
}

/// Turns program statistics on in short windows on a thread of its own, and adds up what the
/// programs did inside them.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    acc: Arc<Mutex<Sampled>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Sample the programs with these (name, id).
    pub fn start(programs: Vec<(String, u32)>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let acc = Arc::new(Mutex::new(Sampled::default()));
        let (s, a) = (stop.clone(), acc.clone());
        let thread = std::thread::spawn(move || sample_loop(&programs, &s, &a));
        Sampler {
            stop,
            acc,
            thread: Some(thread),
        }
    }

    /// The totals so far.
    pub fn reading(&self) -> Sampled {
        let mut r = self.acc.lock().map(|a| a.clone()).unwrap_or_default();
        r.at = Some(Instant::now());
        r
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// (run ns, runs) of the programs `ids` names, from the kernel's list of loaded programs.
fn counts_by_id(ids: &[(String, u32)]) -> BTreeMap<String, (u64, u64)> {
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .filter_map(|info| {
            let (name, _) = ids.iter().find(|(_, id)| *id == info.id())?;
            Some((name.clone(), run_stats(&info)))
        })
        .collect()
}

/// Sleep `d` in small steps; false when asked to stop.
fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5).min(end - Instant::now()));
    }
    true
}

fn sample_loop(ids: &[(String, u32)], stop: &AtomicBool, acc: &Mutex<Sampled>) {
    loop {
        let Ok(fd) = enable_stats() else {
            return;
        };
        let (a, t) = (counts_by_id(ids), Instant::now());
        let going = nap(ON, stop);
        let (b, on) = (counts_by_id(ids), t.elapsed());
        drop(fd);
        if let Ok(mut s) = acc.lock() {
            s.on_ns += on.as_nanos() as u64;
            for (name, &(ns, n)) in &b {
                let (ns0, n0) = a.get(name).copied().unwrap_or((ns, n));
                let e = s.programs.entry(name.clone()).or_default();
                e.0 += ns.saturating_sub(ns0);
                e.1 += n.saturating_sub(n0);
            }
        }
        if !going || !nap(PERIOD - ON, stop) {
            return;
        }
    }
}

/// One program's share of the cost.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProgramCost {
    pub program: String,
    pub events: u64,
    /// Kernel-reported run time (dispatch excluded).
    pub run_ns: u64,
}

/// The calibrated dispatch cost of one kind of hook.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Dispatch {
    pub tier: Tier,
    pub ns_per_event: f64,
}

/// copytrace's own kernel-side cost over a trace window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TracerCost {
    /// Programs that ran, busiest first.
    pub programs: Vec<ProgramCost>,
    pub events: u64,
    pub run_ns: u64,
    /// Estimated dispatch time (calibrated ns per event × events), where calibrated.
    pub dispatch_ns: Option<u64>,
    /// Calibrations used.
    pub dispatch: Vec<Dispatch>,
    /// CPU time of the traced threads over the window, where known.
    pub traced_cpu_ns: Option<u64>,
    /// (run + dispatch) ÷ traced CPU time. The programs' time is machine-wide: it includes
    /// their time in other tasks' context, filtering those tasks' events out (the kernel's
    /// statistics are per program, not per task), so beside other busy processes this
    /// overstates the traced threads' part, and can exceed 1 (two `yes > /dev/null` next to a
    /// traced 64-byte sender here: 1.08 to 1.23, against 0.12 to 0.13 alone).
    pub share_of_traced_cpu: Option<f64>,
    /// Fraction of the time statistics were on (events and times are scaled up from it).
    pub sampled_fraction: Option<f64>,
    /// Why a figure is missing, or what it means.
    pub note: Option<String>,
}

impl TracerCost {
    /// The cost between two [`Sampler`] readings, scaled up from the sampled windows.
    pub fn between(a: &Sampled, b: &Sampled, dispatch: &[Dispatch]) -> TracerCost {
        let on = b.on_ns.saturating_sub(a.on_ns);
        let elapsed = match (a.at, b.at) {
            (Some(x), Some(y)) => y.duration_since(x).as_nanos() as u64,
            _ => 0,
        };
        if on == 0 || elapsed == 0 {
            return TracerCost {
                dispatch: dispatch.to_vec(),
                note: Some(format!(
                    "no statistics window fell inside this trace (one every {} ms)",
                    PERIOD.as_millis()
                )),
                ..TracerCost::default()
            };
        }
        let scale = elapsed as f64 / on as f64;
        let mut programs: Vec<ProgramCost> = b
            .programs
            .iter()
            .map(|(name, &(ns, n))| {
                let (ns0, n0) = a.programs.get(name).copied().unwrap_or((0, 0));
                ProgramCost {
                    program: name.clone(),
                    events: (n.saturating_sub(n0) as f64 * scale) as u64,
                    run_ns: (ns.saturating_sub(ns0) as f64 * scale) as u64,
                }
            })
            .filter(|p| p.events > 0)
            .collect();
        programs.sort_by_key(|p| std::cmp::Reverse(p.run_ns));
        // Estimated only if every hook kind that ran was calibrated.
        let dispatch_ns = programs
            .iter()
            .map(|p| {
                let tier = tier_of_program(&p.program);
                let d = dispatch.iter().find(|d| d.tier == tier)?;
                Some(d.ns_per_event * p.events as f64)
            })
            .sum::<Option<f64>>();
        TracerCost {
            events: programs.iter().map(|p| p.events).sum(),
            run_ns: programs.iter().map(|p| p.run_ns).sum(),
            programs,
            dispatch_ns: dispatch_ns.map(|d| d as u64),
            dispatch: dispatch.to_vec(),
            sampled_fraction: Some(on as f64 / elapsed as f64),
            ..TracerCost::default()
        }
    }

    /// Set the traced threads' CPU time and the share it implies.
    pub fn with_cpu(mut self, traced_cpu_ns: Option<u64>) -> TracerCost {
        self.traced_cpu_ns = traced_cpu_ns;
        self.share_of_traced_cpu = traced_cpu_ns
            .filter(|&c| c > 0)
            .map(|c| (self.run_ns + self.dispatch_ns.unwrap_or(0)) as f64 / c as f64);
        self
    }

    /// One line for people.
    pub fn line(&self) -> String {
        let per = |ns: u64| ns as f64 / self.events.max(1) as f64;
        let mut s = format!(
            "tracer cost: {:.1} ms of program time in {} events ({:.0} ns/event; sampled {:.0} % \
             of the time)",
            self.run_ns as f64 / 1e6,
            self.events,
            per(self.run_ns),
            self.sampled_fraction.unwrap_or(0.0) * 100.0
        );
        match self.dispatch_ns {
            Some(d) => {
                s += &format!(
                    " + {:.1} ms estimated dispatch ({:.0} ns/event, calibrated)",
                    d as f64 / 1e6,
                    per(d)
                )
            }
            None => s += " + dispatch (not calibrated for every hook kind in use)",
        }
        if let Some(f) = self.share_of_traced_cpu {
            s += &format!(
                " ≈ {:.1} % of the traced threads' CPU time (counting every program run as \
                 theirs)",
                f * 100.0
            );
        }
        if let Some(n) = &self.note {
            s += &format!(" ({n})");
        }
        s
    }
}

/// Calls per timed batch: about 40 µs on the CI VM, short enough that most batches see no
/// interrupt and no preemption, even on a loaded machine.
const BATCH: u32 = 250;

/// A timed phase lasts at least `MIN_BATCHES` batches of each call and at least `PHASE`.
const MIN_BATCHES: usize = 8;
const PHASE: Duration = Duration::from_millis(3);

/// Blocks at most, and the time after which calibration stops early (after `MIN_BLOCKS`): an
/// emulated guest takes several µs per call and must not spend seconds per tracer here.
const BLOCKS: usize = 16;
const MIN_BLOCKS: usize = 3;
const BUDGET: Duration = Duration::from_millis(60);

/// The system calls timed: cheap, and in pairs of nearly one cost, one of which can fire an
/// event the other does not.
#[derive(Clone, Copy)]
enum Call {
    GetPpid,
    GetPid,
    /// `prctl(PR_SET_NAME)` to the thread's own name (no change; fires `task:task_rename`).
    SetName([u8; 16]),
    GetName,
}

/// Mean ns per call over one batch.
fn batch_ns(call: Call) -> f64 {
    let mut name = [0u8; 16];
    let t = Instant::now();
    for _ in 0..BATCH {
        // SAFETY: getppid/getpid take no arguments; PR_GET_NAME writes at most 16 bytes into
        // `name`, PR_SET_NAME reads a NUL-terminated name of at most 16.
        unsafe {
            match call {
                Call::GetPpid => libc::getppid(),
                Call::GetPid => libc::getpid(),
                Call::SetName(n) => libc::prctl(libc::PR_SET_NAME, n.as_ptr()),
                Call::GetName => libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()),
            }
        };
    }
    t.elapsed().as_nanos() as f64 / f64::from(BATCH)
}

/// This thread's name, to set it to itself.
fn own_name() -> Result<[u8; 16], String> {
    let mut name = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL-terminated.
    if unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) } != 0 {
        return Err(format!("PR_GET_NAME: {}", std::io::Error::last_os_error()));
    }
    Ok(name)
}

/// The fastest batch of each call over one phase, the calls' batches alternating. An
/// interrupt, a preemption or a neighbour's burst only ever lengthens a batch, so the minimum
/// over many short batches is what a call costs undisturbed.
fn phase_ns<const N: usize>(calls: [Call; N]) -> [f64; N] {
    let mut best = [f64::MAX; N];
    let t = Instant::now();
    let mut n = 0;
    while n < MIN_BATCHES || t.elapsed() < PHASE {
        for (b, c) in best.iter_mut().zip(calls) {
            *b = b.min(batch_ns(c));
        }
        n += 1;
    }
    best
}

/// The empty program's run time per run, kept as the fastest over the phases, like the
/// batches: a vCPU preempted by its host inside one run adds the whole stolen time to that run,
/// and the mean over a whole calibration here was then 61 or 140 ns instead of 33.
struct RunTime {
    last: RunStats,
    best: f64,
}

impl RunTime {
    fn new(at: RunStats) -> RunTime {
        RunTime {
            last: at,
            best: f64::MAX,
        }
    }

    /// A phase ended with these statistics.
    fn phase(&mut self, at: RunStats) {
        let runs = at.1.saturating_sub(self.last.1);
        if runs > 0 {
            self.best = self
                .best
                .min(at.0.saturating_sub(self.last.0) as f64 / runs as f64);
        }
        self.last = at;
    }
}

/// `a` minus `b`, ns: the fastest of each over alternating batches, so both come from one
/// state of the CPU. With `stats` (the program's statistics, read after each phase), also the
/// program's run time ([`RunTime`]; `f64::MAX` without).
fn paired(
    [a, b]: [Call; 2],
    stats: Option<&dyn Fn() -> Result<RunStats, String>>,
) -> Result<(f64, f64), String> {
    let mut run = stats.map(|s| s().map(RunTime::new)).transpose()?;
    let t = Instant::now();
    let (mut x, mut y) = (f64::MAX, f64::MAX);
    for block in 0..BLOCKS {
        let [p, q] = phase_ns([a, b]);
        (x, y) = (x.min(p), y.min(q));
        if let (Some(run), Some(Ok(s))) = (&mut run, stats.map(|s| s())) {
            run.phase(s);
        }
        if block + 1 >= MIN_BLOCKS && t.elapsed() > BUDGET / 2 {
            break;
        }
    }
    Ok((x - y, run.map_or(f64::MAX, |r| r.best)))
}

/// Calibrate the dispatch cost of raw and classic tracepoints: the time one more event adds
/// to a cheap system call, minus the empty program's own run time. Fentry and kprobe hooks are
/// not calibrated (each would need a program bound to one function).
///
/// Every figure compares two calls timed in alternating batches, one of which fires one event
/// more, with no hook changing while timing. An earlier design switched a second hook on and
/// off between phases instead: the (shared, virtual) CPU's speed here moves between levels
/// about a third apart for milliseconds at a time, and switching takes as long (attaching a raw
/// tracepoint ~7 ms, detaching a classic one ~80 ms), so the two settings were often timed at
/// different speeds; beside a traced 64-byte sender one raw calibration in thirty found no
/// difference at all.
///
/// One copytrace calibrates at a time ([`CalibrationLock`]).
pub fn calibrate(ebpf: &mut Ebpf) -> Vec<Dispatch> {
    let mut out = Vec::new();
    let Ok(_stats) = enable_stats() else {
        return out;
    };
    let _lock = match CalibrationLock::take() {
        Ok(l) => l,
        Err(e) => {
            log::debug!("dispatch not calibrated: {e}");
            return out;
        }
    };
    for tier in [Tier::RawTp, Tier::Tracepoint] {
        match calibrate_tier(ebpf, tier) {
            Ok(d) => out.push(d),
            Err(e) => log::debug!("dispatch calibration for {}: {e}", tier.as_str()),
        }
    }
    unload(ebpf, "floor_raw_tp");
    unload(ebpf, "floor_tracepoint");
    out
}

/// Timings of one tier, again if they came out impossible: beside a busy traced sender the
/// fastest batches are rare, and one calibration in forty here found the call that fires one
/// more event no slower. A second timing is independent of the first.
const ATTEMPTS: usize = 3;

/// Load the tier's empty program and time it. Links a failed attach leaves go with the
/// program's unload in [`calibrate`].
fn calibrate_tier(ebpf: &mut Ebpf, tier: Tier) -> Result<Dispatch, String> {
    let err = |e: ProgramError| e.to_string();
    match tier {
        Tier::RawTp => {
            let p: &mut RawTracePoint = planner::program(ebpf, "floor_raw_tp")?;
            p.load().map_err(err)?;
            attempts(tier, || raw_event(p))
        }
        _ => {
            let p: &mut TracePoint = planner::program(ebpf, "floor_tracepoint")?;
            p.load().map_err(err)?;
            attempts(tier, || classic_event(p))
        }
    }
}

/// `timed` (ns added, run time) up to `ATTEMPTS` times, until the difference is possible.
fn attempts(
    tier: Tier,
    mut timed: impl FnMut() -> Result<(f64, f64), String>,
) -> Result<Dispatch, String> {
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        let (added, run) = timed()?;
        match dispatch(tier, added, run) {
            Ok(d) => return Ok(d),
            Err(e) => last = e,
        }
    }
    Err(format!("{last}, {ATTEMPTS} times"))
}

fn dispatch(tier: Tier, added: f64, run: f64) -> Result<Dispatch, String> {
    // One more event cannot be free: a difference of nothing (or less) means the settings were
    // not timed alike, and a calibrated 0 would be a wrong number, not a small one.
    if run == f64::MAX || added - run <= 0.0 {
        return Err(format!(
            "no measurable difference ({added:.1} ns added, {run:.1} ns run time)"
        ));
    }
    log::debug!(
        "dispatch calibration for {}: {added:.1} ns added, {run:.1} ns run time",
        tier.as_str()
    );
    Ok(Dispatch {
        tier,
        ns_per_event: added - run,
    })
}

/// The program's statistics, from its own descriptor.
fn stats_of(info: Result<aya::programs::ProgramInfo, ProgramError>) -> Result<RunStats, String> {
    info.map(|i| run_stats(&i)).map_err(|e| e.to_string())
}

/// ns `calls[0]` costs more than `calls[1]` once `attach` has put the program where only the
/// first fires it, less what it costs more with nothing attached; and the program's run time.
fn added_by<L>(
    calls: [Call; 2],
    stats: &dyn Fn() -> Result<RunStats, String>,
    attach: impl FnOnce() -> Result<L, String>,
    detach: impl FnOnce(L) -> Result<(), String>,
) -> Result<(f64, f64), String> {
    let (bodies, _) = paired(calls, None)?;
    let links = attach()?;
    let traced = paired(calls, Some(stats));
    detach(links)?;
    let (traced, run) = traced?;
    log::debug!("one more event: {traced:.1} ns traced, {bodies:.1} ns untraced");
    Ok((traced - bodies, run))
}

/// Raw tracepoints on `sys_enter`/`sys_exit` fire for every system call alike, so the event
/// is `task:task_rename`, which `prctl(PR_SET_NAME)` fires and `prctl(PR_GET_NAME)` does not.
fn raw_event(p: &mut RawTracePoint) -> Result<(f64, f64), String> {
    let err = |e: ProgramError| e.to_string();
    let name = own_name()?;
    let p = std::cell::RefCell::new(p);
    added_by(
        [Call::SetName(name), Call::GetName],
        &|| stats_of(p.borrow().info()),
        || p.borrow_mut().attach("task_rename").map_err(err),
        |l| p.borrow_mut().detach(l).map_err(err),
    )
}

/// Classic tracepoints exist per system call: with the program on both events of `getppid()`
/// and on the entry of its twin `getpid()`, a `getppid()` fires one event more.
fn classic_event(p: &mut TracePoint) -> Result<(f64, f64), String> {
    let err = |e: ProgramError| e.to_string();
    let p = std::cell::RefCell::new(p);
    added_by(
        [Call::GetPpid, Call::GetPid],
        &|| stats_of(p.borrow().info()),
        || {
            ["sys_enter_getppid", "sys_exit_getppid", "sys_enter_getpid"]
                .into_iter()
                .map(|event| p.borrow_mut().attach("syscalls", event).map_err(err))
                .collect::<Result<Vec<_>, _>>()
        },
        |links| {
            links
                .into_iter()
                .try_for_each(|l| p.borrow_mut().detach(l).map_err(err))
        },
    )
}

/// How long a calibration waits for another copytrace's to finish (each takes ~0.2 s here).
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// Held while calibrating. The hooks are machine-wide: a calibration's empty program on
/// `task_rename` or `getppid()` runs in every other calibration's calls too, and lands in
/// whichever timing (untraced or traced) it overlaps. Without the lock, sixteen copytraces
/// started in pairs here calibrated raw tracepoints at 0 to 115 ns and classic ones at 0 to
/// 100 ns (the design of the time; one at a time, 17 to 24 and 34 to 50 ns); CI's parallel
/// tests met such a 0.
struct CalibrationLock {
    _file: std::fs::File,
}

impl CalibrationLock {
    fn take() -> Result<CalibrationLock, String> {
        use std::os::fd::AsRawFd as _;
        let dir = [std::path::PathBuf::from("/run"), std::env::temp_dir()]
            .into_iter()
            .find(|d| d.is_dir())
            .ok_or("no /run or temporary directory for the lock")?;
        let path = dir.join("copytrace-calibration.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let t = Instant::now();
        // SAFETY: flock on a descriptor we own; released when the file is closed.
        while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            if t.elapsed() > LOCK_WAIT {
                return Err(format!(
                    "another copytrace held {} for {} s",
                    path.display(),
                    LOCK_WAIT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(CalibrationLock { _file: f })
    }
}

fn unload(ebpf: &mut Ebpf, name: &str) {
    match ebpf.program_mut(name) {
        Some(Program::RawTracePoint(p)) => {
            let _ = p.unload();
        }
        Some(Program::TracePoint(p)) => {
            let _ = p.unload();
        }
        _ => {}
    }
}

/// CPU time (user + system) of the threads of `tgids` so far, ns; `None` if unreadable.
pub fn cpu_ns(tgids: &[u32]) -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut total = 0;
    for t in tgids {
        let stat = std::fs::read_to_string(format!("/proc/{t}/stat")).ok()?;
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        total += ticks * 1_000_000_000 / hz;
    }
    Some(total)
}

/// CPU time (busy: all but idle and iowait) of the whole machine so far, ns.
pub fn cpu_ns_all() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy: u64 = f
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
    Some(busy * 1_000_000_000 / hz)
}

/// User + system CPU time so far, ns, of `who`: `RUSAGE_SELF` (this process) or
/// `RUSAGE_CHILDREN` (reaped children and their reaped descendants).
pub fn rusage_cpu_ns(who: libc::c_int) -> u64 {
    // SAFETY: a zeroed rusage is valid; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrusage(who, &mut ru) };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    ns(ru.ru_utime) + ns(ru.ru_stime)
}

/// The hook kind a program of ours runs on, from the naming convention of `copytrace-ebpf`.
pub fn tier_of_program(name: &str) -> Tier {
    if name.starts_with("raw_") || name == "floor_raw_tp" {
        Tier::RawTp
    } else if name.starts_with("fe_") || name.starts_with("fx_") {
        Tier::Fentry
    } else if name.starts_with("kp_")
        || name.starts_with("krp_")
        || name == "probe_kprobe"
        || name == "floor_kretprobe"
    {
        Tier::Kprobe
    } else {
        Tier::Tracepoint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A phase whose runs include stolen time does not become the run time, and phases in
    /// which the program did not run change nothing.
    #[test]
    fn the_run_time_is_the_fastest_phase() {
        let mut r = RunTime::new((1_000, 10));
        r.phase((1_000 + 40 * 100, 110));
        r.phase((5_000 + 2_000_000 + 33 * 100, 210));
        r.phase((2_008_300, 210));
        assert_eq!(r.best, 40.0);
        r.phase((2_008_300 + 33 * 1_000, 1_210));
        assert_eq!(r.best, 33.0);
    }

    /// No run in any phase: no run time (and then no dispatch figure).
    #[test]
    fn without_runs_there_is_no_run_time() {
        let mut r = RunTime::new((0, 0));
        r.phase((0, 0));
        assert!(dispatch(Tier::RawTp, 50.0, r.best).is_err());
        assert!(
            dispatch(Tier::RawTp, 20.0, 30.0).is_err(),
            "an event cannot be free"
        );
        assert_eq!(
            dispatch(Tier::RawTp, 50.0, 30.0).unwrap().ns_per_event,
            20.0
        );
    }
}

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

/// Run time and runs of each of our loaded programs, by name.
pub fn program_counts(ebpf: &Ebpf) -> BTreeMap<String, (u64, u64)> {
    ebpf.programs()
        .filter_map(|(name, p)| Some((name.to_string(), run_stats(&p.info().ok()?))))
        .collect()
}

/// (run ns, runs) the kernel counted for a program.
fn run_stats(info: &aya::programs::ProgramInfo) -> (u64, u64) {
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

/// `getppid()` calls per timed sample: about 40 µs on the CI VM, short enough that most samples
/// see no interrupt and no preemption, even on a loaded machine.
const BATCH: u32 = 250;

/// Samples per configuration in one block; blocks alternate the configurations.
const PER_BLOCK: usize = 8;

/// Blocks at most, and the time after which calibration stops early (after `MIN_BLOCKS`): an
/// emulated guest takes several µs per call and must not spend seconds per tracer here.
const BLOCKS: usize = 16;
const MIN_BLOCKS: usize = 3;
const BUDGET: Duration = Duration::from_millis(60);

/// Mean ns per `getppid()` over one batch of calls.
fn batch_ns() -> f64 {
    let t = Instant::now();
    for _ in 0..BATCH {
        // SAFETY: no arguments, no effects.
        unsafe { libc::getppid() };
    }
    t.elapsed().as_nanos() as f64 / f64::from(BATCH)
}

/// The fastest batch with one hook attached and with two, in alternating blocks. An
/// interrupt, a preemption or a neighbour's burst only ever lengthens a batch, so the minimum
/// over many short batches is what the calls cost undisturbed; a mean over long samples (as
/// here before) let a loaded machine's noise swing the difference from 0 to 250 ns.
fn timed(mut second: impl FnMut(bool) -> Result<(), String>) -> Result<(f64, f64), String> {
    let (mut one, mut two) = (f64::MAX, f64::MAX);
    let t = Instant::now();
    for block in 0..BLOCKS {
        for _ in 0..PER_BLOCK {
            one = one.min(batch_ns());
        }
        second(true)?;
        for _ in 0..PER_BLOCK {
            two = two.min(batch_ns());
        }
        second(false)?;
        if block + 1 >= MIN_BLOCKS && t.elapsed() > BUDGET {
            break;
        }
    }
    Ok((one, two))
}

/// Calibrate the dispatch cost of raw and classic tracepoints. An empty program stays on the
/// entry of `getppid()` (which switches system calls to their traced slow path, a cost of
/// its own) while this thread times a loop of `getppid()` calls with and without the same
/// program also on its exit: the difference is one more event, whose own run time is taken
/// off. Fentry and kprobe hooks are not calibrated (each would need a
/// program bound to one function).
pub fn calibrate(ebpf: &mut Ebpf) -> Vec<Dispatch> {
    let mut out = Vec::new();
    let Ok(_stats) = enable_stats() else {
        return out;
    };
    for tier in [Tier::RawTp, Tier::Tracepoint] {
        match calibrate_one(ebpf, tier) {
            Ok(d) => out.push(d),
            Err(e) => log::debug!("dispatch calibration for {}: {e}", tier.as_str()),
        }
    }
    out
}

fn calibrate_one(ebpf: &mut Ebpf, tier: Tier) -> Result<Dispatch, String> {
    let name = match tier {
        Tier::RawTp => "floor_raw_tp",
        _ => "floor_tracepoint",
    };
    let before = program_counts(ebpf).get(name).copied().unwrap_or((0, 0));
    let err = |e: ProgramError| e.to_string();
    let (one, two) = match tier {
        Tier::RawTp => {
            let p: &mut RawTracePoint = planner::program(ebpf, name)?;
            p.load().map_err(err)?;
            let first = p.attach("sys_enter").map_err(err)?;
            let mut link = None;
            let r = timed(|on| {
                match (on, link.take()) {
                    (true, _) => link = Some(p.attach("sys_exit").map_err(err)?),
                    (false, Some(l)) => p.detach(l).map_err(err)?,
                    (false, None) => {}
                }
                Ok(())
            });
            p.detach(first).map_err(err)?;
            r?
        }
        _ => {
            let p: &mut TracePoint = planner::program(ebpf, name)?;
            p.load().map_err(err)?;
            let first = p.attach("syscalls", "sys_enter_getppid").map_err(err)?;
            let mut link = None;
            let r = timed(|on| {
                match (on, link.take()) {
                    (true, _) => {
                        link = Some(p.attach("syscalls", "sys_exit_getppid").map_err(err)?)
                    }
                    (false, Some(l)) => p.detach(l).map_err(err)?,
                    (false, None) => {}
                }
                Ok(())
            });
            p.detach(first).map_err(err)?;
            r?
        }
    };
    let after = program_counts(ebpf).get(name).copied().unwrap_or((0, 0));
    unload(ebpf, name);
    let runs = after.1.saturating_sub(before.1).max(1);
    let run_ns = after.0.saturating_sub(before.0) as f64 / runs as f64;
    Ok(Dispatch {
        tier,
        ns_per_event: (two - one - run_ns).max(0.0),
    })
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

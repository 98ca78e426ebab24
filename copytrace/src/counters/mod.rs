//! Per-thread counters for the measured window: the thread's own accounting always (CPU time
//! with kernel time, context switches, migrations, page faults — see [`thread`]), hardware
//! perf events (kernel included: without kernel time a network benchmark measures almost
//! nothing) when the PMU allows.
pub mod thread;

use std::io;

use perf_event::events::{Cache, CacheOp, CacheResult, Event, Hardware, Software, WhichCache};
use serde::{Deserialize, Serialize};

/// Explain a perf_event_open failure for a hardware event.
pub fn hardware_unavailable_reason(e: &io::Error) -> String {
    let pmu = std::path::Path::new("/sys/bus/event_source/devices/cpu").exists();
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) if !pmu => format!(
            "perf_event_open(cycles): {e}; no hardware PMU is exposed \
             (/sys/bus/event_source/devices/cpu missing: a VM without a virtual PMU)"
        ),
        Some(libc::EACCES) | Some(libc::EPERM) => {
            format!("perf_event_open(cycles): {e}; check /proc/sys/kernel/perf_event_paranoid")
        }
        _ => format!("perf_event_open(cycles): {e}"),
    }
}

/// `Ok(())` if a cycles counter can be opened here, else the reason it cannot.
pub fn hardware_available() -> Result<(), String> {
    let mut b = perf_event::Builder::new().kind(Hardware::CPU_CYCLES);
    b.include_kernel();
    b.build()
        .map(|_| ())
        .map_err(|e| hardware_unavailable_reason(&e))
}

/// Counter totals. Hardware fields are absent (not zero) when they could not be counted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CounterValues {
    pub task_clock_ns: u64,
    pub context_switches: u64,
    pub cpu_migrations: u64,
    pub page_faults: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycles: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_references: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_misses: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llc_loads: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llc_load_misses: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1d_load_misses: Option<u64>,
}

fn add_opt(a: &mut Option<u64>, b: Option<u64>) {
    *a = match (*a, b) {
        (Some(x), Some(y)) => Some(x + y),
        (None, y) => y,
        (x, None) => x,
    };
}

impl CounterValues {
    pub fn add(&mut self, o: &CounterValues) {
        self.task_clock_ns += o.task_clock_ns;
        self.context_switches += o.context_switches;
        self.cpu_migrations += o.cpu_migrations;
        self.page_faults += o.page_faults;
        add_opt(&mut self.cycles, o.cycles);
        add_opt(&mut self.instructions, o.instructions);
        add_opt(&mut self.cache_references, o.cache_references);
        add_opt(&mut self.cache_misses, o.cache_misses);
        add_opt(&mut self.llc_loads, o.llc_loads);
        add_opt(&mut self.llc_load_misses, o.llc_load_misses);
        add_opt(&mut self.l1d_load_misses, o.l1d_load_misses);
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    CpuMigrations,
    Cycles,
    Instructions,
    CacheReferences,
    CacheMisses,
    LlcLoads,
    LlcLoadMisses,
    L1dLoadMisses,
}

impl Kind {
    fn event(self) -> Event {
        let cache = |which, result| {
            Event::from(Cache {
                which,
                operation: CacheOp::READ,
                result,
            })
        };
        match self {
            Kind::CpuMigrations => Software::CPU_MIGRATIONS.into(),
            Kind::Cycles => Hardware::CPU_CYCLES.into(),
            Kind::Instructions => Hardware::INSTRUCTIONS.into(),
            Kind::CacheReferences => Hardware::CACHE_REFERENCES.into(),
            Kind::CacheMisses => Hardware::CACHE_MISSES.into(),
            Kind::LlcLoads => cache(WhichCache::LL, CacheResult::ACCESS),
            Kind::LlcLoadMisses => cache(WhichCache::LL, CacheResult::MISS),
            Kind::L1dLoadMisses => cache(WhichCache::L1D, CacheResult::MISS),
        }
    }

    fn set(self, v: &mut CounterValues, n: u64) {
        match self {
            Kind::CpuMigrations => v.cpu_migrations = n,
            Kind::Cycles => v.cycles = Some(n),
            Kind::Instructions => v.instructions = Some(n),
            Kind::CacheReferences => v.cache_references = Some(n),
            Kind::CacheMisses => v.cache_misses = Some(n),
            Kind::LlcLoads => v.llc_loads = Some(n),
            Kind::LlcLoadMisses => v.llc_load_misses = Some(n),
            Kind::L1dLoadMisses => v.l1d_load_misses = Some(n),
        }
    }
}

const HARDWARE: [Kind; 7] = [
    Kind::Cycles,
    Kind::Instructions,
    Kind::CacheReferences,
    Kind::CacheMisses,
    Kind::LlcLoads,
    Kind::LlcLoadMisses,
    Kind::L1dLoadMisses,
];

/// Counters of the calling thread, created disabled. Every method must be called on the
/// thread that opened them.
pub struct ThreadCounters {
    /// Hardware perf events (empty without a PMU).
    hardware: Vec<(Kind, perf_event::Counter)>,
    /// A perf software event for migrations, only where the sched file is missing.
    migrations: Option<perf_event::Counter>,
    /// Accounting at the last `enable`, while enabled.
    since: Option<thread::Usage>,
    /// Accounting summed over enabled stretches.
    total: thread::Usage,
}

impl ThreadCounters {
    /// Read the thread's accounting (an error if that fails) and open, if `hardware`, every
    /// hardware counter this CPU offers (each one that fails is simply absent from the values).
    pub fn open(hardware: bool) -> io::Result<ThreadCounters> {
        let now = thread::Usage::now()?;
        let migrations = match now.migrations {
            Some(_) => None,
            None => Some(Self::build(Kind::CpuMigrations)?),
        };
        let mut counters = Vec::new();
        if hardware {
            for k in HARDWARE {
                if let Ok(c) = Self::build(k) {
                    counters.push((k, c));
                }
            }
        }
        Ok(ThreadCounters {
            hardware: counters,
            migrations,
            since: None,
            total: thread::Usage::default(),
        })
    }

    fn build(k: Kind) -> io::Result<perf_event::Counter> {
        let mut b = perf_event::Builder::new().kind(k.event()).observe_self();
        b.include_kernel();
        b.build().map_err(|e| match e.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => io::Error::new(
                e.kind(),
                format!(
                    "perf_event_open({k:?}, kernel included): {e}; run as root or set \
                     kernel.perf_event_paranoid to 1 or less"
                ),
            ),
            _ => e,
        })
    }

    fn perf(&mut self) -> impl Iterator<Item = &mut perf_event::Counter> {
        self.hardware
            .iter_mut()
            .map(|(_, c)| c)
            .chain(self.migrations.as_mut())
    }

    pub fn enable(&mut self) -> io::Result<()> {
        for c in self.perf() {
            c.enable()?;
        }
        self.since = Some(thread::Usage::now()?);
        Ok(())
    }

    pub fn disable(&mut self) -> io::Result<()> {
        if let Some(since) = self.since.take() {
            self.total.add(&thread::Usage::now()?.since(&since));
        }
        for c in self.perf() {
            c.disable()?;
        }
        Ok(())
    }

    /// Values counted while enabled; perf counts are scaled up if the kernel multiplexed a
    /// counter (time_running < time_enabled), as perf does.
    pub fn read(&mut self) -> io::Result<CounterValues> {
        let mut v = CounterValues {
            task_clock_ns: self.total.cpu_ns,
            context_switches: self.total.context_switches,
            cpu_migrations: self.total.migrations.unwrap_or(0),
            page_faults: self.total.page_faults,
            ..Default::default()
        };
        let kinds: Vec<Kind> = self
            .hardware
            .iter()
            .map(|(k, _)| *k)
            .chain(self.migrations.as_ref().map(|_| Kind::CpuMigrations))
            .collect();
        let counts: Vec<u64> = self
            .perf()
            .map(|c| {
                let ct = c.read_count_and_time()?;
                Ok(
                    if ct.time_running > 0 && ct.time_running < ct.time_enabled {
                        (ct.count as u128 * ct.time_enabled as u128 / ct.time_running as u128)
                            as u64
                    } else {
                        ct.count
                    },
                )
            })
            .collect::<io::Result<_>>()?;
        for (k, n) in kinds.into_iter().zip(counts) {
            k.set(&mut v, n);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_counters_count_this_thread_only_while_enabled() {
        let mut c = ThreadCounters::open(false).unwrap();
        let spin = || thread::tests::spin_cpu(30);
        spin();
        assert_eq!(c.read().unwrap().task_clock_ns, 0, "counted while disabled");
        c.enable().unwrap();
        spin();
        c.disable().unwrap();
        let v = c.read().unwrap();
        assert!(v.task_clock_ns >= 20_000_000, "{v:?}");
        assert!(v.task_clock_ns < 1_000_000_000, "{v:?}");
        assert_eq!(v.cycles, None);
    }

    #[test]
    fn sums_keep_absent_hardware_absent() {
        let mut a = CounterValues {
            task_clock_ns: 5,
            ..Default::default()
        };
        a.add(&CounterValues {
            task_clock_ns: 7,
            context_switches: 2,
            ..Default::default()
        });
        assert_eq!(a.task_clock_ns, 12);
        assert_eq!(a.context_switches, 2);
        assert_eq!(a.cycles, None);
        a.add(&CounterValues {
            cycles: Some(10),
            ..Default::default()
        });
        assert_eq!(a.cycles, Some(10));
    }
}

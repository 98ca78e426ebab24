//! The calling thread's own accounting, read at the edges of the measured window.
//!
//! CPU time comes from `CLOCK_THREAD_CPUTIME_ID`, context switches and page faults from
//! `getrusage(RUSAGE_THREAD)`, migrations from `/proc/thread-self/sched`: the same kernel
//! accounting perf's software events (task-clock, context-switches, page-faults,
//! cpu-migrations) report, without their cost. A per-thread perf event is switched out and in
//! with its task; a request/response loop switches twice per side per round trip, and four
//! such events added 5–6 µs to a 77 µs loopback round trip on the CI VM (p50, 3 interleaved
//! runs each way).
use std::io;

/// Accounting totals of the calling thread since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_ns: u64,
    pub context_switches: u64,
    pub page_faults: u64,
    /// `None` where the kernel has no `/proc/thread-self/sched` (built without
    /// CONFIG_SCHED_DEBUG).
    pub migrations: Option<u64>,
}

impl Usage {
    /// The calling thread's totals now.
    pub fn now() -> io::Result<Usage> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a timespec.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a zeroed rusage is valid; the kernel fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a rusage.
        if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Usage {
            cpu_ns: ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
            context_switches: (ru.ru_nvcsw + ru.ru_nivcsw) as u64,
            page_faults: (ru.ru_minflt + ru.ru_majflt) as u64,
            migrations: migrations(),
        })
    }

    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &Usage) -> Usage {
        Usage {
            cpu_ns: self.cpu_ns.saturating_sub(earlier.cpu_ns),
            context_switches: self
                .context_switches
                .saturating_sub(earlier.context_switches),
            page_faults: self.page_faults.saturating_sub(earlier.page_faults),
            migrations: self
                .migrations
                .zip(earlier.migrations)
                .map(|(a, b)| a.saturating_sub(b)),
        }
    }

    pub fn add(&mut self, o: &Usage) {
        self.cpu_ns += o.cpu_ns;
        self.context_switches += o.context_switches;
        self.page_faults += o.page_faults;
        self.migrations = match (self.migrations, o.migrations) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }
}

/// `se.nr_migrations` of the calling thread.
fn migrations() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
    parse_migrations(&text)
}

fn parse_migrations(sched: &str) -> Option<u64> {
    sched.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "se.nr_migrations").then(|| v.trim().parse().ok())?
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn reads_migrations_from_the_sched_file() {
        let s = "cat (1, #threads: 1)\n---\nse.exec_start    :   2380036.919117\n\
                 se.nr_migrations                             :                   17\n\
                 nr_switches :  3\n";
        assert_eq!(parse_migrations(s), Some(17));
        assert_eq!(parse_migrations("nr_switches : 3\n"), None);
    }

    /// Spin until this thread has run for `ms` of CPU time. A wall-clock spin gets less CPU
    /// than its length on a busy machine (17 ms of 30 in one CI run), and the test then fails.
    pub(crate) fn spin_cpu(ms: u64) {
        let cpu = || {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: valid pointer.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        };
        let start = cpu();
        let mut x = 0u64;
        while cpu() - start < ms * 1_000_000 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }

    #[test]
    fn counts_this_threads_cpu_time_and_switches() {
        let a = Usage::now().unwrap();
        spin_cpu(30);
        for _ in 0..5 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let d = Usage::now().unwrap().since(&a);
        assert!(d.cpu_ns >= 20_000_000 && d.cpu_ns < 1_000_000_000, "{d:?}");
        // Each sleep is a voluntary switch.
        assert!(d.context_switches >= 5, "{d:?}");
    }
}

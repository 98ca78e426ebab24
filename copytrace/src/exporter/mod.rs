//! `copytrace exporter`: the tracer left attached, its totals served as OpenMetrics for
//! Prometheus.
//!
//! The kernel side is the same as `trace`'s (same planner, tiers and exactness). What is new
//! is running for weeks: rows of threads that exited are *reaped* — their final values are
//! carried in user space under their label and their map entries deleted — so neither the
//! kernel maps nor the exporter grow with process churn; and the number of series is bounded
//! ([`series::Cap`]).
pub mod labels;
pub mod series;

use std::collections::{BTreeMap, HashMap};

use copytrace_common::{StatKey, Stats};

use crate::{
    error::Result,
    features,
    trace::{Snapshot, Tracer, snapshot::StatsExt as _},
};
use labels::{LabelBy, Labeler};
use series::{Cap, Ledger, SeriesKey, Value};

/// Everything one scrape shows, as plain data ([`crate::export::openmetrics`] encodes it).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub version: String,
    pub kernel: String,
    /// The planner's choice per path: (path id, tier, note).
    pub plan: Vec<(String, String, String)>,
    pub label_by: String,
    pub series: BTreeMap<SeriesKey, Value>,
    /// Events lost by the tracer (maps full, program runs the kernel skipped), by reason.
    pub lost: Vec<(&'static str, u64)>,
    /// Events deliberately not counted, by reason.
    pub uncounted: Vec<(&'static str, u64)>,
    /// Per program: (name, ns, runs) inside the statistics windows.
    pub programs: Vec<(String, u64, u64)>,
    /// How long the statistics windows were open (ns); the reason when there are none.
    pub stats_window_ns: u64,
    pub stats_note: Option<String>,
    /// Calibrated dispatch cost per event, by hook type.
    pub dispatch: Vec<(String, f64)>,
    pub folded_threads: u64,
    pub reaped_threads: u64,
    pub reaped_rows: u64,
}

impl Metrics {
    /// Series every scrape has whatever is traced (the cap counts them first).
    pub fn fixed_series(&self) -> usize {
        1 + self.plan.len()
            + self.lost.len()
            + self.uncounted.len()
            + 2 * self.programs.len()
            + 1
            + self.dispatch.len()
            + 4
    }

    /// Series this scrape shows in all (a histogram stores buckets, +Inf, sum and count).
    pub fn series_count(&self) -> usize {
        self.fixed_series()
            + self
                .series
                .keys()
                .map(|k| k.family.series_cost())
                .sum::<usize>()
    }
}

/// The attached tracer and everything the exporter keeps between scrapes.
pub struct Exporter {
    tracer: Tracer,
    labeler: Labeler,
    ledger: Ledger,
    base: Metrics,
    start_cost: crate::trace::cost::Sampled,
}

impl Exporter {
    /// Take over a started tracer; `max_series` bounds what every scrape shows.
    pub fn new(tracer: Tracer, label_by: LabelBy, max_series: usize) -> Result<Exporter> {
        let base = Metrics {
            version: env!("CARGO_PKG_VERSION").to_string(),
            kernel: features::kernel_release(),
            plan: tracer
                .decisions()
                .iter()
                .map(|d| {
                    (
                        series::path_id(&d.path),
                        d.tier.as_str().to_string(),
                        d.note.clone().unwrap_or_default(),
                    )
                })
                .collect(),
            label_by: format!("{label_by:?}").to_lowercase(),
            programs: tracer
                .program_names()
                .into_iter()
                .map(|n| (n, 0, 0))
                .collect(),
            dispatch: tracer
                .dispatch()
                .iter()
                .map(|d| (d.tier.as_str().to_string(), d.ns_per_event))
                .collect(),
            lost: lost(&Default::default()),
            uncounted: uncounted(&Default::default()),
            ..Metrics::default()
        };
        let cap = Cap::new(max_series, base.fixed_series()).map_err(crate::error::Error::Usage)?;
        let start_cost = tracer.cost_reading();
        Ok(Exporter {
            tracer,
            labeler: Labeler::new(label_by),
            ledger: Ledger::new(cap),
            base,
            start_cost,
        })
    }

    /// Read the kernel's totals, reap exited threads, and return what a scrape shows now.
    pub fn collect(&mut self) -> Result<Metrics> {
        // Decided before the read: a thread found gone now wrote nothing after it.
        let exited = self.labeler.exited();
        let snap = self.tracer.snapshot()?;
        let new = snap
            .rows
            .keys()
            .any(|k| k.tgid != 0 && !self.labeler.knows(k.tid));
        let tasks = if new {
            self.tracer.tasks()?
        } else {
            HashMap::new()
        };
        let mut live: BTreeMap<String, (Snapshot, Vec<u32>)> = BTreeMap::new();
        let mut reaped: BTreeMap<String, Snapshot> = BTreeMap::new();
        for (k, v) in &snap.rows {
            let label = self.labeler.label(k.tgid, k.tid, &tasks);
            if exited.contains(&k.tid) {
                add_row(reaped.entry(label).or_default(), *k, v);
            } else {
                let e = live.entry(label).or_default();
                add_row(&mut e.0, *k, v);
                e.1.push(k.tid);
            }
        }
        let decisions = self.tracer.decisions();
        for (label, s) in &reaped {
            self.ledger.carry(series::project(label, s, decisions));
        }
        let (tids, projected): (Vec<Vec<u32>>, Vec<series::Series>) = live
            .into_iter()
            .map(|(label, (s, tids))| (tids, series::project(&label, &s, decisions)))
            .unzip();
        let (series, folded) = self.ledger.current(projected);
        for (tids, f) in tids.iter().zip(folded) {
            if f {
                for t in tids {
                    self.base.folded_threads += u64::from(self.labeler.mark_folded(*t));
                }
            }
        }
        // Threads are reaped only once known, so their folds were counted while they lived.
        self.base.reaped_rows += self.tracer.forget_threads(&exited)? as u64;
        self.base.reaped_threads += exited.len() as u64;
        self.labeler.forget(&exited);
        self.labeler.prune_cgroups();
        Ok(self.metrics(series, &snap))
    }

    fn metrics(&self, series: BTreeMap<SeriesKey, Value>, snap: &Snapshot) -> Metrics {
        let reading = self.tracer.cost_reading();
        let mut m = self.base.clone();
        m.series = series;
        m.lost = lost(&snap.counters);
        m.uncounted = uncounted(&snap.counters);
        for p in &mut m.programs {
            let now = reading.programs.get(&p.0).copied().unwrap_or((0, 0));
            let then = self
                .start_cost
                .programs
                .get(&p.0)
                .copied()
                .unwrap_or((0, 0));
            p.1 = now.0.saturating_sub(then.0);
            p.2 = now.1.saturating_sub(then.1);
        }
        m.stats_window_ns = reading.on_ns.saturating_sub(self.start_cost.on_ns);
        m.stats_note = self.tracer.stats_unavailable();
        m
    }
}

/// Add one row to a label's snapshot. Thread ids are kept: the breakdown tells attributed
/// rows (tgid ≠ 0) from the rest.
fn add_row(s: &mut Snapshot, k: StatKey, v: &Stats) {
    s.rows.entry(k).or_insert(Stats::ZERO).add(v);
}

fn lost(c: &crate::trace::Counters) -> Vec<(&'static str, u64)> {
    vec![
        ("stats_map_full", c.stats_full),
        ("inflight_map_full", c.inflight_full),
        ("pid_map_full", c.pids_full),
        ("entry_map_full", c.entry_full),
        ("io_uring_cq_overflow", c.uring_overflow),
        ("offcpu_map_full", c.offcpu_full),
        ("offcpu_switch_in_missed", c.offcpu_missed_switch_in),
        ("program_run_skipped_by_kernel", c.skipped_runs),
    ]
}

fn uncounted(c: &crate::trace::Counters) -> Vec<(&'static str, u64)> {
    vec![
        ("exit_without_entry", c.unpaired_exits),
        ("thread_not_yet_seen_in_a_call", c.unknown_context),
        ("sample_ring_full", c.ringbuf_full),
    ]
}

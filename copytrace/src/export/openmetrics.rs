//! The exporter's scrape page, encoded by the official Prometheus client (`prometheus-client`):
//! OpenMetrics for scrapers that ask for it (Prometheus does), the classic text format 0.0.4
//! otherwise (curl, `promtool check metrics`).
use std::{collections::HashMap, fmt};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeCounterValue, NoLabelSet},
    metrics::{MetricType, exemplar::Exemplar},
    registry::{Registry, Unit},
};

use crate::exporter::{
    Metrics,
    series::{Family, SeriesKey, Value},
};

/// The two text formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    PrometheusText,
}

impl Format {
    /// The format a scraper's `Accept` header asks for.
    pub fn from_accept(accept: &str) -> Format {
        if accept.contains("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The whole page for `m`.
pub fn encode(m: &Metrics, format: Format) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Page(m.clone())));
    let mut out = String::new();
    match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry)?,
        Format::PrometheusText => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?
        }
    }
    Ok(out)
}

#[derive(Debug)]
struct Page(Metrics);

type Labels = Vec<(&'static str, String)>;

/// A counter family: counts as integers, seconds as floats.
fn counter<V: EncodeCounterValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, V)],
) -> fmt::Result {
    let mut d = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        d.encode_family(labels)?
            .encode_counter::<NoLabelSet, _, f64>(v, None)?;
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, f64)],
) -> fmt::Result {
    let mut d = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        d.encode_family(labels)?.encode_gauge(v)?;
    }
    Ok(())
}

fn info(enc: &mut DescriptorEncoder, name: &str, help: &str, rows: &[Labels]) -> fmt::Result {
    let mut d = enc.encode_descriptor(name, help, None, MetricType::Info)?;
    for labels in rows {
        d.encode_info(labels)?;
    }
    Ok(())
}

impl Page {
    fn process_family(&self, enc: &mut DescriptorEncoder, family: Family) -> fmt::Result {
        let (name, help, [a, b]) = family.describe();
        let rows = self.0.series.iter().filter(|(k, _)| k.family == family);
        let labels = |k: &SeriesKey| -> Labels {
            vec![
                ("process", k.process.clone()),
                (a, k.labels[0].clone()),
                (b, k.labels[1].clone()),
            ]
        };
        if family.is_histogram() {
            let name = name.trim_end_matches("_seconds");
            let mut d =
                enc.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
            for (k, v) in rows {
                let Value::Histogram { sum_ns, .. } = v else {
                    continue;
                };
                d.encode_family(&labels(k))?
                    .encode_histogram::<NoLabelSet>(
                        *sum_ns as f64 / 1e9,
                        v.count(),
                        &v.bucket_counts(),
                        None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
                    )?;
            }
            return Ok(());
        }
        if family == Family::PathSeconds {
            // Kept in whole nanoseconds.
            let rows: Vec<(Labels, f64)> = rows
                .map(|(k, v)| (labels(k), v.count() as f64 / 1e9))
                .collect();
            return counter(enc, name, help, &rows);
        }
        let rows: Vec<(Labels, u64)> = rows.map(|(k, v)| (labels(k), v.count())).collect();
        counter(enc, name, help, &rows)
    }

    fn tracer_cost(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let m = &self.0;
        let seconds: Vec<(Labels, f64)> = m
            .programs
            .iter()
            .map(|p| (vec![("program", p.0.clone())], p.1 as f64 / 1e9))
            .collect();
        let runs: Vec<(Labels, u64)> = m
            .programs
            .iter()
            .map(|p| (vec![("program", p.0.clone())], p.2))
            .collect();
        counter(
            enc,
            "copytrace_tracer_sampled_program_seconds",
            "copytrace's own kernel-side time, per eBPF program, inside the statistics windows (kernel.bpf_stats_enabled is on for 50 ms of every 500 ms); divide its rate by the rate of copytrace_tracer_sampled_window_seconds for CPU seconds per second. Excludes the dispatch cost (see copytrace_tracer_dispatch_seconds_per_event).",
            &seconds,
        )?;
        counter(
            enc,
            "copytrace_tracer_sampled_program_runs",
            "Runs of each eBPF program inside the statistics windows.",
            &runs,
        )?;
        counter(
            enc,
            "copytrace_tracer_sampled_window_seconds",
            "How long the statistics windows were open.",
            &[(Vec::new(), m.stats_window_ns as f64 / 1e9)],
        )?;
        let rows: Vec<(Labels, f64)> = m
            .dispatch
            .iter()
            .map(|(hook, ns)| (vec![("hook", hook.clone())], ns / 1e9))
            .collect();
        gauge(
            enc,
            "copytrace_tracer_dispatch_seconds_per_event",
            "Calibrated cost of dispatching one event to a program of this hook type on this kernel (not in the program time); absent hook types were not calibrated.",
            &rows,
        )
    }

    fn health(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let m = &self.0;
        let by_reason = |v: &[(&'static str, u64)]| -> Vec<(Labels, u64)> {
            v.iter()
                .map(|(r, n)| (vec![("reason", r.to_string())], *n))
                .collect()
        };
        counter(
            enc,
            "copytrace_lost_events",
            "Events the tracer lost (a map was full, or the kernel skipped a program run): the totals are incomplete when this grows.",
            &by_reason(&m.lost),
        )?;
        counter(
            enc,
            "copytrace_uncounted_events",
            "Events deliberately not counted (a call that began before the tracer attached, and the like).",
            &by_reason(&m.uncounted),
        )?;
        let one = |v: u64| [(Vec::new(), v)];
        counter(
            enc,
            "copytrace_folded_threads",
            "Threads with at least one series folded into process=\"(other processes)\" because --max-series was reached.",
            &one(m.folded_threads),
        )?;
        counter(
            enc,
            "copytrace_reaped_threads",
            "Exited threads whose rows were moved out of the kernel maps (their totals are kept).",
            &one(m.reaped_threads),
        )?;
        counter(
            enc,
            "copytrace_reaped_rows",
            "Kernel map rows deleted with those threads.",
            &one(m.reaped_rows),
        )?;
        gauge(
            enc,
            "copytrace_series",
            "Series on this page (a histogram counts its buckets, sum and count), at most --max-series.",
            &[(Vec::new(), m.series_count() as f64)],
        )
    }

    fn about(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let m = &self.0;
        let plan = m
            .plan
            .iter()
            .map(|(p, t, _)| format!("{p}={t}"))
            .collect::<Vec<_>>()
            .join(",");
        info(
            enc,
            "copytrace_build",
            "copytrace's version, the kernel it traces, what the process label holds, and the planner's tier per path.",
            &[vec![
                ("version", m.version.clone()),
                ("kernel_release", m.kernel.clone()),
                ("process_label", m.label_by.clone()),
                ("plan", plan),
            ]],
        )?;
        let rows: Vec<Labels> = m
            .plan
            .iter()
            .map(|(p, t, note)| {
                vec![
                    ("path", p.clone()),
                    ("tier", t.clone()),
                    ("note", note.clone()),
                ]
            })
            .collect();
        info(
            enc,
            "copytrace_path",
            "Every kernel path and the tier that sees it here: derived paths are computed from other paths (note says how), unavailable ones are never exported as zeros (note says why).",
            &rows,
        )
    }
}

impl Collector for Page {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        self.about(&mut enc)?;
        for f in Family::ALL {
            self.process_family(&mut enc, f)?;
        }
        self.health(&mut enc)?;
        self.tracer_cost(&mut enc)
    }
}

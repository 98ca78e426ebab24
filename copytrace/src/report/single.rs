//! The figures of one bench run, one function per figure, in the order the page shows them.
use super::{
    Built, Options,
    analysis::summary,
    charts::{
        FROM_COMPLETIONS_NOTE, SummaryStat, bar, bars_caption, byte_class_groups, color, est,
        min_threads, overcount_note, per_mode_over_sizes, series_over_sizes, sorted_sizes,
        stat_vs_size, throughput_vs_size, tiers_line, traced, x_bytes, x_count, x_micros,
    },
    figures::{Figure, LineChart, Pt, Series, StackedBars},
};
use crate::{
    bench::{
        Mode, Pattern,
        results::{BenchDocument, CellSummary, Record},
        size_label,
    },
    trace::planner::names,
};

pub(super) fn build_figures(doc: &BenchDocument, opts: &Options) -> Vec<Built> {
    let t1 = min_threads(doc);
    let bars = bars_caption(doc);
    vec![
        throughput_size(doc, t1, &bars),
        modes_vs_two_copy(doc, t1),
        throughput_threads(doc, &bars),
        rtt(doc, t1, &bars),
        latency_cdf(doc, t1, opts),
        where_bytes_went(doc, t1),
        time_per_path(doc, t1),
        cpu_cost(doc, t1, &bars),
        hardware(doc, t1),
    ]
}

fn throughput_size(doc: &BenchDocument, t1: usize, bars: &str) -> Built {
    Built {
        name: "fig1-throughput-vs-size",
        caption: format!(
            "Throughput (sender side, decimal Gbit/s, mean over repeats) against total message \
             size; stream, {t1} connection(s). {bars}"
        ),
        figure: Some(Figure::Lines(throughput_vs_size(
            doc,
            "Throughput vs message size".into(),
            t1,
        ))),
        absent: None,
    }
}

/// Every mode against two-copy at each size: the whole copy matrix in one picture.
fn modes_vs_two_copy(doc: &BenchDocument, t1: usize) -> Built {
    let name = "fig1b-modes-vs-two-copy";
    let caption = format!(
        "Each mode's throughput as a multiple of two-copy's at the same size (sender side, \
         mean over repeats; stream, {t1} connection(s)); above 1 the mode is faster."
    );
    if !doc.config.modes.contains(&Mode::TwoCopy) || doc.config.modes.len() < 2 {
        return Built {
            name,
            caption,
            figure: None,
            absent: Some("needs two-copy and at least one other mode in the run".into()),
        };
    }
    let gbps = |m: Mode, size: usize| {
        summary(doc, m, Pattern::Stream, size, t1)?
            .sender_gbps
            .as_ref()
            .map(|e| e.mean)
    };
    let chart = per_mode_over_sizes(
        doc,
        "Throughput relative to two-copy",
        "× two-copy",
        &|m, size| {
            let base = gbps(Mode::TwoCopy, size)?;
            (base > 0.0).then_some(gbps(m, size)? / base)
        },
    );
    Built {
        name,
        caption,
        figure: Some(Figure::Lines(chart)),
        absent: None,
    }
}

fn throughput_threads(doc: &BenchDocument, bars: &str) -> Built {
    let mut threads = doc.config.threads.clone();
    threads.sort();
    let panel = |size: usize| LineChart {
        title: format!("{} messages", size_label(size)),
        x_label: "connections (threads)".into(),
        y_label: "Gbit/s".into(),
        log_y: false,
        x_fmt: x_count,
        series: doc
            .config
            .modes
            .iter()
            .map(|&m| Series {
                label: m.as_str().into(),
                color: color(m),
                hollow: false,
                points: threads
                    .iter()
                    .filter_map(|&t| {
                        let e = summary(doc, m, Pattern::Stream, size, t)?
                            .sender_gbps
                            .as_ref()?;
                        Some(Pt {
                            x: t as f64,
                            y: e.mean,
                            band: bar(e),
                        })
                    })
                    .collect(),
            })
            .collect(),
    };
    let charts: Vec<LineChart> = sorted_sizes(doc).into_iter().map(panel).collect();
    Built {
        name: "fig2-throughput-vs-threads",
        caption: format!(
            "Throughput (mean over repeats) against connection count, per message size \
             (stream). {bars}"
        ),
        absent: (threads.len() < 2).then(|| "only one thread count was measured".to_string()),
        figure: (threads.len() >= 2).then_some(Figure::Panels { charts, cols: 2 }),
    }
}

fn rtt(doc: &BenchDocument, t1: usize, bars: &str) -> Built {
    let has_rr = doc.summary.iter().any(|s| s.pattern == Pattern::Rr);
    let mut series = Vec::new();
    for &m in &doc.config.modes {
        let p50 = |s: &CellSummary| est(&s.p50_ns);
        series.push(series_over_sizes(
            doc,
            m,
            Pattern::Rr,
            t1,
            format!("{} p50", m.as_str()),
            &p50,
            1e-3,
        ));
        let p99 = |s: &CellSummary| est(&s.p99_ns);
        let mut hollow = series_over_sizes(
            doc,
            m,
            Pattern::Rr,
            t1,
            format!("{} p99", m.as_str()),
            &p99,
            1e-3,
        );
        hollow.hollow = true;
        series.push(hollow);
    }
    Built {
        name: "fig3-rtt-vs-size",
        caption: format!(
            "Round-trip time of a 16-byte request answered by one message (p50 filled, p99 \
             hollow; mean over repeats), µs, log scale; request/response, {t1} connection(s). \
             {bars}"
        ),
        absent: (!has_rr).then(|| "no request/response runs in this result".to_string()),
        figure: has_rr.then(|| {
            Figure::Lines(LineChart {
                title: "Round-trip time vs message size".into(),
                x_label: "message size (8 fields)".into(),
                y_label: "µs".into(),
                log_y: true,
                x_fmt: x_bytes,
                series,
            })
        }),
    }
}

fn latency_cdf(doc: &BenchDocument, t1: usize, opts: &Options) -> Built {
    let lsize = opts
        .latency_size
        .or_else(|| sorted_sizes(doc).first().copied())
        .unwrap_or(0);
    let cdf: Vec<Series> = doc
        .config
        .modes
        .iter()
        .filter_map(|&m| {
            let r = doc.records.iter().find(|r| {
                !r.traced
                    && r.mode == m
                    && r.pattern == Pattern::Rr
                    && r.size == lsize
                    && r.threads == t1
            })?;
            let l = r.latency.as_ref()?;
            Some(Series {
                label: m.as_str().into(),
                color: color(m),
                hollow: false,
                points: l
                    .cdf
                    .iter()
                    .map(|&(ns, q)| Pt {
                        x: (ns as f64 / 1e3).max(1e-3),
                        y: q,
                        band: None,
                    })
                    .collect(),
            })
        })
        .collect();
    Built {
        name: "fig4-latency-cdf",
        caption: format!(
            "Distribution of round-trip times at {} ({t1} connection(s), first repeat), from \
             the HDR histogram.",
            size_label(lsize)
        ),
        absent: cdf
            .is_empty()
            .then(|| format!("no request/response runs at {}", size_label(lsize))),
        figure: (!cdf.is_empty()).then(|| {
            Figure::Lines(LineChart {
                title: format!("RTT distribution at {}", size_label(lsize)),
                x_label: "round-trip time".into(),
                y_label: "fraction of requests ≤ x".into(),
                log_y: false,
                x_fmt: x_micros,
                series: cdf,
            })
        }),
    }
}

/// Each byte sent in exactly one class, with the tier that saw each class.
fn where_bytes_went(doc: &BenchDocument, t1: usize) -> Built {
    let (groups, from_completions) = byte_class_groups(doc, t1, "");
    let tier_of = |path: &str| {
        doc.trace_plan
            .as_ref()
            .and_then(|p| p.iter().find(|d| d.path == path))
            .map(|d| d.tier)
    };
    let with_tier = |label: &str, path: &str| match tier_of(path) {
        Some(t) => format!("{label} ({})", t.as_str()),
        None => label.to_string(),
    };
    // Copied later vs real zero-copy: traced deferred copies, or the completion codes.
    let split = |label: &str| {
        if from_completions {
            format!("{label} (completion codes)")
        } else {
            with_tier(label, names::DEFERRED)
        }
    };
    Built {
        name: "fig5-where-bytes-went",
        caption: format!(
            "Where the bytes went (traced run, stream, {t1} connection(s)): every byte the run's \
             send calls accepted, counted once, in exactly one class — copied by the CPU at send \
             time; attached by reference and copied later by the kernel (deferred); attached and \
             never copied (real zero-copy); not visible with this kernel's tiers. Each bar sums \
             to 1. Tiers: {}.{}{}",
            tiers_line(doc),
            if from_completions {
                FROM_COMPLETIONS_NOTE
            } else {
                ""
            },
            overcount_note(doc, t1)
        ),
        absent: groups
            .is_empty()
            .then(|| "the bench ran without the tracer (--no-trace or not root)".to_string()),
        figure: (!groups.is_empty()).then(|| {
            Figure::Bars(StackedBars {
                title: "Where the bytes went".into(),
                y_label: "fraction of bytes sent".into(),
                components: vec![
                    with_tier("copied at send", names::COPY),
                    split("copied later"),
                    split("real zero-copy"),
                    "not visible".to_string(),
                ],
                groups,
                sections: Vec::new(),
            })
        }),
    }
}

fn time_per_path(doc: &BenchDocument, t1: usize) -> Built {
    let timed = [
        "syscalls (send)",
        "tcp_sendmsg",
        "page pinning",
        "deferred copy",
    ];
    let charts: Vec<LineChart> = timed
        .iter()
        .map(|&p| {
            per_mode_over_sizes(
                doc,
                &format!("{p}: time per message"),
                "µs per message",
                &|m, size| {
                    let r = traced(doc, m, size, t1)?;
                    let ps = r.trace.as_ref()?.breakdown.path(p)?;
                    let msgs = (r.send_bytes / size as u64).max(1);
                    let ns = ps.total_ns? as f64;
                    (ns > 0.0).then(|| ns / msgs as f64 / 1e3)
                },
            )
        })
        .filter(|c| c.series.iter().any(|s| !s.points.is_empty()))
        .collect();
    Built {
        name: "fig5b-time-per-path",
        caption: "Time spent in each traced kernel path per message sent (traced run; paths the \
                  kernel could not show are omitted; tcp_sendmsg is part of the send system \
                  call's time)."
            .into(),
        absent: charts
            .is_empty()
            .then(|| "no timed kernel path was traced".to_string()),
        figure: (!charts.is_empty()).then_some(Figure::Panels { charts, cols: 2 }),
    }
}

/// CPU seconds and context switches per GB: the panels of the CPU-cost figure.
pub(super) fn cpu_panels(doc: &BenchDocument, t1: usize, prefix: &str) -> Vec<LineChart> {
    let cpu: SummaryStat = |s| est(&s.cpu_s_per_gb);
    let cs: SummaryStat = |s| est(&s.context_switches_per_gb);
    vec![
        stat_vs_size(
            doc,
            format!("{prefix}CPU seconds per GB"),
            "CPU seconds per GB",
            t1,
            cpu,
        ),
        stat_vs_size(
            doc,
            format!("{prefix}context switches per GB"),
            "context switches per GB",
            t1,
            cs,
        ),
    ]
}

fn cpu_cost(doc: &BenchDocument, t1: usize, bars: &str) -> Built {
    Built {
        name: "fig6-cpu-cost",
        caption: format!(
            "CPU cost per GB sent (sender + receiver threads' CPU time, kernel included) and \
             context switches per GB (mean over repeats); stream, {t1} connection(s). {bars}"
        ),
        absent: None,
        figure: Some(Figure::Panels {
            charts: cpu_panels(doc, t1, ""),
            cols: 2,
        }),
    }
}

fn hardware(doc: &BenchDocument, t1: usize) -> Built {
    if !doc.hardware_counters.available {
        return Built {
            name: "fig7-hardware",
            caption: "Cycles per byte, IPC and cache misses.".into(),
            absent: Some(format!(
                "hardware counters were unavailable on the measured machine: {}",
                doc.hardware_counters
                    .reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            )),
            figure: None,
        };
    }
    let hw = |name: &str, f: fn(&Record) -> Option<f64>| {
        per_mode_over_sizes(doc, name, name, &|m, size| {
            let v: Vec<f64> = doc
                .records
                .iter()
                .filter(|r| {
                    !r.traced
                        && r.mode == m
                        && r.pattern == Pattern::Stream
                        && r.size == size
                        && r.threads == t1
                })
                .filter_map(f)
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        })
    };
    Built {
        name: "fig7-hardware",
        caption: "Cycles per byte, instructions per cycle and cache misses per GB (stream).".into(),
        absent: None,
        figure: Some(Figure::Panels {
            charts: vec![
                hw("cycles per byte", |r| r.derived.cycles_per_byte),
                hw("instructions per cycle", |r| r.derived.ipc),
                hw("LLC load misses per GB", |r| {
                    r.derived.llc_load_misses_per_gb
                }),
                hw("L1d load misses per GB", |r| {
                    r.derived.l1d_load_misses_per_gb
                }),
            ],
            cols: 2,
        }),
    }
}

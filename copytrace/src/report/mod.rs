//! `copytrace report`: a bench result file turned into figures, a self-contained HTML page and
//! the original study's analysis questions answered from the data.
pub mod analysis;
pub mod classes;
pub mod figures;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use crate::{
    bench::{
        Mode, Pattern,
        results::{BenchDocument, CellSummary, Record, SCHEMA, SCHEMA_VERSION},
        size_label,
        stats::Estimate,
    },
    trace::planner::names,
};
use analysis::{Analysis, analyze, summary};
use classes::{ByteClasses, DeferredSource};
use figures::{Figure, LineChart, Pt, Series, StackedBars};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a copytrace bench result: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("{path}: field `schema` is {found:?}, expected \"{SCHEMA}\" (is this a bench result?)")]
    Schema { path: PathBuf, found: String },
    #[error(
        "{path}: field `schema_version` is {found}; this copytrace reads version {SCHEMA_VERSION} (re-run the bench with this version)"
    )]
    Version { path: PathBuf, found: u64 },
    #[error("{path}: field `records` is empty: nothing to report")]
    Empty { path: PathBuf },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rendering figure {figure}: {msg}")]
    Figure { figure: String, msg: String },
}

/// Load and validate a bench result: schema name and version are checked before the body, so
/// an old or foreign file gets a sentence about that, not a parse error deep inside.
pub fn load(path: &Path) -> Result<BenchDocument, ReportError> {
    let text = std::fs::read(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| ReportError::Parse {
        path: path.to_path_buf(),
        msg: format!("invalid JSON: {e}"),
    })?;
    match v.get("schema").and_then(|s| s.as_str()) {
        Some(SCHEMA) => {}
        other => {
            return Err(ReportError::Schema {
                path: path.to_path_buf(),
                found: other.map_or_else(|| "missing".into(), str::to_string),
            });
        }
    }
    match v.get("schema_version").and_then(|s| s.as_u64()) {
        Some(n) if n == u64::from(SCHEMA_VERSION) => {}
        Some(n) => {
            return Err(ReportError::Version {
                path: path.to_path_buf(),
                found: n,
            });
        }
        None => {
            return Err(ReportError::Parse {
                path: path.to_path_buf(),
                msg: "field `schema_version` is missing or not a number".into(),
            });
        }
    }
    let doc: BenchDocument = serde_json::from_value(v).map_err(|e| ReportError::Parse {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    if doc.records.is_empty() {
        return Err(ReportError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(doc)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Html,
    Md,
}

pub struct Options {
    pub format: Format,
    /// Message size for the latency distribution figure (default: the smallest measured).
    pub latency_size: Option<usize>,
}

/// What was written.
pub struct Output {
    pub main: PathBuf,
    pub figures: Vec<PathBuf>,
    pub analysis: Analysis,
}

fn x_bytes(v: f64) -> String {
    let n = v.round() as usize;
    if n.is_power_of_two() {
        size_label(n)
    } else {
        figures::short_number(v)
    }
}

fn x_count(v: f64) -> String {
    format!("{}", v.round())
}

fn x_micros(v: f64) -> String {
    format!("{} µs", figures::short_number(v))
}

fn color(m: Mode) -> usize {
    match m {
        Mode::TwoCopy => 0,
        Mode::OneCopy => 1,
        Mode::ZeroCopy => 2,
    }
}

fn sorted_sizes(doc: &BenchDocument) -> Vec<usize> {
    let mut s = doc.config.sizes.clone();
    s.sort();
    s.dedup();
    s
}

fn min_threads(doc: &BenchDocument) -> usize {
    doc.config.threads.iter().copied().min().unwrap_or(1)
}

/// A series over sizes of one summary statistic.
fn series_over_sizes(
    doc: &BenchDocument,
    mode: Mode,
    pattern: Pattern,
    threads: usize,
    label: String,
    stat: &dyn Fn(&CellSummary) -> MeanCi,
    scale: f64,
) -> Series {
    let points = sorted_sizes(doc)
        .into_iter()
        .filter_map(|size| {
            let s = summary(doc, mode, pattern, size, threads)?;
            let (y, ci) = stat(s)?;
            Some(Pt {
                x: size as f64,
                y: y * scale,
                band: ci.map(|(lo, hi)| (lo * scale, hi * scale)),
            })
        })
        .collect();
    Series {
        label,
        color: color(mode),
        points,
        hollow: false,
    }
}

/// Mean and error bar (low, high) of a statistic, when measured.
type MeanCi = Option<(f64, Option<(f64, f64)>)>;
/// One summary statistic.
type SummaryStat = fn(&CellSummary) -> MeanCi;

/// Fewer repeats than this draw min–max instead of a 95 % CI: with 2 samples Student's t is
/// 12.7, and the interval says nothing about the mean (it reached 146 Gbit/s on a 30 Gbit/s
/// curve).
const MIN_CI_REPEATS: usize = 3;

/// The error bar of an estimate: its 95 % CI from `MIN_CI_REPEATS` repeats on, min–max below.
fn bar(e: &Estimate) -> Option<(f64, f64)> {
    if e.n >= MIN_CI_REPEATS {
        e.ci95.map(|c| (e.mean - c, e.mean + c))
    } else {
        (e.n >= 2).then_some((e.min, e.max))
    }
}

fn est(e: &Option<Estimate>) -> MeanCi {
    e.as_ref().map(|e| (e.mean, bar(e)))
}

/// What the error bars of `doc`'s figures are, for the captions.
fn bars_caption(doc: &BenchDocument) -> String {
    let ns: Vec<usize> = doc
        .summary
        .iter()
        .filter_map(|s| s.sender_gbps.as_ref().map(|e| e.n))
        .collect();
    let (lo, hi) = (
        ns.iter().copied().min().unwrap_or(0),
        ns.iter().copied().max().unwrap_or(0),
    );
    let ci = "95 % confidence interval of the mean (Student's t) over the repeats";
    let mm = "min–max of the repeats (fewer than 3: too few for a confidence interval)";
    if lo >= MIN_CI_REPEATS {
        format!(
            "Error bars: {ci} (n = {lo}{}).",
            if hi > lo {
                format!("–{hi}")
            } else {
                String::new()
            }
        )
    } else if hi >= MIN_CI_REPEATS {
        format!("Error bars: {ci} where a cell has at least 3 repeats, else {mm}.")
    } else if hi == 2 {
        format!("Error bars: {mm}.")
    } else {
        "No error bars: one repeat per cell.".to_string()
    }
}

/// The first traced record of a cell (it carries the tracer's breakdown).
fn traced(doc: &BenchDocument, mode: Mode, size: usize, threads: usize) -> Option<&Record> {
    doc.records.iter().find(|r| {
        r.traced
            && r.trace.is_some()
            && r.mode == mode
            && r.pattern == Pattern::Stream
            && r.size == size
            && r.threads == threads
    })
}

/// One series per mode over the measured sizes, log y (no error bars).
fn per_mode_over_sizes(
    doc: &BenchDocument,
    title: &str,
    y_label: &str,
    value: &dyn Fn(Mode, usize) -> Option<f64>,
) -> LineChart {
    LineChart {
        title: title.to_string(),
        x_label: "message size".into(),
        y_label: y_label.to_string(),
        log_y: true,
        x_fmt: x_bytes,
        series: doc
            .config
            .modes
            .iter()
            .map(|&m| Series {
                label: m.as_str().into(),
                color: color(m),
                hollow: false,
                points: sorted_sizes(doc)
                    .into_iter()
                    .filter_map(|size| {
                        Some(Pt {
                            x: size as f64,
                            y: value(m, size)?,
                            band: None,
                        })
                    })
                    .collect(),
            })
            .collect(),
    }
}

struct Built {
    name: &'static str,
    caption: String,
    figure: Option<Figure>,
    /// Why the figure is absent (instead of an empty plot).
    absent: Option<String>,
}

fn build_figures(doc: &BenchDocument, opts: &Options) -> Vec<Built> {
    let t1 = min_threads(doc);
    let modes = doc.config.modes.clone();
    let bars = bars_caption(doc);
    let mut out = Vec::new();

    // 1. Throughput vs size.
    out.push(Built {
        name: "fig1-throughput-vs-size",
        caption: format!(
            "Throughput (sender side, decimal Gbit/s, mean over repeats) against total message \
             size; stream, {t1} connection(s). {bars}"
        ),
        figure: Some(Figure::Lines(LineChart {
            title: "Throughput vs message size".into(),
            x_label: "message size, bytes (8 fields)".into(),
            y_label: "Gbit/s".into(),
            log_y: false,
            x_fmt: x_bytes,
            series: modes
                .iter()
                .map(|&m| {
                    series_over_sizes(
                        doc,
                        m,
                        Pattern::Stream,
                        t1,
                        m.as_str().into(),
                        &|s| est(&s.sender_gbps),
                        1.0,
                    )
                })
                .collect(),
        })),
        absent: None,
    });

    // 2. Throughput vs threads, one panel per size.
    let mut threads = doc.config.threads.clone();
    threads.sort();
    let panels: Vec<LineChart> = sorted_sizes(doc)
        .into_iter()
        .map(|size| LineChart {
            title: format!("{} messages", size_label(size)),
            x_label: "connections (threads)".into(),
            y_label: "Gbit/s".into(),
            log_y: false,
            x_fmt: x_count,
            series: modes
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
        })
        .collect();
    out.push(Built {
        name: "fig2-throughput-vs-threads",
        caption: format!(
            "Throughput (mean over repeats) against connection count, per message size \
             (stream). {bars}"
        ),
        absent: (threads.len() < 2).then(|| "only one thread count was measured".to_string()),
        figure: (threads.len() >= 2).then_some(Figure::Panels {
            charts: panels,
            cols: 2,
        }),
    });

    // 3. RTT p50/p99 vs size.
    let has_rr = doc.summary.iter().any(|s| s.pattern == Pattern::Rr);
    let mut rtt = Vec::new();
    for &m in &modes {
        rtt.push(series_over_sizes(
            doc,
            m,
            Pattern::Rr,
            t1,
            format!("{} p50", m.as_str()),
            &|s| est(&s.p50_ns),
            1e-3,
        ));
        let mut p99 = series_over_sizes(
            doc,
            m,
            Pattern::Rr,
            t1,
            format!("{} p99", m.as_str()),
            &|s| est(&s.p99_ns),
            1e-3,
        );
        p99.hollow = true;
        rtt.push(p99);
    }
    out.push(Built {
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
                series: rtt,
            })
        }),
    });

    // 4. Latency CDF at one size.
    let lsize = opts
        .latency_size
        .or_else(|| sorted_sizes(doc).first().copied())
        .unwrap_or(0);
    let cdf: Vec<Series> = modes
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
    out.push(Built {
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
    });

    // 5. Where the bytes went (tracer): each byte sent in exactly one class.
    let mut groups = Vec::new();
    let mut from_completions = false;
    for &m in &modes {
        for size in sorted_sizes(doc) {
            let Some(c) = traced(doc, m, size, t1).and_then(ByteClasses::of) else {
                continue;
            };
            from_completions |= c.deferred_source == DeferredSource::CompletionCodes;
            groups.push((
                format!("{} {}", m.as_str(), size_label(size)),
                c.fractions().to_vec(),
            ));
        }
    }
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
    let tiers = [names::COPY, names::ZEROCOPY, names::DEFERRED]
        .iter()
        .filter_map(|p| Some(format!("{p}: {}", tier_of(p)?.as_str())))
        .collect::<Vec<_>>()
        .join(", ");
    out.push(Built {
        name: "fig5-where-bytes-went",
        caption: format!(
            "Where the bytes went (traced run, stream, {t1} connection(s)): every byte the run's \
             send calls accepted, counted once, in exactly one class — copied by the CPU at send \
             time; attached by reference and copied later by the kernel (deferred); attached and \
             never copied (real zero-copy); not visible with this kernel's tiers. Each bar sums \
             to 1. Tiers: {tiers}.{}",
            if from_completions {
                " The deferred-copy path cannot be traced on this kernel: the split between \
                 copied later and real zero-copy comes from the completions' ee_code \
                 (SO_EE_CODE_ZEROCOPY_COPIED), which cannot tell a copy at send time (route \
                 without scatter-gather) from a deferred one; with the attach path derived \
                 from MSG_ZEROCOPY requests, such a byte is shown as copied later."
            } else {
                ""
            }
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
            })
        }),
    });

    // 5b. Time per kernel path, per message.
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
    out.push(Built {
        name: "fig5b-time-per-path",
        caption: "Time spent in each traced kernel path per message sent (traced run; paths the \
                  kernel could not show are omitted; tcp_sendmsg is part of the send system \
                  call's time)."
            .into(),
        absent: charts
            .is_empty()
            .then(|| "no timed kernel path was traced".to_string()),
        figure: (!charts.is_empty()).then_some(Figure::Panels { charts, cols: 2 }),
    });

    // 6. CPU cost.
    let cpu = |name: &str, stat: SummaryStat| LineChart {
        title: name.to_string(),
        x_label: "message size".into(),
        y_label: name.to_string(),
        log_y: true,
        x_fmt: x_bytes,
        series: modes
            .iter()
            .map(|&m| series_over_sizes(doc, m, Pattern::Stream, t1, m.as_str().into(), &stat, 1.0))
            .collect(),
    };
    out.push(Built {
        name: "fig6-cpu-cost",
        caption: format!(
            "CPU cost per GB sent (sender + receiver threads' CPU time, kernel included) and \
             context switches per GB (mean over repeats); stream, {t1} connection(s). {bars}"
        ),
        absent: None,
        figure: Some(Figure::Panels {
            charts: vec![
                cpu("CPU seconds per GB", |s| est(&s.cpu_s_per_gb)),
                cpu("context switches per GB", |s| {
                    est(&s.context_switches_per_gb)
                }),
            ],
            cols: 2,
        }),
    });

    // 7. Hardware counters.
    if doc.hardware_counters.available {
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
        out.push(Built {
            name: "fig7-hardware",
            caption: "Cycles per byte, instructions per cycle and cache misses per GB (stream)."
                .into(),
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
        });
    } else {
        out.push(Built {
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
        });
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn meta_rows(doc: &BenchDocument) -> Vec<(&'static str, String)> {
    vec![
        ("kernel", doc.host.kernel.clone()),
        ("CPU", format!("{} × {}", doc.host.cpus, doc.host.cpu_model)),
        (
            "memory",
            format!(
                "{:.1} GiB",
                doc.host.memory_bytes as f64 / (1u64 << 30) as f64
            ),
        ),
        ("topology", doc.config.topology.clone()),
        ("copytrace", doc.copytrace_version.clone()),
        ("started", doc.started_at.clone()),
        (
            "sweep",
            format!(
                "modes {}; sizes {}; threads {:?}; {} s measured after {} s warm-up; {} repeats{}",
                doc.config
                    .modes
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                sorted_sizes(doc)
                    .iter()
                    .map(|&s| size_label(s))
                    .collect::<Vec<_>>()
                    .join(", "),
                doc.config.threads,
                doc.config.duration_s,
                doc.config.warmup_s,
                doc.config.repeat,
                if doc.complete {
                    ""
                } else {
                    " (INCOMPLETE: interrupted)"
                }
            ),
        ),
        ("message size", doc.config.size_meaning.clone()),
    ]
}

fn html(doc: &BenchDocument, figs: &[(Built, Option<String>)], a: &Analysis) -> String {
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>copytrace report — {}</title><style>\
         body{{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.45}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:90%}}\
         figure{{margin:2em 0}}figcaption{{font-size:90%;color:#444}}.absent{{background:#fff4e5;border:1px solid #f0c36d;padding:1em}}\
         svg{{max-width:100%;height:auto}}h2{{border-bottom:1px solid #ddd}}</style></head><body>",
        esc(&doc.host.kernel)
    );
    let _ = writeln!(
        h,
        "<h1>copytrace report</h1><p>Where the bytes were copied on their way to the network, \
         and what it cost: two-copy, one-copy and zero-copy TCP senders measured on {}.</p>",
        esc(&doc.host.hostname)
    );
    h.push_str("<h2>Run</h2><table>");
    for (k, v) in meta_rows(doc) {
        let _ = write!(h, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    }
    h.push_str("</table>\n");
    if let Some(plan) = &doc.trace_plan {
        h.push_str("<h3>Kernel paths and attach tiers</h3><table><tr><th>path</th><th>tier</th><th>via</th><th>note</th></tr>");
        for d in plan {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&d.path),
                d.tier.as_str(),
                esc(d.target.as_deref().unwrap_or("-")),
                esc(d.note.as_deref().unwrap_or(""))
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str(
        "<h3>Kernel features</h3><table><tr><th>feature</th><th>available</th><th>detail</th></tr>",
    );
    for f in &doc.features {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&f.name),
            f.status.as_str(),
            esc(&f.detail)
        );
    }
    h.push_str("</table>\n<h2>Analysis</h2>\n");
    for ans in &a.answers {
        let _ = writeln!(
            h,
            "<h3>{}</h3><p>{}</p>",
            esc(&ans.question),
            esc(&ans.answer)
        );
    }
    h.push_str("<h2>Figures</h2>\n");
    for (b, svg) in figs {
        match (svg, &b.absent) {
            (Some(svg), _) => {
                let _ = writeln!(
                    h,
                    "<figure id=\"{}\">{}<figcaption><b>{}.</b> {} (<a href=\"{}.png\">PNG</a>, \
                     <a href=\"{}.svg\">SVG</a>)</figcaption></figure>",
                    b.name,
                    svg,
                    b.name,
                    esc(&b.caption),
                    b.name,
                    b.name
                );
            }
            (None, Some(why)) => {
                let _ = writeln!(
                    h,
                    "<figure id=\"{}\"><div class=\"absent\"><b>{}: not shown.</b> {} — {}</div></figure>",
                    b.name,
                    b.name,
                    esc(&b.caption),
                    esc(why)
                );
            }
            (None, None) => {}
        }
    }
    h.push_str("<h2>Summary table</h2>");
    h.push_str("<table><tr><th>mode</th><th>pattern</th><th>size</th><th>threads</th><th>Gbit/s (±95 %)</th><th>p50 µs</th><th>p99 µs</th><th>CPU s/GB</th><th>copied later</th><th>tracer cost</th><th>integrity</th></tr>");
    for s in &doc.summary {
        let e = |e: &Option<crate::bench::stats::Estimate>, k: f64| {
            e.as_ref().map_or("-".into(), |e| match e.ci95 {
                Some(c) => format!("{:.3} ± {:.3}", e.mean * k, c * k),
                None => format!("{:.3}", e.mean * k),
            })
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.mode.as_str(),
            s.pattern.as_str(),
            size_label(s.size),
            s.threads,
            e(&s.sender_gbps, 1.0),
            e(&s.p50_ns, 1e-3),
            e(&s.p99_ns, 1e-3),
            e(&s.cpu_s_per_gb, 1.0),
            s.copied_fraction
                .as_ref()
                .map_or("-".into(), |c| format!("{:.0} %", c.mean * 100.0)),
            s.trace_overhead
                .map_or("-".into(), |o| format!("{:.0} %", o * 100.0)),
            if s.integrity_ok { "ok" } else { "CORRUPT" }
        );
    }
    h.push_str("</table>\n<h2>Notes</h2><ul>");
    for n in &doc.notes {
        let _ = write!(h, "<li>{}</li>", esc(n));
    }
    h.push_str("</ul></body></html>\n");
    h
}

fn markdown(doc: &BenchDocument, figs: &[(Built, Option<String>)], a: &Analysis) -> String {
    let mut m = String::from("# copytrace report\n\n| | |\n|---|---|\n");
    for (k, v) in meta_rows(doc) {
        let _ = writeln!(m, "| {k} | {} |", v.replace('|', "\\|"));
    }
    m.push_str("\n## Analysis\n\n");
    for ans in &a.answers {
        let _ = writeln!(m, "### {}\n\n{}\n", ans.question, ans.answer);
    }
    m.push_str("## Figures\n\n");
    for (b, svg) in figs {
        if svg.is_some() {
            let _ = writeln!(m, "![{}]({}.png)\n\n*{}*\n", b.name, b.name, b.caption);
        } else if let Some(why) = &b.absent {
            let _ = writeln!(m, "*{}: not shown — {why}.*\n", b.name);
        }
    }
    m
}

/// Render every figure and the page (or Markdown) into `out`.
pub fn generate(doc: &BenchDocument, out: &Path, opts: &Options) -> Result<Output, ReportError> {
    std::fs::create_dir_all(out).map_err(|source| ReportError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let analysis = analyze(doc);
    let mut figs = Vec::new();
    let mut files = Vec::new();
    for b in build_figures(doc, opts) {
        let svg = match &b.figure {
            Some(f) => {
                let stem = out.join(b.name);
                let svg = figures::render(&stem, f).map_err(|msg| ReportError::Figure {
                    figure: b.name.to_string(),
                    msg,
                })?;
                files.push(stem.with_extension("svg"));
                files.push(stem.with_extension("png"));
                Some(svg)
            }
            None => None,
        };
        figs.push((b, svg));
    }
    let (name, text) = match opts.format {
        Format::Html => ("index.html", html(doc, &figs, &analysis)),
        Format::Md => ("analysis.md", markdown(doc, &figs, &analysis)),
    };
    let main = out.join(name);
    crate::bench::results::write_atomic(&main, text.as_bytes()).map_err(|source| {
        ReportError::Write {
            path: main.clone(),
            source,
        }
    })?;
    Ok(Output {
        main,
        figures: files,
        analysis,
    })
}

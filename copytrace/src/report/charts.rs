//! Chart building blocks shared by the single-run report and the side-by-side comparison:
//! axis formats, one colour per mode, series over sizes with honest error bars, and the
//! where-the-bytes-went classes of a run.
use super::{
    analysis::summary,
    classes::{ByteClasses, DeferredSource},
    figures::{self, LineChart, Pt, Series},
};
use crate::{
    bench::{
        Mode, Pattern,
        results::{BenchDocument, CellSummary, Record},
        size_label,
        stats::Estimate,
    },
    trace::planner::names,
};

pub(super) fn x_bytes(v: f64) -> String {
    let n = v.round() as usize;
    if n.is_power_of_two() {
        size_label(n)
    } else {
        figures::short_number(v)
    }
}

pub(super) fn x_count(v: f64) -> String {
    format!("{}", v.round())
}

pub(super) fn x_micros(v: f64) -> String {
    format!("{} µs", figures::short_number(v))
}

pub(super) fn color(m: Mode) -> usize {
    match m {
        Mode::TwoCopy => 0,
        Mode::OneCopy => 1,
        Mode::ZeroCopy => 2,
        Mode::Sendfile => 3,
        Mode::UringSend => 4,
        Mode::UringSendZc => 5,
    }
}

pub(super) fn sorted_sizes(doc: &BenchDocument) -> Vec<usize> {
    let mut s = doc.config.sizes.clone();
    s.sort();
    s.dedup();
    s
}

pub(super) fn min_threads(doc: &BenchDocument) -> usize {
    doc.config.threads.iter().copied().min().unwrap_or(1)
}

/// A series over sizes of one summary statistic.
pub(super) fn series_over_sizes(
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
pub(super) type MeanCi = Option<(f64, Option<(f64, f64)>)>;
/// One summary statistic.
pub(super) type SummaryStat = fn(&CellSummary) -> MeanCi;

/// Fewer repeats than this draw min–max instead of a 95 % CI: with 2 samples Student's t is
/// 12.7, and the interval says nothing about the mean (it reached 146 Gbit/s on a 30 Gbit/s
/// curve).
pub(super) const MIN_CI_REPEATS: usize = 3;

/// The error bar of an estimate: its 95 % CI from `MIN_CI_REPEATS` repeats on, min–max below.
pub(super) fn bar(e: &Estimate) -> Option<(f64, f64)> {
    if e.n >= MIN_CI_REPEATS {
        e.ci95.map(|c| (e.mean - c, e.mean + c))
    } else {
        (e.n >= 2).then_some((e.min, e.max))
    }
}

pub(super) fn est(e: &Option<Estimate>) -> MeanCi {
    e.as_ref().map(|e| (e.mean, bar(e)))
}

/// What the error bars of `doc`'s figures are, for the captions.
pub(super) fn bars_caption(doc: &BenchDocument) -> String {
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
pub(super) fn traced(
    doc: &BenchDocument,
    mode: Mode,
    size: usize,
    threads: usize,
) -> Option<&Record> {
    doc.records.iter().find(|r| {
        r.traced
            && r.trace.is_some()
            && r.mode == mode
            && r.pattern == Pattern::Stream
            && r.size == size
            && r.threads == threads
    })
}

/// A chart over message sizes with one series per mode of `doc`.
fn per_mode(
    doc: &BenchDocument,
    title: String,
    (x_label, y_label): (&str, &str),
    log_y: bool,
    series: &dyn Fn(Mode) -> Series,
) -> LineChart {
    LineChart {
        title,
        x_label: x_label.into(),
        y_label: y_label.into(),
        log_y,
        x_fmt: x_bytes,
        series: doc.config.modes.iter().map(|&m| series(m)).collect(),
    }
}

/// One series per mode over the measured sizes, log y (no error bars).
pub(super) fn per_mode_over_sizes(
    doc: &BenchDocument,
    title: &str,
    y_label: &str,
    value: &dyn Fn(Mode, usize) -> Option<f64>,
) -> LineChart {
    let series = |m: Mode| Series {
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
    };
    per_mode(doc, title.into(), ("message size", y_label), true, &series)
}

/// Sender throughput against message size, one series per mode (stream, `threads`).
pub(super) fn throughput_vs_size(doc: &BenchDocument, title: String, threads: usize) -> LineChart {
    let labels = ("message size, bytes (8 fields)", "Gbit/s");
    stat_chart(doc, title, labels, false, threads, |s| est(&s.sender_gbps))
}

/// One summary statistic against message size, one series per mode, log y (stream, `threads`).
pub(super) fn stat_vs_size(
    doc: &BenchDocument,
    title: String,
    y_label: &str,
    threads: usize,
    stat: SummaryStat,
) -> LineChart {
    stat_chart(doc, title, ("message size", y_label), true, threads, stat)
}

/// A summary statistic over sizes per mode, with its error bars (stream, `threads`).
fn stat_chart(
    doc: &BenchDocument,
    title: String,
    labels: (&str, &str),
    log_y: bool,
    threads: usize,
    stat: SummaryStat,
) -> LineChart {
    let series = |m: Mode| {
        let label = m.as_str().into();
        series_over_sizes(doc, m, Pattern::Stream, threads, label, &stat, 1.0)
    };
    per_mode(doc, title, labels, log_y, &series)
}

/// The where-the-bytes-went bars of a run's traced stream cells (`prefix` starts each label),
/// and whether any split between copied later and real zero-copy came from completion codes.
pub(super) fn byte_class_groups(
    doc: &BenchDocument,
    threads: usize,
    prefix: &str,
) -> (Vec<(String, Vec<f64>)>, bool) {
    let mut groups = Vec::new();
    let mut from_completions = false;
    for &m in &doc.config.modes {
        for size in sorted_sizes(doc) {
            let Some(c) = traced(doc, m, size, threads).and_then(ByteClasses::of) else {
                continue;
            };
            from_completions |= c.deferred_source == DeferredSource::CompletionCodes;
            groups.push((
                format!("{prefix}{} {}", m.as_str(), size_label(size)),
                c.fractions().to_vec(),
            ));
        }
    }
    (groups, from_completions)
}

/// What the completion-code split of the where-the-bytes-went figure means, for captions.
pub(super) const FROM_COMPLETIONS_NOTE: &str = " The deferred-copy path cannot be traced on \
    this kernel: the split between copied later and real zero-copy comes from the completions' \
    ee_code (SO_EE_CODE_ZEROCOPY_COPIED), which cannot tell a copy at send time (route without \
    scatter-gather) from a deferred one; with the attach path derived from MSG_ZEROCOPY \
    requests, such a byte is shown as copied later.";

/// The tier of each byte-class path in a run's plan, e.g. "user→kernel copy: fentry, …".
pub(super) fn tiers_line(doc: &BenchDocument) -> String {
    [names::COPY, names::ZEROCOPY, names::DEFERRED]
        .iter()
        .filter_map(|&p| {
            let d = doc.trace_plan.as_ref()?.iter().find(|d| d.path == p)?;
            Some(format!("{p}: {}", d.tier.as_str()))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A caption sentence for traced runs whose paths claimed more bytes than were sent (empty
/// when none did): with deferred copies traced, a segment TCP retransmitted is copied again.
pub(super) fn overcount_note(doc: &BenchDocument, threads: usize) -> String {
    let (mut over, mut retrans, mut cells) = (0, 0, 0);
    for &m in &doc.config.modes {
        for size in sorted_sizes(doc) {
            let Some(r) = traced(doc, m, size, threads) else {
                continue;
            };
            let Some(c) = ByteClasses::of(r).filter(|c| c.overcounted > 0) else {
                continue;
            };
            over += c.overcounted;
            retrans += r.retransmitted_bytes.unwrap_or(0);
            cells += 1;
        }
    }
    if cells == 0 {
        return String::new();
    }
    format!(
        " In {cells} cell(s) the traced paths claimed {over} bytes more than were sent; TCP \
         retransmitted {retrans} bytes there, and a retransmitted zero-copy segment is copied \
         once more. Each byte is still shown once."
    )
}

//! The original study's analysis questions, answered from the data of one `bench` run.
//!
//! Every statement here is computed: crossovers by interpolation (on log2 of the size) between
//! the measured sizes, with the spread across repeats as confidence; "real or deferred"
//! zero-copy from the kernel's own completion codes; per-byte CPU cost against thread count;
//! and the cell that deviates most from the trend of its neighbours.
use serde::Serialize;

use crate::bench::{
    Mode, Pattern,
    results::{BenchDocument, CellSummary, Record},
    size_label,
};

/// Where `a` overtakes `b` as the message size grows (stream, one connection).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Crossover {
    pub faster: Mode,
    pub baseline: Mode,
    /// Interpolated size in bytes where the means cross (first crossing from below).
    pub size: Option<f64>,
    /// The measured sizes the crossing lies between.
    pub between: Option<(usize, usize)>,
    /// Crossing sizes of each repeat pair (repeat i of both modes), for confidence.
    pub per_repeat: Vec<Option<f64>>,
    /// Sentence for the report.
    pub verdict: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ZeroCopyVerdict {
    /// Fraction of completed zero-copy bytes the kernel copied anyway (mean over cells).
    pub copied_fraction: Option<f64>,
    pub verdict: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ThreadScaling {
    pub mode: Mode,
    pub size: usize,
    /// (threads, CPU s/GB)
    pub points: Vec<(usize, f64)>,
    pub change: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Surprise {
    pub mode: Mode,
    pub pattern: Pattern,
    pub size: usize,
    pub threads: usize,
    pub measured_gbps: f64,
    pub expected_gbps: f64,
    pub verdict: String,
}

/// One of the six questions and its data-derived answer.
#[derive(Clone, Debug, Serialize)]
pub struct Answer {
    pub question: String,
    pub answer: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Analysis {
    pub one_copy_vs_two_copy: Crossover,
    pub zero_copy_vs_two_copy: Crossover,
    pub zero_copy: ZeroCopyVerdict,
    pub thread_scaling: Vec<ThreadScaling>,
    pub surprise: Option<Surprise>,
    pub answers: Vec<Answer>,
}

/// Untraced records of one cell, by repeat.
fn runs(
    doc: &BenchDocument,
    mode: Mode,
    pattern: Pattern,
    size: usize,
    threads: usize,
) -> Vec<&Record> {
    let mut v: Vec<&Record> = doc
        .records
        .iter()
        .filter(|r| {
            !r.traced
                && r.mode == mode
                && r.pattern == pattern
                && r.size == size
                && r.threads == threads
        })
        .collect();
    v.sort_by_key(|r| r.repeat);
    v
}

pub fn summary(
    doc: &BenchDocument,
    mode: Mode,
    pattern: Pattern,
    size: usize,
    threads: usize,
) -> Option<&CellSummary> {
    doc.summary
        .iter()
        .find(|s| s.mode == mode && s.pattern == pattern && s.size == size && s.threads == threads)
}

/// The first size where `diff` (ascending sizes) goes from negative to non-negative,
/// interpolated linearly in log2(size). `None` if it never does.
pub fn crossing(points: &[(usize, f64)]) -> Option<(f64, (usize, usize))> {
    for w in points.windows(2) {
        let ((s1, d1), (s2, d2)) = (w[0], w[1]);
        if d1 < 0.0 && d2 >= 0.0 {
            let (x1, x2) = ((s1 as f64).log2(), (s2 as f64).log2());
            let x = x1 + (x2 - x1) * (-d1) / (d2 - d1);
            return Some((x.exp2(), (s1, s2)));
        }
    }
    None
}

/// Sizes measured for stream/1 thread in both modes, ascending.
fn common_sizes(doc: &BenchDocument, a: Mode, b: Mode) -> Vec<usize> {
    let mut sizes: Vec<usize> = doc
        .summary
        .iter()
        .filter(|s| s.pattern == Pattern::Stream && s.threads == 1 && s.mode == a)
        .map(|s| s.size)
        .filter(|&size| summary(doc, b, Pattern::Stream, size, 1).is_some())
        .collect();
    sizes.sort();
    sizes.dedup();
    sizes
}

pub fn crossover(doc: &BenchDocument, faster: Mode, baseline: Mode) -> Crossover {
    let sizes = common_sizes(doc, faster, baseline);
    let mean = |m: Mode, size: usize| {
        summary(doc, m, Pattern::Stream, size, 1)
            .and_then(|s| s.sender_gbps.as_ref())
            .map(|e| e.mean)
    };
    let diffs: Vec<(usize, f64)> = sizes
        .iter()
        .filter_map(|&s| Some((s, mean(faster, s)? - mean(baseline, s)?)))
        .collect();
    let found = crossing(&diffs);
    let repeats = sizes
        .iter()
        .map(|&s| runs(doc, faster, Pattern::Stream, s, 1).len())
        .min()
        .unwrap_or(0);
    let per_repeat: Vec<Option<f64>> = (0..repeats)
        .map(|i| {
            let d: Vec<(usize, f64)> = sizes
                .iter()
                .filter_map(|&s| {
                    let a = runs(doc, faster, Pattern::Stream, s, 1).get(i)?.sender.gbps;
                    let b = runs(doc, baseline, Pattern::Stream, s, 1)
                        .get(i)?
                        .sender
                        .gbps;
                    Some((s, a - b))
                })
                .collect();
            crossing(&d).map(|(x, _)| x)
        })
        .collect();
    let (f, b) = (faster.as_str(), baseline.as_str());
    let verdict = match (&found, diffs.first(), diffs.last()) {
        (_, None, _) | (_, _, None) => {
            format!("no stream runs with one connection for {f} and {b}")
        }
        (Some((size, (lo, hi))), _, _) => {
            let spread: Vec<f64> = per_repeat.iter().flatten().copied().collect();
            let conf = if spread.is_empty() {
                String::new()
            } else if per_repeat.len() == 1 {
                "; one repeat, so no spread across repeats to show".to_string()
            } else {
                let (mn, mx) = spread
                    .iter()
                    .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
                format!(
                    "; repeats place it between {} and {} ({} of {} repeats cross)",
                    bytes_label(mn),
                    bytes_label(mx),
                    spread.len(),
                    per_repeat.len()
                )
            };
            format!(
                "{f} overtakes {b} at about {} (interpolated between the measured {} and {}){conf}",
                bytes_label(*size),
                size_label(*lo),
                size_label(*hi)
            )
        }
        (None, Some(first), Some(last)) => {
            if first.1 >= 0.0 && last.1 >= 0.0 && diffs.iter().all(|d| d.1 >= 0.0) {
                format!(
                    "no crossover in range: {f} is at least as fast as {b} at every measured \
                     size ({} to {})",
                    size_label(first.0),
                    size_label(last.0)
                )
            } else if diffs.iter().all(|d| d.1 < 0.0) {
                format!(
                    "no crossover in range: {f} is slower than {b} at every measured size ({} \
                     to {})",
                    size_label(first.0),
                    size_label(last.0)
                )
            } else {
                format!(
                    "no crossover in range: {f} leads {b} at small sizes and falls behind at \
                     large ones"
                )
            }
        }
    };
    Crossover {
        faster,
        baseline,
        size: found.map(|f| f.0),
        between: found.map(|f| f.1),
        per_repeat,
        verdict,
    }
}

/// A byte count with a binary unit and 3 significant digits.
pub fn bytes_label(b: f64) -> String {
    if b >= (1 << 20) as f64 {
        format!("{:.3} MiB", b / (1 << 20) as f64)
    } else if b >= 1024.0 {
        format!("{:.3} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

fn zero_copy(doc: &BenchDocument) -> ZeroCopyVerdict {
    let fr: Vec<f64> = doc
        .summary
        .iter()
        .filter(|s| s.mode == Mode::ZeroCopy)
        .filter_map(|s| s.copied_fraction.as_ref().map(|e| e.mean))
        .collect();
    let copied = (!fr.is_empty()).then(|| fr.iter().sum::<f64>() / fr.len() as f64);
    let topo = &doc.config.topology;
    let verdict = match copied {
        None => "no zero-copy completions were recorded, so whether zero-copy was real cannot be \
                 told from this run"
            .to_string(),
        Some(c) if c >= 0.99 => format!(
            "zero-copy was deferred, not real, on this topology ({topo}): the kernel flagged \
             {:.1} % of the completed bytes SO_EE_CODE_ZEROCOPY_COPIED, i.e. it pinned the \
             pages and then copied them anyway (skb_copy_ubufs on delivery)",
            c * 100.0
        ),
        Some(c) if c <= 0.01 => format!(
            "zero-copy was real on this topology ({topo}): {:.1} % of the completed bytes were \
             copied after all",
            c * 100.0
        ),
        Some(c) => format!(
            "zero-copy was partly real on this topology ({topo}): {:.1} % of the completed bytes \
             were copied after all",
            c * 100.0
        ),
    };
    ZeroCopyVerdict {
        copied_fraction: copied,
        verdict,
    }
}

fn thread_scaling(doc: &BenchDocument) -> Vec<ThreadScaling> {
    let mut sizes: Vec<usize> = doc.config.sizes.clone();
    sizes.sort();
    let picks: Vec<usize> = match (sizes.first(), sizes.last()) {
        (Some(&a), Some(&b)) if a != b => vec![a, b],
        (Some(&a), _) => vec![a],
        _ => vec![],
    };
    let mut out = Vec::new();
    for &mode in &doc.config.modes {
        for &size in &picks {
            let mut points: Vec<(usize, f64)> = doc
                .summary
                .iter()
                .filter(|s| s.mode == mode && s.pattern == Pattern::Stream && s.size == size)
                .filter_map(|s| Some((s.threads, s.cpu_s_per_gb.as_ref()?.mean)))
                .collect();
            points.sort_by_key(|p| p.0);
            if points.len() < 2 {
                continue;
            }
            let change = Some(points.last().unwrap().1 / points[0].1 - 1.0);
            out.push(ThreadScaling {
                mode,
                size,
                points,
                change,
            });
        }
    }
    out
}

/// The most surprising cell, by two measures that a shared trend (like throughput saturating
/// with size, which every mode shows) cannot produce:
///
/// * **superlinear scaling**: a connection gets *faster* when more connections run (per-
///   connection rate at the most threads ÷ at the fewest);
/// * **a mode breaking ranks**: a mode's throughput *relative to two-copy* jumps away from the
///   interpolation of its neighbours in size.
///
/// The larger log-deviation wins.
fn surprise(doc: &BenchDocument) -> Option<Surprise> {
    let mean = |m: Mode, p: Pattern, size: usize, t: usize| {
        summary(doc, m, p, size, t)
            .and_then(|s| s.sender_gbps.as_ref())
            .map(|e| e.mean)
            .filter(|g| *g > 0.0)
    };
    let mut threads = doc.config.threads.clone();
    threads.sort();
    threads.dedup();
    let mut best: Option<(f64, Surprise)> = None;
    let mut consider = |score: f64, s: Surprise| {
        if score > 0.0 && best.as_ref().is_none_or(|b| score > b.0) {
            best = Some((score, s));
        }
    };
    for &mode in &doc.config.modes {
        for &pattern in &doc.config.patterns {
            for size in doc.config.sizes.iter().copied() {
                let (Some(&t0), Some(&t1)) = (threads.first(), threads.last()) else {
                    continue;
                };
                if t0 == t1 {
                    continue;
                }
                let (Some(g0), Some(g1)) =
                    (mean(mode, pattern, size, t0), mean(mode, pattern, size, t1))
                else {
                    continue;
                };
                let per0 = g0 / t0 as f64;
                let per1 = g1 / t1 as f64;
                let ctx = |t: usize| {
                    summary(doc, mode, pattern, size, t)
                        .and_then(|s| s.context_switches_per_gb.as_ref())
                        .map(|e| e.mean)
                };
                let ctx_note = match (ctx(t0), ctx(t1)) {
                    (Some(a), Some(b)) => format!(
                        "; context switches per GB: {a:.0} alone, {b:.0} with more connections"
                    ),
                    _ => String::new(),
                };
                consider(
                    (per1 / per0).ln(),
                    Surprise {
                        mode,
                        pattern,
                        size,
                        threads: t1,
                        measured_gbps: g1,
                        expected_gbps: per0 * t1 as f64,
                        verdict: format!(
                            "{} {} at {}: each of {t1} connections runs {:.1}× faster than a \
                             lone connection ({per1:.3} vs {per0:.3} Gbit/s per connection)\
                             {ctx_note}. \
                             More load making each connection faster points at wake-up cost: a \
                             lone request/response pair leaves the CPUs idle between messages, \
                             so every message pays an idle exit and a cross-CPU wake-up (in a VM also a \
                             halt exit), which busier CPUs skip",
                            mode.as_str(),
                            pattern.as_str(),
                            size_label(size),
                            per1 / per0
                        ),
                    },
                );
            }
            if mode == Mode::TwoCopy {
                continue;
            }
            let t = threads.first().copied().unwrap_or(1);
            let mut sizes = doc.config.sizes.clone();
            sizes.sort();
            let ratios: Vec<(usize, f64)> = sizes
                .iter()
                .filter_map(|&s| {
                    Some((
                        s,
                        mean(mode, pattern, s, t)? / mean(Mode::TwoCopy, pattern, s, t)?,
                    ))
                })
                .collect();
            for w in ratios.windows(3) {
                let (x0, y0) = ((w[0].0 as f64).log2(), w[0].1.ln());
                let (x1, y1) = ((w[1].0 as f64).log2(), w[1].1.ln());
                let (x2, y2) = ((w[2].0 as f64).log2(), w[2].1.ln());
                let expected = y0 + (y2 - y0) * (x1 - x0) / (x2 - x0);
                let (m, e) = (y1.exp(), expected.exp());
                consider(
                    (y1 - expected).abs(),
                    Surprise {
                        mode,
                        pattern,
                        size: w[1].0,
                        threads: t,
                        measured_gbps: mean(mode, pattern, w[1].0, t).unwrap_or(0.0),
                        expected_gbps: e * mean(Mode::TwoCopy, pattern, w[1].0, t).unwrap_or(0.0),
                        verdict: format!(
                            "{} {} at {} ({t} connection(s)) runs at {m:.2}× two-copy where its \
                             neighbours in size ({} and {}) predict {e:.2}×",
                            mode.as_str(),
                            pattern.as_str(),
                            size_label(w[1].0),
                            size_label(w[0].0),
                            size_label(w[2].0)
                        ),
                    },
                );
            }
        }
    }
    best.map(|b| b.1)
}

fn pct(x: f64) -> String {
    format!("{:+.0} %", x * 100.0)
}

pub fn analyze(doc: &BenchDocument) -> Analysis {
    let one = crossover(doc, Mode::OneCopy, Mode::TwoCopy);
    let zero = crossover(doc, Mode::ZeroCopy, Mode::TwoCopy);
    let zc = zero_copy(doc);
    let scaling = thread_scaling(doc);
    let surprise = surprise(doc);

    // Q1: zero-copy vs two-copy at the smallest and largest size, and why.
    let ratio_at = |size: usize| {
        let z = summary(doc, Mode::ZeroCopy, Pattern::Stream, size, 1)?
            .sender_gbps
            .as_ref()?
            .mean;
        let t = summary(doc, Mode::TwoCopy, Pattern::Stream, size, 1)?
            .sender_gbps
            .as_ref()?
            .mean;
        Some(z / t)
    };
    let sizes = common_sizes(doc, Mode::ZeroCopy, Mode::TwoCopy);
    let q1 = match (sizes.first(), sizes.last()) {
        (Some(&lo), Some(&hi)) => {
            let cpu = |m: Mode, s: usize| {
                summary(doc, m, Pattern::Stream, s, 1)
                    .and_then(|c| c.cpu_s_per_gb.as_ref())
                    .map(|e| e.mean)
            };
            let cpu_note = match (cpu(Mode::ZeroCopy, lo), cpu(Mode::TwoCopy, lo)) {
                (Some(z), Some(t)) if z > t => format!(
                    " At {} it burns {z:.2} CPU-seconds per GB against two-copy's {t:.2}: \
                     every send also pins pages, allocates a completion notification and \
                     later has its completions read back.",
                    size_label(lo)
                ),
                (Some(z), Some(t)) => format!(
                    " At {} it burns {z:.2} CPU-seconds per GB against two-copy's {t:.2}: the \
                     copies it avoids outweigh pinning pages and reading completions back.",
                    size_label(lo)
                ),
                _ => String::new(),
            };
            format!(
                "Zero-copy reaches {:.2}× two-copy's throughput at {} and {:.2}× at {} (one \
                 connection, stream). {}.{cpu_note}",
                ratio_at(lo).unwrap_or(f64::NAN),
                size_label(lo),
                ratio_at(hi).unwrap_or(f64::NAN),
                size_label(hi),
                capitalize(&zc.verdict)
            )
        }
        _ if !doc.config.modes.contains(&Mode::ZeroCopy) => {
            "Zero-copy (MSG_ZEROCOPY) was not measured in this run.".to_string()
        }
        _ => "Not enough stream data with one connection to compare.".to_string(),
    } + &other_modes_ratios(doc);
    // Q2: cache levels.
    let q2 = if doc.hardware_counters.available {
        cache_answer(doc)
    } else {
        format!(
            "Cannot be answered from this run: hardware counters were unavailable ({}). No \
             cache numbers are shown rather than guessed.",
            doc.hardware_counters
                .reason
                .as_deref()
                .unwrap_or("no reason recorded")
        )
    };
    // Q3: threads and per-byte CPU cost.
    let q3 = if scaling.is_empty() {
        "Only one thread count was measured.".to_string()
    } else {
        let parts: Vec<String> = scaling
            .iter()
            .map(|s| {
                format!(
                    "{} at {}: {} CPU-s/GB from {} to {} connections ({})",
                    s.mode.as_str(),
                    size_label(s.size),
                    s.points
                        .iter()
                        .map(|p| format!("{:.2}", p.1))
                        .collect::<Vec<_>>()
                        .join(" → "),
                    s.points[0].0,
                    s.points.last().unwrap().0,
                    s.change.map(pct).unwrap_or_default()
                )
            })
            .collect();
        format!(
            "Per-byte CPU cost (sender + receiver CPU time per GB sent) against thread count: \
             {}. On a machine with {} CPUs, more connections than CPUs share cores and caches.",
            parts.join("; "),
            doc.host.cpus
        )
    };
    let answers = vec![
        Answer {
            question: "Q1. Why does zero-copy not always give the best throughput?".into(),
            answer: q1,
        },
        Answer {
            question: "Q2. Which cache level shows the most reduction in misses, and why?".into(),
            answer: q2,
        },
        Answer {
            question: "Q3. How does thread count interact with per-byte cost?".into(),
            answer: q3,
        },
        Answer {
            question: "Q4. At what message size does one-copy outperform two-copy?".into(),
            answer: capitalize(&one.verdict) + ".",
        },
        Answer {
            question: "Q5. At what message size does zero-copy outperform two-copy?".into(),
            answer: capitalize(&zero.verdict) + "." + &other_modes_crossovers(doc),
        },
        Answer {
            question: "Q6. The most surprising result (largest deviation from trend).".into(),
            answer: surprise
                .as_ref()
                .map(|s| capitalize(&s.verdict) + ".")
                .unwrap_or_else(|| "Too few sizes to define a trend.".into()),
        },
    ];
    Analysis {
        one_copy_vs_two_copy: one,
        zero_copy_vs_two_copy: zero,
        zero_copy: zc,
        thread_scaling: scaling,
        surprise,
        answers,
    }
}

/// The modes beyond the study's three that this run measured (sendfile, io_uring).
fn other_modes(doc: &BenchDocument) -> Vec<Mode> {
    Mode::ALL[3..]
        .iter()
        .copied()
        .filter(|m| doc.config.modes.contains(m))
        .collect()
}

/// Q1 for the other modes: each one's throughput against two-copy at the smallest and the
/// largest size two-copy was measured at, with its CPU cost per GB at the smallest.
fn other_modes_ratios(doc: &BenchDocument) -> String {
    let sizes = common_sizes(doc, Mode::TwoCopy, Mode::TwoCopy);
    let (Some(&lo), Some(&hi)) = (sizes.first(), sizes.last()) else {
        return String::new();
    };
    let gbps = |m: Mode, s: usize| {
        summary(doc, m, Pattern::Stream, s, 1)
            .and_then(|c| c.sender_gbps.as_ref())
            .map(|e| e.mean)
    };
    let cpu = |m: Mode, s: usize| {
        summary(doc, m, Pattern::Stream, s, 1)
            .and_then(|c| c.cpu_s_per_gb.as_ref())
            .map(|e| e.mean)
    };
    let parts: Vec<String> = other_modes(doc)
        .into_iter()
        .filter_map(|m| {
            let r = |s| Some(gbps(m, s)? / gbps(Mode::TwoCopy, s)?);
            Some(format!(
                "{} {:.2}× at {} and {:.2}× at {} ({} CPU-s/GB at {} against two-copy's {})",
                m.as_str(),
                r(lo)?,
                size_label(lo),
                r(hi)?,
                size_label(hi),
                cpu(m, lo).map_or("?".into(), |c| format!("{c:.2}")),
                size_label(lo),
                cpu(Mode::TwoCopy, lo).map_or("?".into(), |c| format!("{c:.2}")),
            ))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" Against two-copy, per mode: {}.", parts.join("; "))
    }
}

/// Q5 for the other modes: where each overtakes two-copy, if it does.
fn other_modes_crossovers(doc: &BenchDocument) -> String {
    other_modes(doc)
        .into_iter()
        .map(|m| {
            format!(
                " {}.",
                capitalize(&crossover(doc, m, Mode::TwoCopy).verdict)
            )
        })
        .collect()
}

/// A per-record derived number (e.g. misses per GB).
type RecordStat<'a> = &'a dyn Fn(&Record) -> Option<f64>;

fn cache_answer(doc: &BenchDocument) -> String {
    // Misses per GB, zero-copy vs two-copy, at the largest size, one connection.
    let size = doc.config.sizes.iter().copied().max().unwrap_or(0);
    let per_gb = |m: Mode, f: RecordStat| {
        let v: Vec<f64> = runs(doc, m, Pattern::Stream, size, 1)
            .iter()
            .filter_map(|r| f(r))
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let levels: [(&str, RecordStat); 3] = [
        ("L1d load misses", &|r| r.derived.l1d_load_misses_per_gb),
        ("LLC load misses", &|r| r.derived.llc_load_misses_per_gb),
        ("cache misses", &|r| r.derived.cache_misses_per_gb),
    ];
    let mut best: Option<(&str, f64)> = None;
    let mut parts = Vec::new();
    for (name, f) in levels {
        if let (Some(z), Some(t)) = (per_gb(Mode::ZeroCopy, f), per_gb(Mode::TwoCopy, f))
            && t > 0.0
        {
            let red = 1.0 - z / t;
            parts.push(format!("{name}: {}", pct(-red)));
            if best.is_none_or(|b| red > b.1) {
                best = Some((name, red));
            }
        }
    }
    match best {
        Some((name, red)) => format!(
            "At {}, zero-copy against two-copy per GB sent: {}. The largest reduction is in \
             {name} ({:.0} %).",
            size_label(size),
            parts.join(", "),
            red * 100.0
        ),
        None => "The hardware counters recorded no cache events to compare.".into(),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossing_interpolates_in_log2_size() {
        // diff goes -2 at 4 KiB to +5 at 64 KiB: x = 12 + 4·2/7 → 2^(12 + 8/7) bytes.
        let pts = [(64, -0.5), (4096, -2.0), (65536, 5.0), (1 << 20, 5.0)];
        let (size, between) = crossing(&pts).unwrap();
        assert_eq!(between, (4096, 65536));
        assert!((size - 2f64.powf(12.0 + 8.0 / 7.0)).abs() < 1e-6, "{size}");
        assert!(crossing(&[(64, 1.0), (128, 2.0)]).is_none());
        assert!(crossing(&[(64, -1.0), (128, -2.0)]).is_none());
    }
}

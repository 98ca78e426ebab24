//! `copytrace report A.json B.json …`: runs of different topologies side by side.
//!
//! The question a wire answers and loopback cannot is whether zero-copy was real: over loopback
//! and veth the kernel copies every zero-copy byte later, so Q1 and Q5 have different answers
//! on the two. This page puts the copied fraction, where the bytes went, throughput and CPU
//! cost of each run next to the other's, answers Q1 and Q5 per run, and links each run's full
//! report (written beside it).
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::{
    Built, Format, Options, ReportError,
    analysis::{Analysis, analyze, summary},
    charts::{
        FROM_COMPLETIONS_NOTE, SummaryStat, byte_class_groups, est, min_threads, overcount_note,
        sorted_sizes, stat_vs_size, throughput_vs_size, tiers_line, traced, x_bytes,
    },
    classes::ByteClasses,
    create_dir,
    figures::{Figure, LineChart, Pt, Series, StackedBars},
    generate, page, page_name, render, write_page,
};
use crate::bench::{Mode, Pattern, results::BenchDocument, size_label};

/// One result file to compare.
pub struct Input {
    pub path: PathBuf,
    pub doc: BenchDocument,
}

/// Zero-copy against two-copy at one size of one run (stream, its smallest connection count).
#[derive(Clone, Debug, Serialize)]
pub struct SizeRow {
    pub size: usize,
    /// Mean over repeats of the fraction of completed zero-copy bytes the kernel copied anyway.
    pub copied_fraction: Option<f64>,
    /// Why, when more than 5 % was copied (from the run's records).
    pub cause: Option<String>,
    pub zero_copy_gbps: Option<f64>,
    pub two_copy_gbps: Option<f64>,
    pub zero_copy_cpu_s_per_gb: Option<f64>,
    pub two_copy_cpu_s_per_gb: Option<f64>,
    /// Where the traced zero-copy run's bytes went: copied at send, copied later, real
    /// zero-copy, not visible (sums to 1).
    pub zero_copy_classes: Option<[f64; 4]>,
}

/// One run of the comparison.
#[derive(Debug, Serialize)]
pub struct Side {
    /// The run's topology (with the file name where two runs share one).
    pub label: String,
    pub file: PathBuf,
    /// Its own full report.
    pub report: PathBuf,
    pub rows: Vec<SizeRow>,
    pub analysis: Analysis,
}

/// What the comparison wrote and found.
pub struct ComparisonOutput {
    pub main: PathBuf,
    pub figures: Vec<PathBuf>,
    pub sides: Vec<Side>,
}

/// One label per run: its topology, with the file stem added where topologies repeat.
fn labels(inputs: &[Input]) -> Vec<String> {
    let topo = |i: &Input| i.doc.config.topology.clone();
    let mut out: Vec<String> = inputs
        .iter()
        .map(|i| {
            let same = inputs.iter().filter(|j| topo(j) == topo(i)).count();
            if same > 1 {
                let stem = i.path.file_stem().unwrap_or_default().to_string_lossy();
                format!("{} ({stem})", topo(i))
            } else {
                topo(i)
            }
        })
        .collect();
    for i in 0..out.len() {
        if out[..i].contains(&out[i]) {
            out[i] = format!("{} #{}", out[i], i + 1);
        }
    }
    out
}

/// A directory name for a run's own report: `run1-loopback`, `run2-nics-eth0-eth1`, …
fn slug(i: usize, label: &str) -> String {
    let mut s: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    format!("run{}-{}", i + 1, s.trim_matches('-'))
}

fn size_rows(doc: &BenchDocument) -> Vec<SizeRow> {
    let t1 = min_threads(doc);
    let cell = |m: Mode, size: usize| summary(doc, m, Pattern::Stream, size, t1);
    let mean = |m: Mode, size: usize, f: fn(&crate::bench::results::CellSummary) -> Option<f64>| {
        cell(m, size).and_then(f)
    };
    sorted_sizes(doc)
        .into_iter()
        .map(|size| SizeRow {
            size,
            copied_fraction: mean(Mode::ZeroCopy, size, |s| {
                s.copied_fraction.as_ref().map(|e| e.mean)
            }),
            cause: doc
                .records
                .iter()
                .filter(|r| r.mode == Mode::ZeroCopy && r.size == size && r.threads == t1)
                .filter(|r| r.pattern == Pattern::Stream)
                .find_map(|r| r.zerocopy.as_ref()?.cause.clone()),
            zero_copy_gbps: mean(Mode::ZeroCopy, size, |s| {
                s.sender_gbps.as_ref().map(|e| e.mean)
            }),
            two_copy_gbps: mean(Mode::TwoCopy, size, |s| {
                s.sender_gbps.as_ref().map(|e| e.mean)
            }),
            zero_copy_cpu_s_per_gb: mean(Mode::ZeroCopy, size, |s| {
                s.cpu_s_per_gb.as_ref().map(|e| e.mean)
            }),
            two_copy_cpu_s_per_gb: mean(Mode::TwoCopy, size, |s| {
                s.cpu_s_per_gb.as_ref().map(|e| e.mean)
            }),
            zero_copy_classes: traced(doc, Mode::ZeroCopy, size, t1)
                .and_then(ByteClasses::of)
                .map(|c| c.fractions()),
        })
        .collect()
}

/// Render the comparison of `inputs` (at least two) into `out`: its page, its figures, and each
/// run's own report in a subdirectory. Nothing is written unless every input loaded (the
/// caller loads them first).
pub fn generate_comparison(
    inputs: &[Input],
    out: &Path,
    opts: &Options,
) -> Result<ComparisonOutput, ReportError> {
    create_dir(out)?;
    let labels = labels(inputs);
    let mut sides = Vec::new();
    let mut files = Vec::new();
    for (i, (input, label)) in inputs.iter().zip(&labels).enumerate() {
        let own = generate(&input.doc, &out.join(slug(i, label)), opts)?;
        files.extend(own.figures);
        sides.push(Side {
            label: label.clone(),
            file: input.path.clone(),
            report: own.main,
            rows: size_rows(&input.doc),
            analysis: analyze(&input.doc),
        });
    }
    let figs = render(figures_of(inputs, &labels), out, &mut files)?;
    let text = match opts.format {
        Format::Html => html(inputs, &sides, &figs, out),
        Format::Md => markdown(inputs, &sides, &figs, out),
    };
    let main = out.join(page_name(opts.format));
    write_page(&main, &text)?;
    Ok(ComparisonOutput {
        main,
        figures: files,
        sides,
    })
}

fn figures_of(inputs: &[Input], labels: &[String]) -> Vec<Built> {
    vec![
        copied_fraction(inputs, labels),
        where_bytes_went(inputs, labels),
        panels(
            inputs,
            labels,
            "cmp3-throughput",
            "Throughput (sender side, decimal Gbit/s, mean over repeats) against message size, \
             one panel per run (stream, each run's smallest connection count; each panel has \
             its own scale).",
            &|doc, title| throughput_vs_size(doc, title, min_threads(doc)),
        ),
        panels(
            inputs,
            labels,
            "cmp4-cpu-cost",
            "CPU seconds per GB sent (sender + receiver threads, kernel included; mean over \
             repeats), one panel per run (stream; log scale).",
            &|doc, title| {
                let cpu: SummaryStat = |s| est(&s.cpu_s_per_gb);
                stat_vs_size(doc, title, "CPU seconds per GB", min_threads(doc), cpu)
            },
        ),
    ]
}

fn copied_fraction(inputs: &[Input], labels: &[String]) -> Built {
    let series: Vec<Series> = inputs
        .iter()
        .zip(labels)
        .enumerate()
        .map(|(i, (input, label))| Series {
            label: label.clone(),
            color: i,
            hollow: false,
            points: size_rows(&input.doc)
                .iter()
                .filter_map(|r| {
                    Some(Pt {
                        x: r.size as f64,
                        y: r.copied_fraction?,
                        band: None,
                    })
                })
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    Built {
        name: "cmp1-copied-fraction",
        caption: "Fraction of the completed MSG_ZEROCOPY bytes the kernel copied anyway \
                  (completions flagged SO_EE_CODE_ZEROCOPY_COPIED), per message size and run \
                  (stream, mean over repeats): 1 means every byte was pinned and then copied \
                  (deferred copy), 0 means the device sent from the user's pages (real \
                  zero-copy)."
            .into(),
        absent: series
            .is_empty()
            .then(|| "no run holds zero-copy completions".to_string()),
        figure: (!series.is_empty()).then(|| {
            Figure::Lines(LineChart {
                title: "Zero-copy bytes the kernel copied anyway".into(),
                x_label: "message size".into(),
                y_label: "copied fraction of completed bytes".into(),
                log_y: false,
                x_fmt: x_bytes,
                series,
            })
        }),
    }
}

fn where_bytes_went(inputs: &[Input], labels: &[String]) -> Built {
    let mut groups = Vec::new();
    let mut sections = Vec::new();
    let mut notes = Vec::new();
    let mut from_completions = false;
    for (input, label) in inputs.iter().zip(labels) {
        let doc = &input.doc;
        let (g, fc) = byte_class_groups(doc, min_threads(doc), "");
        if !g.is_empty() {
            let t1 = min_threads(doc);
            notes.push(format!(
                "{label} — {}.{}",
                tiers_line(doc),
                overcount_note(doc, t1)
            ));
            sections.push((label.clone(), g.len()));
        }
        from_completions |= fc;
        groups.extend(g);
    }
    Built {
        name: "cmp2-where-bytes-went",
        caption: format!(
            "Where the bytes went, per run (traced run of each cell, stream): every byte the \
             send calls accepted, in exactly one class — copied at send time; attached and \
             copied later (deferred); attached and never copied (real zero-copy); not visible \
             with that kernel's tiers. Each bar sums to 1. Tiers: {}{}",
            notes.join(" "),
            if from_completions {
                FROM_COMPLETIONS_NOTE
            } else {
                ""
            }
        ),
        absent: groups
            .is_empty()
            .then(|| "no run was traced (--no-trace or not root)".to_string()),
        figure: (!groups.is_empty()).then(|| {
            Figure::Bars(StackedBars {
                title: "Where the bytes went, per run".into(),
                y_label: "fraction of bytes sent".into(),
                components: page::strings(&[
                    "copied at send",
                    "copied later",
                    "real zero-copy",
                    "not visible",
                ]),
                groups,
                sections,
            })
        }),
    }
}

/// One panel per run.
fn panels(
    inputs: &[Input],
    labels: &[String],
    name: &'static str,
    caption: &str,
    chart: &dyn Fn(&BenchDocument, String) -> LineChart,
) -> Built {
    let charts: Vec<LineChart> = inputs
        .iter()
        .zip(labels)
        .map(|(i, l)| chart(&i.doc, l.clone()))
        .collect();
    Built {
        name,
        caption: caption.to_string(),
        absent: None,
        figure: Some(Figure::Panels {
            cols: charts.len().min(2),
            charts,
        }),
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

/// The side-by-side table: per size, one row per run.
fn table(sides: &[Side]) -> (Vec<String>, Vec<Vec<String>>) {
    let header = page::strings(&[
        "size",
        "run",
        "copied fraction",
        "why copied",
        "zero-copy Gbit/s",
        "two-copy Gbit/s",
        "zero-copy ÷ two-copy",
        "zero-copy CPU s/GB",
        "two-copy CPU s/GB",
        "real zero-copy (traced)",
    ]);
    let mut sizes: Vec<usize> = sides
        .iter()
        .flat_map(|s| s.rows.iter().map(|r| r.size))
        .collect();
    sizes.sort();
    sizes.dedup();
    let mut rows = Vec::new();
    for size in sizes {
        for s in sides {
            let Some(r) = s.rows.iter().find(|r| r.size == size) else {
                continue;
            };
            let ratio = r.zero_copy_gbps.zip(r.two_copy_gbps).map(|(z, t)| z / t);
            rows.push(vec![
                size_label(size),
                s.label.clone(),
                opt(r.copied_fraction, |c| format!("{:.1} %", c * 100.0)),
                r.cause.clone().unwrap_or_else(|| "-".into()),
                opt(r.zero_copy_gbps, |g| format!("{g:.3}")),
                opt(r.two_copy_gbps, |g| format!("{g:.3}")),
                opt(ratio, |x| format!("{x:.2}×")),
                opt(r.zero_copy_cpu_s_per_gb, |c| format!("{c:.3}")),
                opt(r.two_copy_cpu_s_per_gb, |c| format!("{c:.3}")),
                opt(r.zero_copy_classes.map(|c| c[2]), |c| {
                    format!("{:.1} %", c * 100.0)
                }),
            ]);
        }
    }
    (header, rows)
}

/// Q1 and Q5, each answered once per run.
fn answers(sides: &[Side]) -> Vec<(String, Vec<(String, String)>)> {
    ["Q1.", "Q5."]
        .iter()
        .filter_map(|q| {
            let first = sides.first()?;
            let question = first
                .analysis
                .answers
                .iter()
                .find(|a| a.question.starts_with(q))?
                .question
                .clone();
            let per_side = sides
                .iter()
                .filter_map(|s| {
                    let a = s.analysis.answers.iter().find(|a| a.question == question)?;
                    Some((s.label.clone(), a.answer.clone()))
                })
                .collect();
            Some((question, per_side))
        })
        .collect()
}

/// Where a run's own report and its file are, relative to the comparison page.
fn run_rows(inputs: &[Input], sides: &[Side], out: &Path) -> Vec<Vec<String>> {
    inputs
        .iter()
        .zip(sides)
        .map(|(i, s)| {
            let d = &i.doc;
            vec![
                s.label.clone(),
                i.path.display().to_string(),
                s.report
                    .strip_prefix(out)
                    .unwrap_or(&s.report)
                    .display()
                    .to_string(),
                d.host.kernel.clone(),
                format!("{} × {}", d.host.cpus, d.host.cpu_model),
                d.config
                    .modes
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                d.config.repeat.to_string(),
                if d.trace_plan.is_some() { "yes" } else { "no" }.into(),
            ]
        })
        .collect()
}

const RUN_HEADER: [&str; 8] = [
    "run",
    "file",
    "its report",
    "kernel",
    "CPU",
    "modes",
    "repeats",
    "traced",
];

const INTRO: &str = "The same sweep on different topologies, side by side. Over loopback and \
    veth the kernel delivers to a local socket and copies every MSG_ZEROCOPY byte later; only a \
    device that transmits from the pinned user pages makes zero-copy real, and with it the \
    answers to Q1 and Q5 change.";

fn html(inputs: &[Input], sides: &[Side], figs: &[page::Rendered], out: &Path) -> String {
    let mut h = String::new();
    let names: Vec<&str> = sides.iter().map(|s| s.label.as_str()).collect();
    page::html_open(
        &mut h,
        &format!("copytrace comparison — {}", names.join(" vs ")),
    );
    let _ = writeln!(
        h,
        "<h1>copytrace: {}</h1><p>{}</p><h2>Runs</h2>",
        page::esc(&names.join(" vs ")),
        page::esc(INTRO)
    );
    page::html_table(
        &mut h,
        &page::strings(&RUN_HEADER),
        &run_rows(inputs, sides, out),
    );
    h.push_str("<h2>Zero-copy against two-copy, per size</h2>");
    let (header, rows) = table(sides);
    page::html_table(&mut h, &header, &rows);
    h.push_str("<h2>Analysis, per run</h2>\n");
    for (question, per_side) in answers(sides) {
        let _ = writeln!(h, "<h3>{}</h3>", page::esc(&question));
        for (label, answer) in per_side {
            let _ = writeln!(
                h,
                "<p><b>{}:</b> {}</p>",
                page::esc(&label),
                page::esc(&answer)
            );
        }
    }
    h.push_str("<h2>Figures</h2>\n");
    page::html_figures(&mut h, figs);
    h.push_str("</body></html>\n");
    h
}

fn markdown(inputs: &[Input], sides: &[Side], figs: &[page::Rendered], out: &Path) -> String {
    let names: Vec<&str> = sides.iter().map(|s| s.label.as_str()).collect();
    let mut m = format!(
        "# copytrace: {}\n\n{INTRO}\n\n## Runs\n\n",
        names.join(" vs ")
    );
    page::md_table(
        &mut m,
        &page::strings(&RUN_HEADER),
        &run_rows(inputs, sides, out),
    );
    m.push_str("## Zero-copy against two-copy, per size\n\n");
    let (header, rows) = table(sides);
    page::md_table(&mut m, &header, &rows);
    m.push_str("## Analysis, per run\n\n");
    for (question, per_side) in answers(sides) {
        let _ = writeln!(m, "### {question}\n");
        for (label, answer) in per_side {
            let _ = writeln!(m, "**{label}:** {answer}\n");
        }
    }
    m.push_str("## Figures\n\n");
    page::md_figures(&mut m, figs);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(path: &str, topology: &str) -> Input {
        let text = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/bench-small.json"
        ))
        .unwrap();
        let mut doc: BenchDocument = serde_json::from_slice(&text).unwrap();
        doc.config.topology = topology.into();
        Input {
            path: path.into(),
            doc,
        }
    }

    #[test]
    fn labels_are_topologies_made_unique_by_file_then_position() {
        let l = labels(&[
            input("a/lo.json", "loopback"),
            input("w.json", "nics x → y"),
        ]);
        assert_eq!(l, ["loopback", "nics x → y"]);
        let l = labels(&[
            input("a/one.json", "loopback"),
            input("b/two.json", "loopback"),
        ]);
        assert_eq!(l, ["loopback (one)", "loopback (two)"]);
        let l = labels(&[input("a/r.json", "loopback"), input("b/r.json", "loopback")]);
        assert_eq!(l, ["loopback (r)", "loopback (r) #2"]);
    }

    #[test]
    fn slugs_are_plain_directory_names() {
        assert_eq!(slug(0, "loopback"), "run1-loopback");
        assert_eq!(slug(1, "nics eth0 → eth1"), "run2-nics-eth0-eth1");
        assert_eq!(slug(2, "netns (veth)"), "run3-netns-veth");
    }
}

//! The report page: a self-contained HTML file (figures inlined as SVG) or Markdown, and the
//! pieces the side-by-side comparison page shares with it.
use std::fmt::Write as _;

use super::{Built, analysis::Analysis, charts::sorted_sizes};
use crate::bench::{results::BenchDocument, size_label, stats::Estimate};

/// A rendered figure: what was built, and its SVG when it was drawn.
pub(super) type Rendered = (Built, Option<String>);

pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `<!doctype …><body>` with the report's style sheet.
pub(super) fn html_open(h: &mut String, title: &str) {
    let _ = writeln!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>\
         body{{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.45}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:90%}}\
         figure{{margin:2em 0}}figcaption{{font-size:90%;color:#444}}.absent{{background:#fff4e5;border:1px solid #f0c36d;padding:1em}}\
         svg{{max-width:100%;height:auto}}h2{{border-bottom:1px solid #ddd}}</style></head><body>",
        esc(title)
    );
}

/// A table with a header row; cells are escaped.
pub(super) fn html_table(h: &mut String, header: &[String], rows: &[Vec<String>]) {
    h.push_str("<table><tr>");
    for c in header {
        let _ = write!(h, "<th>{}</th>", esc(c));
    }
    h.push_str("</tr>");
    for r in rows {
        h.push_str("<tr>");
        for c in r {
            let _ = write!(h, "<td>{}</td>", esc(c));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>\n");
}

/// The same table in Markdown.
pub(super) fn md_table(m: &mut String, header: &[String], rows: &[Vec<String>]) {
    let line = |cells: &[String]| {
        let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    m.push_str(&line(header));
    m.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for r in rows {
        m.push_str(&line(r));
    }
    m.push('\n');
}

/// Every figure with its caption, or the reason it is absent.
pub(super) fn html_figures(h: &mut String, figs: &[Rendered]) {
    for (b, svg) in figs {
        match (svg, &b.absent) {
            (Some(svg), _) => {
                let _ = writeln!(
                    h,
                    "<figure id=\"{n}\">{svg}<figcaption><b>{n}.</b> {} (<a href=\"{n}.png\">PNG</a>, \
                     <a href=\"{n}.svg\">SVG</a>)</figcaption></figure>",
                    esc(&b.caption),
                    n = b.name,
                );
            }
            (None, Some(why)) => {
                let _ = writeln!(
                    h,
                    "<figure id=\"{n}\"><div class=\"absent\"><b>{n}: not shown.</b> {} — {}</div></figure>",
                    esc(&b.caption),
                    esc(why),
                    n = b.name,
                );
            }
            (None, None) => {}
        }
    }
}

pub(super) fn md_figures(m: &mut String, figs: &[Rendered]) {
    for (b, svg) in figs {
        if svg.is_some() {
            let _ = writeln!(m, "![{}]({}.png)\n\n*{}*\n", b.name, b.name, b.caption);
        } else if let Some(why) = &b.absent {
            let _ = writeln!(m, "*{}: not shown — {why}.*\n", b.name);
        }
    }
}

pub(super) fn meta_rows(doc: &BenchDocument) -> Vec<(&'static str, String)> {
    let join = |v: Vec<String>| v.join(", ");
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
                join(doc.config.modes.iter().map(|m| m.as_str().into()).collect()),
                join(sorted_sizes(doc).into_iter().map(size_label).collect()),
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

/// The run's description: metadata, attach tiers and kernel features.
fn html_run(h: &mut String, doc: &BenchDocument) {
    h.push_str("<h2>Run</h2><table>");
    for (k, v) in meta_rows(doc) {
        let _ = write!(h, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    }
    h.push_str("</table>\n");
    if let Some(plan) = &doc.trace_plan {
        h.push_str("<h3>Kernel paths and attach tiers</h3>");
        let rows: Vec<Vec<String>> = plan
            .iter()
            .map(|d| {
                vec![
                    d.path.clone(),
                    d.tier.as_str().into(),
                    d.target.clone().unwrap_or_else(|| "-".into()),
                    d.note.clone().unwrap_or_default(),
                ]
            })
            .collect();
        html_table(h, &strings(&["path", "tier", "via", "note"]), &rows);
    }
    h.push_str("<h3>Kernel features</h3>");
    let rows: Vec<Vec<String>> = doc
        .features
        .iter()
        .map(|f| vec![f.name.clone(), f.status.as_str().into(), f.detail.clone()])
        .collect();
    html_table(h, &strings(&["feature", "available", "detail"]), &rows);
}

pub(super) fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `mean ± ci` (scaled by `k`), or the mean alone, or "-".
pub(super) fn mean_pm(e: &Option<Estimate>, k: f64) -> String {
    e.as_ref().map_or("-".into(), |e| match e.ci95 {
        Some(c) => format!("{:.3} ± {:.3}", e.mean * k, c * k),
        None => format!("{:.3}", e.mean * k),
    })
}

fn summary_rows(doc: &BenchDocument) -> Vec<Vec<String>> {
    doc.summary
        .iter()
        .map(|s| {
            vec![
                s.mode.as_str().into(),
                s.pattern.as_str().into(),
                size_label(s.size),
                s.threads.to_string(),
                mean_pm(&s.sender_gbps, 1.0),
                mean_pm(&s.p50_ns, 1e-3),
                mean_pm(&s.p99_ns, 1e-3),
                mean_pm(&s.cpu_s_per_gb, 1.0),
                s.copied_fraction
                    .as_ref()
                    .map_or("-".into(), |c| format!("{:.0} %", c.mean * 100.0)),
                s.trace_overhead
                    .map_or("-".into(), |o| format!("{:.0} %", o * 100.0)),
                if s.integrity_ok { "ok" } else { "CORRUPT" }.into(),
            ]
        })
        .collect()
}

pub(super) fn html(doc: &BenchDocument, figs: &[Rendered], a: &Analysis) -> String {
    let mut h = String::new();
    html_open(&mut h, &format!("copytrace report — {}", doc.host.kernel));
    let _ = writeln!(
        h,
        "<h1>copytrace report</h1><p>Where the bytes were copied on their way to the network, \
         and what it cost: two-copy, one-copy and zero-copy TCP senders measured on {}.</p>",
        esc(&doc.host.hostname)
    );
    html_run(&mut h, doc);
    h.push_str("<h2>Analysis</h2>\n");
    for ans in &a.answers {
        let _ = writeln!(
            h,
            "<h3>{}</h3><p>{}</p>",
            esc(&ans.question),
            esc(&ans.answer)
        );
    }
    h.push_str("<h2>Figures</h2>\n");
    html_figures(&mut h, figs);
    h.push_str("<h2>Summary table</h2>");
    let header = strings(&[
        "mode",
        "pattern",
        "size",
        "threads",
        "Gbit/s (±95 %)",
        "p50 µs",
        "p99 µs",
        "CPU s/GB",
        "copied later",
        "tracer cost",
        "integrity",
    ]);
    html_table(&mut h, &header, &summary_rows(doc));
    h.push_str("<h2>Notes</h2><ul>");
    for n in &doc.notes {
        let _ = write!(h, "<li>{}</li>", esc(n));
    }
    h.push_str("</ul></body></html>\n");
    h
}

pub(super) fn markdown(doc: &BenchDocument, figs: &[Rendered], a: &Analysis) -> String {
    let mut m = String::from("# copytrace report\n\n| | |\n|---|---|\n");
    for (k, v) in meta_rows(doc) {
        let _ = writeln!(m, "| {k} | {} |", v.replace('|', "\\|"));
    }
    m.push_str("\n## Analysis\n\n");
    for ans in &a.answers {
        let _ = writeln!(m, "### {}\n\n{}\n", ans.question, ans.answer);
    }
    m.push_str("## Figures\n\n");
    md_figures(&mut m, figs);
    m
}

use std::{path::PathBuf, process::ExitCode};

use copytrace::{
    bench::parse_size,
    report::{
        self, Format, Options,
        compare::{self, Input},
    },
};

#[derive(clap::Args)]
pub struct Args {
    /// Result files written by `copytrace bench --json`. With two or more (e.g. a loopback run
    /// and a wire run) the page puts them side by side and writes each one's own report in a
    /// subdirectory.
    #[arg(required = true, num_args = 1.., value_name = "RESULTS")]
    results: Vec<PathBuf>,
    /// Directory for index.html (or analysis.md) and the figures (SVG and PNG).
    #[arg(long, default_value = "copytrace-report")]
    out: PathBuf,
    /// html: a self-contained index.html; md: the same analysis as Markdown.
    #[arg(long, value_enum, default_value = "html")]
    format: Format,
    /// Message size for the latency-distribution figure (default: the smallest measured).
    #[arg(long, value_name = "SIZE")]
    latency_size: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let latency_size = args
        .latency_size
        .as_deref()
        .map(parse_size)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let opts = Options {
        format: args.format,
        latency_size,
    };
    // Every file is loaded and checked before anything is written.
    let inputs = args
        .results
        .iter()
        .map(|p| {
            Ok(Input {
                path: p.clone(),
                doc: report::load(p)?,
            })
        })
        .collect::<Result<Vec<_>, report::ReportError>>()?;
    if let [one] = inputs.as_slice() {
        let out = report::generate(&one.doc, &args.out, &opts)?;
        for a in &out.analysis.answers {
            println!("{}\n  {}", a.question, a.answer);
        }
        println!(
            "wrote {} figure files and {}",
            out.figures.len(),
            out.main.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let out = compare::generate_comparison(&inputs, &args.out, &opts)?;
    for s in &out.sides {
        println!("{} ({})", s.label, s.file.display());
        for r in &s.rows {
            if let Some(c) = r.copied_fraction {
                println!(
                    "  {}: zero-copy copied fraction {:.1} %{}",
                    copytrace::bench::size_label(r.size),
                    c * 100.0,
                    r.cause
                        .as_deref()
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default()
                );
            }
        }
        for a in &s.analysis.answers {
            if a.question.starts_with("Q1.") || a.question.starts_with("Q5.") {
                println!("  {}\n    {}", a.question, a.answer);
            }
        }
    }
    println!(
        "wrote {} figure files and {}",
        out.figures.len(),
        out.main.display()
    );
    Ok(ExitCode::SUCCESS)
}

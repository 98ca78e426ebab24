use std::{path::PathBuf, process::ExitCode};

use copytrace::{
    bench::parse_size,
    report::{self, Format, Options},
};

#[derive(clap::Args)]
pub struct Args {
    /// A result file written by `copytrace bench --json`.
    results: PathBuf,
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
    let doc = report::load(&args.results)?;
    let out = report::generate(
        &doc,
        &args.out,
        &Options {
            format: args.format,
            latency_size,
        },
    )?;
    for a in &out.analysis.answers {
        println!("{}\n  {}", a.question, a.answer);
    }
    println!(
        "wrote {} figure files and {}",
        out.figures.len(),
        out.main.display()
    );
    Ok(ExitCode::SUCCESS)
}

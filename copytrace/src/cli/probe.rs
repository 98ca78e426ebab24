use std::process::ExitCode;

use copytrace::{features, table::Table};

#[derive(clap::Args)]
pub struct Args {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = features::probe()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("kernel {}", report.kernel);
    println!();
    let mut t = Table::new(["feature", "available", "detail"]).left(&[1, 2]);
    for f in &report.features {
        t.row([
            f.name.clone(),
            f.status.as_str().to_string(),
            f.detail.clone(),
        ]);
    }
    print!("{}", t.render());
    println!();
    let mut t = Table::new(["tracepoint", "available", "detail"]).left(&[1, 2]);
    for f in &report.tracepoints {
        t.row([
            f.name.clone(),
            f.status.as_str().to_string(),
            f.detail.clone(),
        ]);
    }
    print!("{}", t.render());
    Ok(ExitCode::SUCCESS)
}

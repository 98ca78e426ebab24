use std::process::ExitCode;

use copytrace::{features, table::Table};

#[derive(clap::Args)]
pub struct Args {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn feature_table(first: &str, rows: &[features::Feature]) -> String {
    let mut t = Table::new([first, "available", "detail"]).left(&[1, 2]);
    for f in rows {
        t.row([
            f.name.clone(),
            f.status.as_str().to_string(),
            f.detail.clone(),
        ]);
    }
    t.render()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = features::probe()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("kernel {}", report.kernel);
    println!();
    print!("{}", feature_table("feature", &report.features));
    println!();
    print!("{}", feature_table("tracepoint", &report.tracepoints));
    println!();
    let mut t =
        Table::new(["kernel path", "tier", "via", "why not a better tier / note"]).left(&[1, 2, 3]);
    for d in &report.paths {
        let mut why: Vec<String> = d
            .attempts
            .iter()
            .map(|a| format!("{}: {}", a.tier.as_str(), a.error))
            .collect();
        if let Some(n) = &d.note {
            why.push(n.clone());
        }
        let mut lines = why.into_iter();
        t.row([
            d.path.clone(),
            d.tier.as_str().to_string(),
            d.target.clone().unwrap_or_else(|| "-".into()),
            lines.next().unwrap_or_default(),
        ]);
        for more in lines {
            t.row([String::new(), String::new(), String::new(), more]);
        }
    }
    print!("{}", t.render());
    Ok(ExitCode::SUCCESS)
}

//! `cargo xtask trace-overhead`: what the eBPF tracer costs, at 64 B and 64 KiB (two-copy
//! stream, one connection). Each round is one `bench --trace` run, which measures every cell
//! untraced and then once traced; the ratio of the two is the tracer's cost in that round.
use anyhow::Context as _;

use crate::{setup::BuildEnv, tasks};

/// (size, untraced Gbit/s, traced Gbit/s) per cell of one traced bench run.
fn round(env: &BuildEnv, seconds: u32) -> anyhow::Result<Vec<(u64, f64, f64)>> {
    let duration = format!("{seconds}s");
    let mut args = tasks::one_cell("two-copy", "stream", "64,64K", &duration);
    args.push("--trace");
    let v = tasks::bench_json(env, "trace-overhead", &args)?;
    v["summary"]
        .as_array()
        .context("no summary")?
        .iter()
        .map(|s| {
            Ok((
                s["size"].as_u64().context("size")?,
                s["sender_gbps"]["mean"].as_f64().context("untraced gbps")?,
                s["traced_gbps"].as_f64().context("traced gbps")?,
            ))
        })
        .collect()
}

pub fn run(env: &BuildEnv, rounds: u32, seconds: u32) -> anyhow::Result<()> {
    tasks::build(env)?;
    let mut ratios: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
    for r in 1..=rounds {
        for (size, off, on) in round(env, seconds)? {
            eprintln!(
                "xtask: trace-overhead: round {r}: {size} B: {off:.3} Gbit/s untraced, \
                 {on:.3} traced"
            );
            ratios.entry(size).or_default().push(on / off);
        }
    }
    println!(
        "trace-overhead: two-copy stream, 1 connection, {rounds} rounds of {seconds} s untraced \
         then {seconds} s traced"
    );
    for (size, rs) in &ratios {
        let mean = rs.iter().sum::<f64>() / rs.len() as f64;
        println!(
            "  {size:>6} B: traced/untraced throughput = {mean:.3} (overhead {:.1} %); rounds: {}",
            (1.0 - mean) * 100.0,
            rs.iter()
                .map(|r| format!("{r:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

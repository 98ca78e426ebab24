//! `cargo xtask trace-overhead`: throughput with and without the eBPF tracer attached, in
//! interleaved rounds of one run, at 64 B and 64 KiB (two-copy stream, one connection).
use anyhow::Context as _;

use crate::{cmd, setup::BuildEnv, tasks};

fn bench(env: &BuildEnv, trace: bool, seconds: u32) -> anyhow::Result<Vec<(u64, f64)>> {
    let json = cmd::target_dir().join("trace-overhead.json");
    let bin = cmd::target_dir().join("release/copytrace");
    cmd::run(tasks::as_root(env, &bin).args([
        "bench",
        "--modes",
        "two-copy",
        "--patterns",
        "stream",
        "--sizes",
        "64,64K",
        "--threads",
        "1",
        "--repeat",
        "1",
        "--warmup",
        "500ms",
        "--duration",
        &format!("{seconds}s"),
        if trace { "--trace" } else { "--no-trace" },
        "--json",
        json.to_str().context("utf-8 path")?,
    ]))?;
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json)?)?;
    v["records"]
        .as_array()
        .context("no records")?
        .iter()
        .map(|r| {
            Ok((
                r["size"].as_u64().context("size")?,
                r["sender"]["gbps"].as_f64().context("gbps")?,
            ))
        })
        .collect()
}

pub fn run(env: &BuildEnv, rounds: u32, seconds: u32) -> anyhow::Result<()> {
    tasks::build(env)?;
    let mut ratios: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
    for r in 1..=rounds {
        let off = bench(env, false, seconds)?;
        let on = bench(env, true, seconds)?;
        for ((size, g_off), (_, g_on)) in off.iter().zip(&on) {
            eprintln!(
                "xtask: trace-overhead: round {r}: {size} B: {g_off:.3} Gbit/s untraced, \
                 {g_on:.3} traced"
            );
            ratios.entry(*size).or_default().push(g_on / g_off);
        }
    }
    println!(
        "trace-overhead: two-copy stream, 1 connection, {rounds} interleaved rounds of {seconds} s"
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

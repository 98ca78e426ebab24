//! `cargo xtask bench-peers`: copytrace's two-copy stream next to iperf3 on the same machine,
//! interleaved in one run, reported as a ratio (absolute numbers on a shared VM are noise).
use std::{
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::{cmd, packages, setup::BuildEnv, tasks};

/// One iperf3 single-stream run over loopback; returns received Gbit/s.
fn iperf3(seconds: u32) -> anyhow::Result<f64> {
    let port = "5399";
    let mut server = Command::new("iperf3")
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting iperf3 -s")?;
    thread::sleep(Duration::from_millis(300));
    let out = cmd::output(Command::new("iperf3").args([
        "-c",
        "127.0.0.1",
        "-p",
        port,
        "-t",
        &seconds.to_string(),
        "-J",
    ]));
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_str(&out?).context("iperf3 -J output")?;
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("no end.sum_received.bits_per_second in iperf3 output")?;
    Ok(bps / 1e9)
}

/// One copytrace two-copy 1 MiB single-connection stream run; returns sender Gbit/s.
fn copytrace(env: &BuildEnv, seconds: u32) -> anyhow::Result<f64> {
    let duration = format!("{seconds}s");
    let v = tasks::bench_json(
        env,
        "bench-peers",
        &[
            "--modes",
            "two-copy",
            "--patterns",
            "stream",
            "--sizes",
            "1M",
            "--threads",
            "1",
            "--repeat",
            "1",
            "--warmup",
            "1s",
            "--duration",
            &duration,
        ],
    )?;
    v["records"][0]["sender"]["gbps"]
        .as_f64()
        .context("no records[0].sender.gbps")
}

pub fn run(env: &BuildEnv, rounds: u32, seconds: u32) -> anyhow::Result<()> {
    if rounds == 0 || seconds == 0 {
        bail!("rounds and seconds must be positive");
    }
    packages::ensure("bench-peers", packages::PEERS)?;
    tasks::build(env)?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for r in 1..=rounds {
        let i = iperf3(seconds)?;
        let c = copytrace(env, seconds)?;
        eprintln!("xtask: bench-peers: round {r}: iperf3 {i:.2} Gbit/s, copytrace {c:.2} Gbit/s");
        theirs.push(i);
        ours.push(c);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(c, i)| c / i).collect();
    println!(
        "bench-peers: copytrace two-copy stream, 1 MiB messages, 1 connection vs iperf3 -c \
         127.0.0.1 (1 stream, 128 KiB writes), {rounds} interleaved rounds of {seconds} s"
    );
    println!(
        "  copytrace {:.2} Gbit/s, iperf3 {:.2} Gbit/s, ratio copytrace/iperf3 = {:.3} \
         (per round: {})",
        mean(&ours),
        mean(&theirs),
        mean(&ratios),
        ratios
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  (copytrace also serializes 8 fields per message and verifies every received byte; \
         iperf3 does neither)"
    );
    Ok(())
}

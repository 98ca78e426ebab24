//! `cargo xtask bench-peers`: copytrace next to the reference tools on the same machine,
//! interleaved in one run, reported as ratios (absolute numbers on a shared VM are noise).
//!
//! * throughput: copytrace one-copy and two-copy streams of 1 MiB messages, one connection,
//!   against `iperf3 -l 1M` (one stream, 1 MiB writes);
//! * `--rr`: copytrace's two-copy request/response at 64 B, one connection, against
//!   `sockperf ping-pong --tcp -m 64 --full-rtt`. sockperf reports *half* the round trip
//!   unless asked for the full one; copytrace reports full round trips.
use std::{process::Command, time::Duration};

use anyhow::{Context as _, bail};

use crate::{
    cmd,
    measure::{Background, list, mean},
    packages,
    setup::BuildEnv,
    tasks,
};

const PORT: &str = "5399";

/// What to compare, and for how long.
pub struct PeersArgs {
    pub rounds: u32,
    pub seconds: u32,
    pub rr: bool,
}

/// A reference server on 127.0.0.1 for one round; killed on drop.
fn server(program: &str, args: &[&str]) -> anyhow::Result<Background> {
    Background::start(Command::new(program).args(args), Duration::from_millis(300))
}

/// One iperf3 single-stream run over loopback with 1 MiB writes; returns received Gbit/s.
fn iperf3(seconds: u32) -> anyhow::Result<f64> {
    let _server = server("iperf3", &["-s", "-1", "-B", "127.0.0.1", "-p", PORT])?;
    let out = cmd::output(Command::new("iperf3").args([
        "-c",
        "127.0.0.1",
        "-p",
        PORT,
        "-l",
        "1M",
        "-t",
        &seconds.to_string(),
        "-J",
    ]))?;
    let v: serde_json::Value = serde_json::from_str(&out).context("iperf3 -J output")?;
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("no end.sum_received.bits_per_second in iperf3 output")?;
    Ok(bps / 1e9)
}

/// One sockperf TCP ping-pong at 64 B over loopback; returns (p50, p99) round trips in µs.
fn sockperf(seconds: u32) -> anyhow::Result<(f64, f64)> {
    let _server = server(
        "sockperf",
        &["server", "--tcp", "-i", "127.0.0.1", "-p", PORT],
    )?;
    let out = cmd::output(Command::new("sockperf").args([
        "ping-pong",
        "--tcp",
        "-i",
        "127.0.0.1",
        "-p",
        PORT,
        "-m",
        "64",
        "-t",
        &seconds.to_string(),
        "--full-rtt",
    ]))?;
    let pct = |p: &str| -> anyhow::Result<f64> {
        out.lines()
            .find(|l| l.contains(&format!("percentile {p} =")))
            .and_then(|l| l.rsplit('=').next())
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no `percentile {p}` line in sockperf's output"))
    };
    Ok((pct("50.000")?, pct("99.000")?))
}

/// copytrace's arguments for one untraced cell.
fn cell_args<'a>(
    mode: &'a str,
    pattern: &'a str,
    size: &'a str,
    duration: &'a str,
) -> Vec<&'a str> {
    let mut a = tasks::one_cell(mode, pattern, size, duration);
    a.push("--no-trace");
    a
}

/// One copytrace 1 MiB single-connection stream in `mode`; returns sender Gbit/s.
fn copytrace_stream(env: &BuildEnv, mode: &str, seconds: u32) -> anyhow::Result<f64> {
    let d = format!("{seconds}s");
    let v = tasks::bench_json(env, "bench-peers", &cell_args(mode, "stream", "1M", &d))?;
    v["records"][0]["sender"]["gbps"]
        .as_f64()
        .context("no records[0].sender.gbps")
}

/// One copytrace two-copy 64 B request/response run; returns (p50, p99) in µs.
fn copytrace_rr(env: &BuildEnv, seconds: u32) -> anyhow::Result<(f64, f64)> {
    let d = format!("{seconds}s");
    let v = tasks::bench_json(env, "bench-peers", &cell_args("two-copy", "rr", "64", &d))?;
    let l = &v["records"][0]["latency"];
    let us = |k: &str| l[k].as_f64().map(|ns| ns / 1e3);
    Ok((
        us("p50_ns").context("no latency.p50_ns")?,
        us("p99_ns").context("no latency.p99_ns")?,
    ))
}

fn throughput(env: &BuildEnv, rounds: u32, seconds: u32) -> anyhow::Result<()> {
    let (mut one, mut two, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    for r in 1..=rounds {
        let i = iperf3(seconds)?;
        let o = copytrace_stream(env, "one-copy", seconds)?;
        let t = copytrace_stream(env, "two-copy", seconds)?;
        eprintln!(
            "xtask: bench-peers: round {r}: iperf3 {i:.2}, copytrace one-copy {o:.2}, \
             two-copy {t:.2} Gbit/s"
        );
        theirs.push(i);
        one.push(o);
        two.push(t);
    }
    let ratio =
        |ours: &[f64]| -> Vec<f64> { ours.iter().zip(&theirs).map(|(c, i)| c / i).collect() };
    let (r1, r2) = (ratio(&one), ratio(&two));
    println!(
        "bench-peers: 1 MiB messages, 1 connection, against iperf3 -c 127.0.0.1 -l 1M (1 \
         stream), {rounds} interleaved rounds of {seconds} s"
    );
    println!("  iperf3             {:.2} Gbit/s", mean(&theirs));
    println!(
        "  copytrace one-copy {:.2} Gbit/s  ratio {:.3} (per round: {})",
        mean(&one),
        mean(&r1),
        list(&r1)
    );
    println!(
        "  copytrace two-copy {:.2} Gbit/s  ratio {:.3} (per round: {})",
        mean(&two),
        mean(&r2),
        list(&r2)
    );
    println!(
        "  (copytrace also checks every field's stamp of every message received; two-copy adds \
         a user-space copy by design)"
    );
    Ok(())
}

fn latency(env: &BuildEnv, rounds: u32, seconds: u32) -> anyhow::Result<()> {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for r in 1..=rounds {
        let s = sockperf(seconds)?;
        let c = copytrace_rr(env, seconds)?;
        eprintln!(
            "xtask: bench-peers: round {r}: sockperf p50 {:.1} p99 {:.1} µs, copytrace p50 \
             {:.1} p99 {:.1} µs",
            s.0, s.1, c.0, c.1
        );
        theirs.push(s);
        ours.push(c);
    }
    let p = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| v.iter().map(f).collect::<Vec<_>>();
    let r50: Vec<f64> = ours.iter().zip(&theirs).map(|(c, s)| c.0 / s.0).collect();
    let r99: Vec<f64> = ours.iter().zip(&theirs).map(|(c, s)| c.1 / s.1).collect();
    println!(
        "bench-peers --rr: 64 B request/response, 1 connection, full round trips, against \
         sockperf ping-pong --tcp -m 64 --full-rtt, {rounds} interleaved rounds of {seconds} s"
    );
    println!(
        "  sockperf            p50 {:.1} µs  p99 {:.1} µs",
        mean(&p(&theirs, |x| x.0)),
        mean(&p(&theirs, |x| x.1))
    );
    println!(
        "  copytrace two-copy  p50 {:.1} µs  p99 {:.1} µs",
        mean(&p(&ours, |x| x.0)),
        mean(&p(&ours, |x| x.1))
    );
    println!(
        "  ratio copytrace/sockperf: p50 {:.3} (per round: {}), p99 {:.3} (per round: {})",
        mean(&r50),
        list(&r50),
        mean(&r99),
        list(&r99)
    );
    println!(
        "  (copytrace's request is 16 bytes and its response is serialized from 8 fields and \
         checked; sockperf echoes 64 bytes)"
    );
    Ok(())
}

pub fn run(env: &BuildEnv, a: &PeersArgs) -> anyhow::Result<()> {
    if a.rounds == 0 || a.seconds == 0 {
        bail!("rounds and seconds must be positive");
    }
    packages::ensure("bench-peers", packages::PEERS)?;
    tasks::build(env)?;
    if a.rr {
        latency(env, a.rounds, a.seconds)
    } else {
        throughput(env, a.rounds, a.seconds)
    }
}

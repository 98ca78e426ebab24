//! `cargo xtask`: everything between a fresh clone and a running copytrace.
//!
//! Every command provisions what the eBPF build needs first (idempotently), so a newcomer on a
//! fresh Debian machine runs one command and nothing else.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod measure;
mod overhead;
mod packages;
mod peers;
mod setup;
mod tasks;
mod vm;

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what the eBPF build needs (rust-src, bpf-linker) if missing.
    Setup,
    /// Build copytrace (release) with its embedded eBPF object.
    Build,
    /// Build, then run `copytrace <ARGS>` as root (via sudo if needed).
    Run {
        /// Arguments for copytrace (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// copytrace's 1 MiB streams next to iperf3 (or, with --rr, its 64 B request/response
    /// next to sockperf) over loopback, interleaved, as ratios.
    BenchPeers {
        /// Interleaved rounds.
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 4)]
        seconds: u32,
        /// Round-trip latency against sockperf instead of throughput against iperf3.
        #[arg(long)]
        rr: bool,
    },
    /// The tracer's cost against untraced, its floor (empty programs) and bpftrace, for an
    /// iperf3 client and for bench, at 64 B and 128 KiB, interleaved.
    TraceOverhead {
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Measured seconds per run (after 3 s for the tracer to attach).
        #[arg(long, default_value_t = 4)]
        seconds: u32,
        /// Best attach tier for copytrace and the floor (`tracepoint`: the classic ones).
        #[arg(long, default_value = "fentry")]
        best_tier: String,
    },
    /// Boot a stock Debian kernel (kprobes, fentry) under QEMU TCG and run the guest-tier tests.
    VmTest {
        /// Which kernel to boot: debian-6.1, debian-6.12 (the newest 6.12 the package index
        /// offers), or all (both guests at once, one host core each).
        #[arg(long, default_value = "debian-6.1")]
        kernel: String,
        /// Kill a hung guest after this many seconds.
        #[arg(long, default_value_t = 900)]
        timeout: u64,
    },
    /// fmt check, clippy -D warnings, unit tests and the root eBPF integration tests.
    Test {
        /// Extra arguments for `cargo test` test binaries (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Setup => setup::run().map(|_| ExitCode::SUCCESS),
        Command::Build => {
            setup::run().and_then(|env| tasks::build(&env).map(|_| ExitCode::SUCCESS))
        }
        Command::Run { args } => setup::run().and_then(|env| tasks::run(&env, &args)),
        Command::Test { args } => setup::run().and_then(|env| tasks::test(&env, &args)),
        Command::BenchPeers {
            rounds,
            seconds,
            rr,
        } => setup::run().and_then(|env| {
            peers::run(
                &env,
                &peers::PeersArgs {
                    rounds,
                    seconds,
                    rr,
                },
            )
            .map(|_| ExitCode::SUCCESS)
        }),
        Command::VmTest { kernel, timeout } => setup::run().and_then(|env| {
            vm::run(
                &env,
                &vm::VmArgs {
                    kernel,
                    timeout: std::time::Duration::from_secs(timeout),
                },
            )
        }),
        Command::TraceOverhead {
            rounds,
            seconds,
            best_tier,
        } => setup::run().and_then(|env| {
            let a = overhead::Args {
                rounds,
                seconds,
                best_tier,
            };
            overhead::run(&env, &a).map(|_| ExitCode::SUCCESS)
        }),
    };
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! The `copytrace` command line. Errors from the library end up here as one line on stderr and
//! a non-zero exit status.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "copytrace",
    version,
    about = "Where did my bytes get copied on their way to the network, and what did that cost?"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show which kernel features copytrace can use here, and why not when not.
    Probe(cli::probe::Args),
    /// Trace socket I/O of a command or of running processes; print per-syscall totals.
    Trace(cli::trace::Args),
    /// Benchmark two-copy, one-copy and zero-copy TCP senders over sizes and thread counts.
    Bench(cli::bench::Args),
    /// Stay attached and serve the totals per process as OpenMetrics for Prometheus.
    Exporter(cli::exporter::Args),
    /// Receiver for `copytrace bench --connect` from another host.
    Serve(cli::serve::Args),
    /// Figures, an HTML page and the study's analysis questions from a bench result file.
    Report(cli::report::Args),
}

fn main() -> ExitCode {
    // Behave like other Unix filters when stdout is closed early (`copytrace probe | head`):
    // die quietly from SIGPIPE instead of panicking. The kernel drops our programs with the
    // process, since nothing is pinned.
    // SAFETY: setting a signal disposition before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    env_logger::Builder::from_env(
        env_logger::Env::default().filter_or("COPYTRACE_LOG", "info,aya=warn"),
    )
    .format_timestamp(None)
    .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Probe(a) => cli::probe::run(a),
        Command::Trace(a) => cli::trace::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Exporter(a) => cli::exporter::run(a),
        Command::Serve(a) => cli::serve::run(a),
        Command::Report(a) => cli::report::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("copytrace: error: {}", cli::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

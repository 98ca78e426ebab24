use std::{net::SocketAddr, process::ExitCode, sync::atomic::Ordering};

use anyhow::Context as _;
use copytrace::bench::server;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: std::net::IpAddr,
    /// TCP port to listen on.
    #[arg(long, default_value_t = 5301)]
    port: u16,
}

/// The far end for `copytrace bench --connect HOST:PORT`: verifies streams and answers
/// request/response connections until Ctrl-C.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stop = super::stop_flag()?;
    let listener = server::bind(SocketAddr::new(args.bind, args.port))?;
    let addr = listener.local_addr()?;
    listener
        .set_nonblocking(true)
        .context("configuring the listener")?;
    eprintln!("copytrace serve: listening on {addr} (Ctrl-C to stop)");
    server::accept_loop(&listener, &stop);
    eprintln!(
        "copytrace serve: stopped{}",
        if stop.load(Ordering::SeqCst) {
            " by signal"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

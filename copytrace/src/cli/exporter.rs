use std::{
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow, bail};
use copytrace::{
    export::openmetrics::{self, Format},
    exporter::{Exporter, labels::LabelBy},
    trace::{Tier, TraceOptions, Tracer, process},
};

#[derive(clap::Args)]
pub struct Args {
    /// Address to serve /metrics on.
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
    /// Only these processes (all their threads). Repeatable.
    #[arg(
        short = 'p',
        long = "pid",
        value_name = "PID",
        conflicts_with = "comms"
    )]
    pids: Vec<i32>,
    /// Only threads with this name (comm, up to 15 bytes), matched in the kernel at each event.
    /// Repeatable (up to 8).
    #[arg(long = "comm", value_name = "NAME")]
    comms: Vec<String>,
    /// Only tasks in this cgroup v2 directory.
    #[arg(long, value_name = "DIR")]
    cgroup: Option<PathBuf>,
    /// What the `process` label holds. `pid` grows with process churn (the cap folds it).
    #[arg(long, value_enum, default_value = "comm")]
    label: LabelBy,
    /// At most this many series per scrape (a histogram counts its buckets, sum and count);
    /// new label sets beyond it are folded into process="(other processes)".
    #[arg(long, default_value_t = 2000, value_name = "N")]
    max_series: usize,
    /// Read the kernel's totals and reap exited threads this often, scraped or not.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Best attach tier to try per kernel path (lower tiers are tried after it).
    #[arg(long, value_enum, default_value = "fentry")]
    best_tier: Tier,
}

/// Long enough to notice a stop request promptly, short enough to keep the interval.
const POLL: Duration = Duration::from_millis(100);

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    copytrace::trace::loader::require_root()?;
    if args.interval.is_zero() {
        bail!("--interval must be greater than zero");
    }
    let cgroup = args
        .cgroup
        .as_ref()
        .map(super::trace::cgroup_id)
        .transpose()?
        .unwrap_or(0);
    let pids = args
        .pids
        .iter()
        .map(|p| process::tgid_of(*p))
        .collect::<Result<Vec<_>, _>>()?;
    let stop = super::stop_flag()?;
    // Bind first: a port in use fails before anything is attached.
    let server = tiny_http::Server::http(args.listen)
        .map_err(|e| anyhow!("cannot listen on {}: {e}", args.listen))?;
    let tracer = Tracer::start(&TraceOptions {
        pids,
        cgroup_id: cgroup,
        best_tier: args.best_tier,
        comms: args.comms.clone(),
        ..TraceOptions::default()
    })
    .context("starting the tracer")?;
    let mut exporter = Exporter::new(tracer, args.label, args.max_series)?;
    // The port the kernel chose, for --listen 127.0.0.1:0.
    let addr = server.server_addr().to_ip().unwrap_or(args.listen);
    eprintln!(
        "copytrace exporter: serving http://{}/metrics (process label: {}, at most {} series); \
         SIGTERM or Ctrl-C detaches and exits",
        addr,
        format!("{:?}", args.label).to_lowercase(),
        args.max_series
    );
    serve(&server, &mut exporter, args.interval, &stop);
    drop(exporter);
    eprintln!("copytrace exporter: stopped; every program detached");
    Ok(ExitCode::SUCCESS)
}

/// Answer scrapes until `stop`, collecting at least every `interval`.
fn serve(
    server: &tiny_http::Server,
    exporter: &mut Exporter,
    interval: Duration,
    stop: &std::sync::atomic::AtomicBool,
) {
    let mut last = Instant::now();
    let mut failing = false;
    while !stop.load(Ordering::SeqCst) {
        if last.elapsed() >= interval {
            last = Instant::now();
            report(exporter.collect().as_ref().map(drop), &mut failing);
        }
        let req = match server.recv_timeout(POLL) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("copytrace exporter: accepting a connection: {e}");
                continue;
            }
        };
        let _ = match req.url() {
            "/metrics" => {
                last = Instant::now();
                let page = exporter.collect();
                report(page.as_ref().map(drop), &mut failing);
                let format = req
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Accept"))
                    .map_or(Format::PrometheusText, |h| {
                        Format::from_accept(h.value.as_str())
                    });
                match page.map_err(|e| e.to_string()).and_then(|m| {
                    openmetrics::encode(&m, format).map_err(|e| format!("encoding: {e}"))
                }) {
                    Ok(body) => req.respond(response(200, body, format.content_type())),
                    Err(e) => req.respond(response(500, e, "text/plain")),
                }
            }
            "/" => req.respond(response(
                200,
                "copytrace exporter: metrics at /metrics\n".into(),
                "text/plain",
            )),
            _ => req.respond(response(404, "not found\n".into(), "text/plain")),
        };
    }
}

/// Say when collecting starts and stops failing (once each, not every second).
fn report(r: Result<(), &copytrace::error::Error>, failing: &mut bool) {
    match r {
        Err(e) if !*failing => {
            *failing = true;
            eprintln!("copytrace exporter: reading the kernel's totals failed: {e}");
        }
        Ok(()) if *failing => {
            *failing = false;
            eprintln!("copytrace exporter: reading the kernel's totals works again");
        }
        _ => {}
    }
}

fn response(
    code: u16,
    body: String,
    content_type: &str,
) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
        .expect("a static, valid header");
    tiny_http::Response::from_string(body)
        .with_status_code(code)
        .with_header(header)
}

use std::{
    process::ExitCode,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use copytrace::trace::{
    TraceOptions, Tracer,
    process::{self, GatedChild},
    render,
};

#[derive(clap::Args)]
pub struct Args {
    /// Trace this process (all its threads, including ones created later). Repeatable.
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pids: Vec<i32>,
    /// Stop after this long (e.g. 10s, 500ms, 2m). Default: until the traced processes exit
    /// or Ctrl-C. A traced command still running then gets SIGTERM.
    #[arg(short = 'd', long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Print the breakdown of each interval of this length while tracing.
    #[arg(short = 'i', long, value_parser = humantime::parse_duration)]
    interval: Option<Duration>,
    /// Command to run and trace (with its children), after `--`.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    copytrace::trace::loader::require_root()?;
    if !args.command.is_empty() && !args.pids.is_empty() {
        bail!("give either -p PID or a command after --, not both");
    }
    if args.interval.is_some_and(|i| i.is_zero()) {
        bail!("--interval must be greater than zero");
    }
    let stop = super::stop_flag()?;

    let mut child = None;
    let mut pids = Vec::new();
    let mut names = Vec::new();
    for p in &args.pids {
        let tgid = process::tgid_of(*p)?;
        pids.push(tgid);
        names.push(format!("pid {tgid} ({})", process::comm(tgid)));
    }
    if !args.command.is_empty() {
        let c = GatedChild::spawn(&args.command)?;
        pids.push(c.pid());
        child = Some(c);
    }
    let opts = TraceOptions {
        pids: pids.clone(),
        follow_children: child.is_some(),
        cgroup_id: 0,
        include_self: false,
    };
    let mut tracer = match Tracer::start(&opts) {
        Ok(t) => t,
        Err(e) => {
            if let Some(c) = child.as_mut() {
                c.kill();
            }
            return Err(e).context("starting the tracer");
        }
    };
    for a in tracer.attachments().iter().filter(|a| a.error.is_some()) {
        eprintln!(
            "copytrace: not visible: {} ({})",
            a.target,
            a.error.as_deref().unwrap_or("")
        );
    }
    let started = Instant::now();
    if let Some(c) = child.as_mut() {
        c.release()?;
    }

    let mut exit_status = None;
    let mut last = tracer.snapshot()?;
    let mut next_interval = args.interval.map(|i| started + i);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        tracer.flush_logs();
        if let Some(c) = child.as_mut() {
            if let Some(s) = c.try_wait()? {
                exit_status = Some(s);
                break;
            }
        } else if !pids.is_empty() && !pids.iter().any(|p| process::alive(*p)) {
            break;
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if let (Some(at), Some(every)) = (next_interval, args.interval)
            && Instant::now() >= at
        {
            let now = tracer.snapshot()?;
            println!(
                "--- interval ending at {:.3} s ---",
                started.elapsed().as_secs_f64()
            );
            print!("{}", render::breakdown(&now.since(&last)));
            last = now;
            next_interval = Some(at + every);
        }
    }
    let elapsed = started.elapsed();
    let snap = tracer.snapshot()?;
    tracer.flush_logs();
    drop(tracer);
    if let Some(c) = child.as_mut()
        && exit_status.is_none()
    {
        // Stopped by Ctrl-C/SIGTERM or --duration while the command still runs: end it like
        // `timeout` would, and reap it.
        exit_status = Some(c.terminate()?);
    }

    let who = if let Some(c) = &child {
        let mut shown = args.command.join(" ").replace('\n', " ");
        if shown.chars().count() > 60 {
            shown = shown.chars().take(57).collect::<String>() + "...";
        }
        format!("command `{shown}` (pid {})", c.pid())
    } else if pids.is_empty() {
        "all processes".to_string()
    } else {
        names.join(", ")
    };
    println!("copytrace: traced {who} for {:.3} s", elapsed.as_secs_f64());
    print!("{}", render::breakdown(&snap));
    Ok(match exit_status {
        Some(s) => {
            if !s.success() {
                eprintln!("copytrace: command exited with {s}");
            }
            ExitCode::from(s.code().unwrap_or(1).clamp(0, 255) as u8)
        }
        None => ExitCode::SUCCESS,
    })
}

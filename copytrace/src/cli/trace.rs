use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    process::ExitCode,
    sync::atomic::Ordering,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, bail};
use copytrace::{
    export::{self, Interval, SpanInfo, TRACE_SCHEMA, TRACE_SCHEMA_VERSION, Target, TraceDocument},
    features,
    files::write_atomic,
    table::Table,
    trace::{
        Breakdown, Snapshot, Tier, TraceOptions, Tracer, cost,
        process::{self, GatedChild},
        render,
    },
};
use copytrace_common::SpanEvent;

/// Keep the timeline export to a size a browser can open.
const MAX_SPANS: usize = 1_000_000;

#[derive(clap::Args)]
pub struct Args {
    /// Trace this process (all its threads, including ones created later). Repeatable.
    #[arg(short = 'p', long = "pid", value_name = "PID")]
    pids: Vec<i32>,
    /// Stop after this long (e.g. 10s, 500ms, 2m). Default: until the traced processes exit
    /// or Ctrl-C. A traced command still running then gets SIGTERM.
    #[arg(short = 'd', long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Print the per-syscall breakdown of each interval of this length while tracing.
    #[arg(short = 'i', long, value_parser = humantime::parse_duration)]
    interval: Option<Duration>,
    /// Also print (and export) a per-thread breakdown.
    #[arg(long)]
    threads: bool,
    /// Only count tasks in this cgroup v2 directory (e.g. /sys/fs/cgroup/system.slice/x).
    #[arg(long, value_name = "DIR")]
    cgroup: Option<PathBuf>,
    /// Best attach tier to try per kernel path (lower tiers are tried after it).
    #[arg(long, value_enum, default_value = "fentry")]
    best_tier: Tier,
    /// Write the trace as JSON (schema copytrace.trace v1).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write every raw (tgid, tid, path, op) row as CSV.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Write sampled system calls as a Chrome trace-event file for ui.perfetto.dev.
    #[arg(long, value_name = "FILE")]
    perfetto: Option<PathBuf>,
    /// With --perfetto: record one in this many system calls.
    #[arg(long, default_value_t = 1, value_name = "N")]
    sample: u32,
    /// Attach empty programs to the hooks a trace would use, and count nothing: the floor
    /// that `cargo xtask trace-overhead` measures the tracer's cost against.
    #[arg(long, hide = true)]
    floor: bool,
    /// Command to run and trace (with its children), after `--`.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
}

/// CPU time of what is traced so far: a command and its reaped descendants, the given
/// processes, or (tracing everything) the whole machine.
fn traced_cpu(pids: &[u32], command: bool) -> Option<u64> {
    if command {
        Some(cost::rusage_cpu_ns(libc::RUSAGE_CHILDREN))
    } else if pids.is_empty() {
        cost::cpu_ns_all()
    } else {
        cost::cpu_ns(pids)
    }
}

pub(super) fn cgroup_id(dir: &PathBuf) -> anyhow::Result<u64> {
    let md = std::fs::metadata(dir).with_context(|| format!("cgroup {}", dir.display()))?;
    if !md.is_dir() {
        bail!("cgroup {} is not a directory", dir.display());
    }
    // On cgroup v2 the id bpf_get_current_cgroup_id() returns is the directory's inode.
    Ok(md.ino())
}

/// Remembers thread names while they are alive, for tables printed after they exit.
#[derive(Default)]
struct Comms(HashMap<u32, String>);

impl Comms {
    /// Re-read the names of live threads (a thread's name changes at exec, e.g. behind a
    /// shell wrapper); keep the last known name of threads that are gone.
    fn refresh(&mut self, snap: &Snapshot) {
        let mut seen = std::collections::HashSet::new();
        for k in snap.rows.keys() {
            if k.tid != 0 && seen.insert(k.tid) {
                let c = process::comm(k.tid);
                if c != "?" {
                    self.0.insert(k.tid, c);
                }
            }
        }
    }

    fn get(&self, tid: u32) -> String {
        self.0
            .get(&tid)
            .cloned()
            .unwrap_or_else(|| process::comm(tid))
    }
}

fn plan_line(tracer: &Tracer) -> String {
    tracer
        .decisions()
        .iter()
        .map(|d| format!("{}={}", d.path, d.tier.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    copytrace::trace::loader::require_root()?;
    if !args.command.is_empty() && !args.pids.is_empty() {
        bail!("give either -p PID or a command after --, not both");
    }
    if args.interval.is_some_and(|i| i.is_zero()) {
        bail!("--interval must be greater than zero");
    }
    if args.sample == 0 {
        bail!("--sample must be at least 1");
    }
    for p in [&args.json, &args.csv, &args.perfetto]
        .into_iter()
        .flatten()
    {
        super::check_writable(p)?;
    }
    let cgroup = args
        .cgroup
        .as_ref()
        .map(cgroup_id)
        .transpose()?
        .unwrap_or(0);
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
        cgroup_id: cgroup,
        include_self: false,
        best_tier: args.best_tier,
        sample_every: if args.perfetto.is_some() {
            args.sample
        } else {
            0
        },
        floor: args.floor,
        ..Default::default()
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
    eprintln!(
        "copytrace: attached ({}); tracing {who}",
        plan_line(&tracer)
    );
    // Lets the cleanup test prove that a panic leaves no program behind.
    if std::env::var_os("COPYTRACE_TEST_PANIC_AFTER_ATTACH").is_some() {
        panic!("panic requested by COPYTRACE_TEST_PANIC_AFTER_ATTACH");
    }
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let started = Instant::now();
    if let Some(c) = child.as_mut() {
        c.release()?;
    }

    let mut comms = Comms::default();
    let want_comms = args.threads || args.perfetto.is_some();
    let mut spans: Vec<SpanEvent> = Vec::new();
    let mut intervals = Vec::new();
    let mut exit_status = None;
    let mut last = tracer.snapshot()?;
    let cost_start = (tracer.cost_reading(), traced_cpu(&pids, child.is_some()));
    // The traced processes' CPU time, last read while they were alive (they may exit first).
    let mut cpu_seen = cost_start.1;
    let mut next_interval = args.interval.map(|i| started + i);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        // Only given processes can vanish before the end (a command is reaped; the whole
        // machine stays): read theirs while they live.
        if child.is_none() && !pids.is_empty() {
            cpu_seen = traced_cpu(&pids, false).or(cpu_seen);
        }
        tracer.flush_logs();
        if spans.len() < MAX_SPANS {
            tracer.drain_spans(&mut spans);
        }
        if want_comms {
            // Threads may be short-lived: learn their names while they exist.
            comms.refresh(&tracer.snapshot()?);
        }
        if let Some(c) = child.as_mut() {
            if let Some(s) = c.try_wait()? {
                exit_status = Some(s);
                break;
            }
        } else if !pids.is_empty() && !pids.iter().any(|p| process::alive(*p)) {
            break;
        }
        if stop.load(Ordering::SeqCst) || args.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if let (Some(at), Some(every)) = (next_interval, args.interval)
            && Instant::now() >= at
        {
            let now = tracer.snapshot()?;
            let end_s = started.elapsed().as_secs_f64();
            let delta = now.since(&last);
            println!("--- interval ending at {end_s:.3} s ---");
            print!("{}", render::breakdown(&delta));
            intervals.push(Interval {
                end_s,
                syscalls: delta.syscalls(),
            });
            last = now;
            next_interval = Some(at + every);
        }
    }
    let elapsed = started.elapsed();
    let counts_end = tracer.cost_reading();
    let straddling = tracer.disarm()?;
    let mut snap = tracer.snapshot()?;
    snap.counters.straddling_calls = straddling as u64;
    tracer.flush_logs();
    tracer.drain_spans(&mut spans);
    spans.truncate(MAX_SPANS);
    if want_comms {
        comms.refresh(&snap);
    }
    let decisions = tracer.decisions().to_vec();
    let tracer_cost = tracer.cost_between(&cost_start.0, &counts_end);
    drop(tracer);
    if let Some(c) = child.as_mut()
        && exit_status.is_none()
    {
        // Stopped by Ctrl-C/SIGTERM or --duration while the command still runs: end it like
        // `timeout` would, and reap it.
        exit_status = Some(c.terminate()?);
    }
    let cpu_end = traced_cpu(&pids, child.is_some()).or(cpu_seen);
    let tracer_cost =
        tracer_cost.with_cpu(cost_start.1.zip(cpu_end).map(|(a, b)| b.saturating_sub(a)));

    let breakdown = Breakdown::compute(&snap, &decisions);
    println!("copytrace: traced {who} for {:.3} s", elapsed.as_secs_f64());
    print!("{}", render::breakdown(&snap));
    println!();
    print!("{}", breakdown.render());
    println!("{}", tracer_cost.line());
    let threads = if args.threads {
        let rows = export::threads(&snap, |t| comms.get(t));
        let mut t = Table::new([
            "tid",
            "comm",
            "syscall",
            "family",
            "calls",
            "bytes",
            "errors",
            "total time",
        ])
        .left(&[1, 2, 3]);
        for r in &rows {
            for s in &r.syscalls {
                t.row([
                    r.tid.to_string(),
                    r.comm.clone(),
                    s.name.clone(),
                    s.family.clone(),
                    s.calls.to_string(),
                    s.bytes.to_string(),
                    s.errors.to_string(),
                    copytrace::table::ns(s.total_ns),
                ]);
            }
        }
        println!();
        print!("{}", t.render());
        rows
    } else {
        Vec::new()
    };

    if let Some(p) = &args.json {
        let doc = TraceDocument {
            schema: TRACE_SCHEMA.into(),
            schema_version: TRACE_SCHEMA_VERSION,
            copytrace_version: env!("CARGO_PKG_VERSION").into(),
            kernel: features::kernel_release(),
            started_at,
            duration_s: elapsed.as_secs_f64(),
            target: Target {
                command: (!args.command.is_empty()).then(|| args.command.clone()),
                pids: pids.clone(),
            },
            plan: decisions.clone(),
            syscalls: snap.syscalls(),
            socket: {
                let mut v = snap.socket(copytrace_common::path::SOCK_SEND);
                v.extend(snap.socket(copytrace_common::path::SOCK_RECV));
                v
            },
            breakdown: breakdown.clone(),
            threads: threads.clone(),
            intervals,
            counters: snap.counters,
            skipped_runs_by_program: snap.skipped.clone(),
            spans: args.perfetto.as_ref().map(|_| SpanInfo {
                sample_every: args.sample,
                sampled: spans.len(),
                written: spans.len(),
            }),
            tracer_cost: Some(tracer_cost.clone()),
        };
        let mut v = serde_json::to_vec_pretty(&doc)?;
        v.push(b'\n');
        write_atomic(p, &v)?;
        println!("wrote {}", p.display());
    }
    if let Some(p) = &args.csv {
        write_atomic(p, &export::csv(&snap)?)?;
        println!("wrote {}", p.display());
    }
    if let Some(p) = &args.perfetto {
        write_atomic(p, &export::perfetto(&spans, |t| comms.get(t))?)?;
        println!(
            "wrote {} ({} sampled calls{}; open it in ui.perfetto.dev)",
            p.display(),
            spans.len(),
            if snap.counters.ringbuf_full > 0 {
                format!(", {} dropped: ring buffer full", snap.counters.ringbuf_full)
            } else {
                String::new()
            }
        );
    }
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

use std::{
    net::ToSocketAddrs,
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, bail};
use copytrace::{
    bench::{
        Mode, Pattern, Verify, parse_size,
        results::{
            self, BenchDocument, ConfigEcho, HardwareCounters, Host, SCHEMA, SCHEMA_VERSION,
        },
        sweep::{self, Cell, CellHook, Env, FaultInjection, Plan, Topology},
        tracing::TraceHook,
        uring,
    },
    counters, features,
};

/// The original study's grid.
const DEFAULT_SIZES: &[&str] = &["64", "1K", "4K", "16K", "64K", "256K", "1M"];
const DEFAULT_THREADS: &[usize] = &[1, 2, 4, 8];
const QUICK_SIZES: &[&str] = &["64", "4K", "64K", "1M"];
const QUICK_THREADS: &[usize] = &[1, 2];

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyArg {
    /// Both ends in this process over 127.0.0.1.
    Loopback,
    /// Two network namespaces joined by a veth pair (created and removed by copytrace; root).
    Netns,
    /// Two interfaces of this host joined by a wire (`--nics SENDER,RECEIVER`), each moved into
    /// a namespace of copytrace's for the run and moved back after (root).
    Nics,
}

#[derive(clap::Args)]
pub struct Args {
    /// Sender modes to run: two-copy, one-copy, zero-copy (MSG_ZEROCOPY), sendfile (from a
    /// tmpfs file), uring-send and uring-send-zc (io_uring SEND / SEND_ZC).
    #[arg(long, value_delimiter = ',', default_values = ["two-copy", "one-copy", "zero-copy"])]
    modes: Vec<Mode>,
    /// io_uring modes: messages submitted per io_uring_enter, as one linked chain.
    #[arg(long, default_value_t = copytrace::bench::zerocopy::DEFAULT_DEPTH, value_name = "N")]
    uring_depth: usize,
    /// TOTAL message sizes (each message is 8 heap fields of size/8 bytes): 64, 4K, 64KiB, 1M…
    /// K/M/G are binary (1024), kB/MB/GB decimal. Default: 64,1K,4K,16K,64K,256K,1M.
    #[arg(long, value_delimiter = ',', value_name = "SIZES")]
    sizes: Option<Vec<String>>,
    /// Connection counts (one sender thread and one receiver thread each). Default: 1,2,4,8.
    #[arg(long, value_delimiter = ',', value_name = "N")]
    threads: Option<Vec<usize>>,
    /// Patterns: stream (throughput) and/or rr (request/response latency).
    #[arg(long, value_delimiter = ',', default_values = ["stream", "rr"])]
    patterns: Vec<Pattern>,
    /// Measured time per run. Default 2s (0.2s with --quick).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Unmeasured time before each run's window. Default 500ms (80ms with --quick).
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// Runs per cell, for the mean and 95% confidence interval (drawn from 3 on). Default 3.
    #[arg(long)]
    repeat: Option<usize>,
    /// A small sweep that finishes in under a minute: sizes 64,4K,64K,1M, threads 1,2.
    #[arg(long)]
    quick: bool,
    /// Where the receiver runs.
    #[arg(long, value_enum, default_value = "loopback")]
    topology: TopologyArg,
    /// With `--topology nics`: the sender's and the receiver's interface, joined by a wire,
    /// down or without addresses (they are moved into copytrace's namespaces and addressed
    /// from 198.18.0.0/24).
    #[arg(long, value_delimiter = ',', value_name = "IF_A,IF_B")]
    nics: Option<Vec<String>>,
    /// Run against `copytrace serve` on another host instead of a local receiver.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "topology")]
    connect: Option<String>,
    /// Port for the local receiver (default: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write all records as JSON (schema copytrace.bench v1).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write all records as CSV.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// How much of every message the receiver checks: `stamps` (the 8-byte stamp of every
    /// field, which catches reordering and a zero-copy buffer reused too early) or `full`
    /// (every byte, a second pass over the data on the receiving CPU).
    #[arg(long, value_enum, default_value = "stamps")]
    verify: Verify,
    /// Attach the eBPF tracer and record where each run's bytes went (default when root).
    #[arg(long, overrides_with = "no_trace")]
    trace: bool,
    /// Do not attach the tracer.
    #[arg(long, overrides_with = "trace")]
    no_trace: bool,

    /// Test only: the zero-copy sender reuses its buffer before completion.
    #[arg(long, hide = true)]
    fault_zc_reuse_early: bool,
    /// Test only: the receiver waits this long before reading.
    #[arg(long, hide = true, value_parser = humantime::parse_duration)]
    fault_server_read_delay: Option<Duration>,
    /// Test only: SO_RCVBUF of the receiver.
    #[arg(long, hide = true)]
    fault_server_rcvbuf: Option<u32>,
    /// net.core.optmem_max in both namespaces (netns topology): the per-socket budget for
    /// pending zero-copy notifications; small values provoke ENOBUFS.
    #[arg(long, value_name = "BYTES")]
    optmem_max: Option<u32>,
}

pub struct Parsed {
    pub plan: Plan,
    pub topology: Topology,
    pub faults: FaultInjection,
    /// Modes left out because this machine refuses them, one line each.
    pub skipped: Vec<String>,
}

/// The modes this machine can run, and a line for each it cannot (io_uring refused by the
/// kernel or `kernel.io_uring_disabled`). The rest of the sweep runs without them.
fn runnable_modes(modes: &[Mode]) -> (Vec<Mode>, Vec<String>) {
    let (mut run, mut skipped) = (Vec::new(), Vec::new());
    for &m in modes {
        match m.uring().then(|| uring::available(m.zero_copy())) {
            Some(Err(why)) => skipped.push(format!("skipping mode {}: {why}", m.as_str())),
            _ => run.push(m),
        }
    }
    (run, skipped)
}

pub fn parse(args: &Args) -> anyhow::Result<Parsed> {
    let sizes: Vec<usize> = match &args.sizes {
        Some(v) => v
            .iter()
            .map(|s| parse_size(s))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?,
        None => (if args.quick {
            QUICK_SIZES
        } else {
            DEFAULT_SIZES
        })
        .iter()
        .map(|s| parse_size(s).expect("built-in sizes parse"))
        .collect(),
    };
    let threads = args.threads.clone().unwrap_or_else(|| {
        (if args.quick {
            QUICK_THREADS
        } else {
            DEFAULT_THREADS
        })
        .to_vec()
    });
    sweep::validate(&sizes, &threads).map_err(anyhow::Error::msg)?;
    // At least 3 even with --quick: fewer make no confidence interval worth drawing.
    let repeat = args.repeat.unwrap_or(3);
    if repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    let duration = args.duration.unwrap_or(if args.quick {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(2)
    });
    if duration.is_zero() {
        bail!("--duration must be greater than zero");
    }
    let warmup = args.warmup.unwrap_or(if args.quick {
        Duration::from_millis(80)
    } else {
        Duration::from_millis(500)
    });
    let topology = match (&args.connect, args.topology) {
        (Some(hp), _) => Topology::Remote(
            hp.to_socket_addrs()
                .with_context(|| format!("cannot resolve {hp}"))?
                .next()
                .with_context(|| format!("{hp} resolves to no address"))?,
        ),
        (None, TopologyArg::Loopback) => Topology::Loopback,
        (None, TopologyArg::Netns) => Topology::Netns,
        (None, TopologyArg::Nics) => match args.nics.as_deref() {
            Some([a, b]) => Topology::Nics(a.clone(), b.clone()),
            _ => bail!("--topology nics needs --nics IF_A,IF_B: two interfaces joined by a wire"),
        },
    };
    if args.nics.is_some() && !matches!(topology, Topology::Nics(..)) {
        bail!("--nics goes with --topology nics");
    }
    if args.optmem_max.is_some() && topology != Topology::Netns {
        bail!("--optmem-max needs --topology netns (it is set in copytrace's own namespaces only)");
    }
    if !(1..=4096).contains(&args.uring_depth) {
        bail!(
            "--uring-depth {} is out of range: must be between 1 and 4096",
            args.uring_depth
        );
    }
    let (modes, skipped) = runnable_modes(&args.modes);
    if modes.is_empty() && !skipped.is_empty() {
        bail!("nothing to run: {}", skipped.join("; "));
    }
    let mut cells = Vec::new();
    for &pattern in &args.patterns {
        for &mode in &modes {
            for &threads in &threads {
                for &size in &sizes {
                    cells.push(Cell {
                        mode,
                        pattern,
                        size,
                        threads,
                    });
                }
            }
        }
    }
    if cells.is_empty() {
        bail!("nothing to run: no modes or no patterns");
    }
    Ok(Parsed {
        plan: Plan {
            cells,
            repeat,
            warmup,
            duration,
        },
        topology,
        faults: FaultInjection {
            zerocopy_reuse_early: args.fault_zc_reuse_early,
            server_read_delay_ms: args
                .fault_server_read_delay
                .map_or(0, |d| d.as_millis() as u64),
            server_rcvbuf: args.fault_server_rcvbuf,
            optmem_max: args.optmem_max,
        },
        skipped,
    })
}

/// The values in first-seen order, each once.
fn distinct<T: PartialEq>(values: impl Iterator<Item = T>) -> Vec<T> {
    values.fold(Vec::new(), |mut v, x| {
        if !v.contains(&x) {
            v.push(x);
        }
        v
    })
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Run a sweep (traced or not) and produce the document (not yet written).
pub fn sweep_document(
    args: &Args,
    parsed: Parsed,
    stop: &Arc<AtomicBool>,
    trace: bool,
) -> anyhow::Result<BenchDocument> {
    let started_at = now_rfc3339();
    let hw = counters::hardware_available();
    let features = if copytrace::trace::loader::require_root().is_ok() {
        features::probe_features()?.0
    } else {
        vec![
            features::software_events_feature(),
            features::hardware_pmu_feature(),
        ]
    };
    let mut env = Env::new(
        parsed.topology.clone(),
        args.port,
        hw.is_ok(),
        args.verify,
        parsed.faults,
    )?;
    env.uring_depth = args.uring_depth;
    // Every connection thread opens these; fail here, once and clearly, if they cannot be.
    counters::ThreadCounters::open(false)?;
    let mut hook: Box<dyn CellHook> = if trace {
        Box::new(TraceHook::new(&parsed.topology).context("preparing the tracer")?)
    } else {
        Box::new(sweep::NoHook)
    };
    let plan = &parsed.plan;
    let bar = indicatif::ProgressBar::new(plan.runs(hook.traced_pass()) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} ETA {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix("bench");
    let mut progress = |k: usize, _n: usize, label: &str| {
        bar.set_position(k as u64);
        bar.set_message(label.to_string());
    };
    let (records, complete) = sweep::run_sweep(&env, plan, stop, hook.as_mut(), &mut progress)?;
    bar.finish_and_clear();
    let trace_plan = hook.decisions();
    drop(hook);
    drop(env);

    let mut notes = vec![
        "size is the total message size; each message is 8 separately allocated fields of \
         size/8 bytes"
            .to_string(),
        "throughput is decimal Gbit/s over each connection's measured wall time, summed over \
         connections; rx/tx compares the receiver's and the sender's view"
            .to_string(),
        "CPU time is the sender and receiver threads' own CPU time with kernel time included; \
         softirq work done in ksoftirqd is not attributed"
            .to_string(),
    ];
    if let Err(reason) = &hw {
        notes.push(format!("hardware counters unavailable: {reason}"));
    }
    if !complete {
        notes.push("interrupted: only the runs that completed are recorded".into());
    }
    notes.extend(parsed.skipped.iter().cloned());
    if plan.cells.iter().any(|c| c.mode.uring()) {
        notes.push(format!(
            "io_uring modes: up to {} messages per io_uring_enter, as one linked chain",
            args.uring_depth
        ));
    }
    if let Some(plan) = &trace_plan {
        notes.push(format!(
            "traced with eBPF: {}",
            plan.iter()
                .map(|d| format!("{}={}", d.path, d.tier.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let summary = BenchDocument::summarize(&records);
    Ok(BenchDocument {
        schema: SCHEMA.into(),
        schema_version: SCHEMA_VERSION,
        complete,
        copytrace_version: env!("CARGO_PKG_VERSION").into(),
        started_at,
        finished_at: now_rfc3339(),
        host: Host::detect(),
        features,
        trace_plan,
        hardware_counters: HardwareCounters {
            available: hw.is_ok(),
            reason: hw.err(),
        },
        config: ConfigEcho {
            modes: distinct(plan.cells.iter().map(|c| c.mode)),
            uring_depth: plan
                .cells
                .iter()
                .any(|c| c.mode.uring())
                .then_some(args.uring_depth),
            sizes: distinct(plan.cells.iter().map(|c| c.size)),
            threads: distinct(plan.cells.iter().map(|c| c.threads)),
            patterns: args.patterns.clone(),
            duration_s: plan.duration.as_secs_f64(),
            warmup_s: plan.warmup.as_secs_f64(),
            repeat: plan.repeat,
            topology: parsed.topology.label(),
            size_meaning: "total message size in bytes, split evenly over 8 fields".into(),
            trace,
            verify: args.verify,
        },
        records,
        summary,
        notes,
    })
}

/// Print the summary and write the requested files.
pub fn emit(args: &Args, doc: &BenchDocument) -> anyhow::Result<ExitCode> {
    println!(
        "copytrace bench: {} runs on {} ({}), message size = total of 8 fields",
        doc.records.len(),
        doc.config.topology,
        doc.host.kernel
    );
    print!("{}", results::render_summary(doc));
    for n in &doc.notes {
        println!("note: {n}");
    }
    if let Some(p) = &args.json {
        copytrace::files::write_atomic(p, &results::to_json(doc)?)?;
        println!("wrote {}", p.display());
    }
    if let Some(p) = &args.csv {
        copytrace::files::write_atomic(p, &results::to_csv(doc)?)?;
        println!("wrote {}", p.display());
    }
    let corrupt: Vec<_> = doc.records.iter().filter(|r| !r.integrity_ok()).collect();
    if let Some(r) = corrupt.first() {
        eprintln!(
            "copytrace: error: integrity check FAILED in {} run(s); first: {} {} {} ×{}: {}",
            corrupt.len(),
            r.mode.as_str(),
            r.pattern.as_str(),
            r.size,
            r.threads,
            r.integrity
        );
        return Ok(ExitCode::from(3));
    }
    let unchecked: Vec<_> = doc
        .records
        .iter()
        .filter(|r| r.trace.as_ref().is_some_and(|t| !t.cross_check.ok))
        .collect();
    if let Some(r) = unchecked.first() {
        let c = &r.trace.as_ref().expect("filtered").cross_check;
        eprintln!(
            "copytrace: error: trace cross-check FAILED in {} run(s); first: {} {} {} ×{}: \
             benchmark sent {} bytes, tracer counted {}",
            unchecked.len(),
            r.mode.as_str(),
            r.pattern.as_str(),
            r.size,
            r.threads,
            c.expected_send_bytes,
            c.traced_send_bytes
        );
        return Ok(ExitCode::from(4));
    }
    if !doc.complete {
        eprintln!("copytrace: interrupted; results are marked incomplete");
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let parsed = parse(&args)?;
    for line in &parsed.skipped {
        eprintln!("copytrace: {line}");
    }
    for p in args.json.iter().chain(args.csv.iter()) {
        super::check_writable(p)?;
    }
    let root = copytrace::trace::loader::require_root().is_ok();
    if args.trace && !root {
        bail!("--trace needs root (it loads eBPF programs); run with sudo or pass --no-trace");
    }
    let trace = root && !args.no_trace;
    let stop = super::stop_flag()?;
    let doc = sweep_document(&args, parsed, &stop, trace)?;
    emit(&args, &doc)
}

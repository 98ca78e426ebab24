//! Benchmark results: the per-run records, per-cell summaries, and their JSON/CSV/table forms.
//!
//! # JSON schema `copytrace.bench`, version 1
//!
//! ```text
//! {
//!   "schema": "copytrace.bench", "schema_version": 1,
//!   "complete": bool,            // false: interrupted (Ctrl-C); records hold the cells done
//!   "copytrace_version", "started_at", "finished_at",   // RFC 3339
//!   "host": {hostname, kernel, cpu_model, cpus, memory_bytes},
//!   "features": [{name, status, detail}],               // `copytrace probe` (when root)
//!   "hardware_counters": {available, reason},
//!   "config": {modes, sizes, threads, patterns, duration_s, warmup_s, repeat, topology,
//!              size_meaning},
//!   "records": [Record],         // one per mode × pattern × size × threads × repeat
//!   "summary": [CellSummary],    // one per mode × pattern × size × threads: mean, 95 % CI
//!   "notes": [string]
//! }
//! ```
//!
//! Units: sizes and byte counts in bytes; `size` is the **total** message size, split evenly
//! over 8 fields. Throughput in decimal Gbit/s (1e9 bit/s) over the measured wall time of each
//! connection, summed over connections; latencies in ns; CPU time in seconds; "per GB" is per
//! 1e9 bytes sent.
use std::{fs, io};

use serde::{Deserialize, Serialize};

use crate::{
    bench::{Mode, Pattern, Verify, sender::ZeroCopyStats, size_label, stats::Estimate},
    counters::CounterValues,
    features::Feature,
    table::Table,
    trace::{Breakdown, PathDecision, Summary},
};

pub const SCHEMA: &str = "copytrace.bench";
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Throughput {
    /// Bytes of the messages inside the measured window.
    pub bytes: u64,
    pub messages: u64,
    /// Mean measured wall time per connection.
    pub seconds: f64,
    /// Sum over connections of bytes × 8 / measured seconds / 1e9.
    pub gbps: f64,
    pub messages_per_s: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub min_ns: u64,
    pub mean_ns: f64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    /// (ns, cumulative fraction) points of the distribution, from the HDR histogram.
    pub cdf: Vec<(u64, f64)>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Counters {
    pub sender: CounterValues,
    pub receiver: CounterValues,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Derived {
    /// Sender + receiver CPU seconds (thread CPU time, kernel included) per 1e9 bytes sent.
    pub cpu_s_per_gb: Option<f64>,
    pub sender_cpu_s_per_gb: Option<f64>,
    pub receiver_cpu_s_per_gb: Option<f64>,
    pub context_switches_per_gb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycles_per_byte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_misses_per_gb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llc_load_misses_per_gb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1d_load_misses_per_gb: Option<f64>,
}

impl Derived {
    pub fn compute(c: &Counters, bytes: u64) -> Derived {
        if bytes == 0 {
            return Derived::default();
        }
        let gb = bytes as f64 / 1e9;
        let mut total = c.sender.clone();
        total.add(&c.receiver);
        let per_gb = |v: Option<u64>| v.map(|v| v as f64 / gb);
        Derived {
            cpu_s_per_gb: Some(total.task_clock_ns as f64 / 1e9 / gb),
            sender_cpu_s_per_gb: Some(c.sender.task_clock_ns as f64 / 1e9 / gb),
            receiver_cpu_s_per_gb: Some(c.receiver.task_clock_ns as f64 / 1e9 / gb),
            context_switches_per_gb: Some(total.context_switches as f64 / gb),
            ipc: match (total.instructions, total.cycles) {
                (Some(i), Some(c)) if c > 0 => Some(i as f64 / c as f64),
                _ => None,
            },
            cycles_per_byte: total.cycles.map(|c| c as f64 / bytes as f64),
            cache_misses_per_gb: per_gb(total.cache_misses),
            llc_load_misses_per_gb: per_gb(total.llc_load_misses),
            l1d_load_misses_per_gb: per_gb(total.l1d_load_misses),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ZeroCopySummary {
    #[serde(flatten)]
    pub stats: ZeroCopyStats,
    /// Fraction of completed bytes the kernel copied anyway (SO_EE_CODE_ZEROCOPY_COPIED, or
    /// io_uring's IORING_NOTIF_USAGE_ZC_COPIED); absent when the kernel did not say.
    pub copied_fraction: Option<f64>,
    /// Why, when more than 5 % was copied (see `bench/cause.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

/// One run of one cell.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub mode: Mode,
    pub pattern: Pattern,
    /// Total message size in bytes (8 fields of size/8).
    pub size: usize,
    pub threads: usize,
    /// 0-based repeat index (the traced run comes after the repeats).
    pub repeat: usize,
    /// This run had the eBPF tracer attached: its breakdown is in `trace`, and it is left out
    /// of the summary statistics (tracing costs throughput).
    #[serde(default)]
    pub traced: bool,
    pub sender: Throughput,
    pub receiver: Throughput,
    /// Receiver Gbit/s ÷ sender Gbit/s: the two sides must agree.
    pub rx_tx_ratio: Option<f64>,
    /// Stream: the longest any received byte waited in its socket for the receiver, in ns (the
    /// newest byte of each read; the most over connections). A receiver off the CPU with its
    /// buffer full at the window's end holds the sender's last bytes back after the sender's
    /// send returned: its window is then longer than the sender's by about this much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver_wait_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// send/sendmsg calls made by the sending side (all messages, warmup included).
    pub send_syscalls: u64,
    /// Bytes those calls accepted.
    pub send_bytes: u64,
    /// Rr: requests the clients sent (16 bytes each), warmup included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    /// Control-protocol bytes sent by the clients (hellos) and by the server (reports).
    pub control_bytes_client: u64,
    pub control_bytes_server: u64,
    /// TCP retransmissions of the client connections (TCP_INFO `tcpi_bytes_retrans`; in a
    /// stream these carry the messages). A retransmitted zero-copy segment is copied later
    /// again, so traced deferred copies may exceed the bytes sent by up to this much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retransmitted_bytes: Option<u64>,
    pub counters: Counters,
    pub derived: Derived,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zerocopy: Option<ZeroCopySummary>,
    /// io_uring modes: how the ring was driven (summed over connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uring: Option<crate::bench::sender::UringStats>,
    /// "ok", or what the byte-by-byte verification found.
    pub integrity: String,
    /// Where the bytes went, from the eBPF tracer (when tracing was on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<CellTrace>,
}

/// The tracer's view of one run (the whole run: warmup and drain included).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellTrace {
    pub breakdown: Breakdown,
    pub syscalls: Vec<Summary>,
    /// What watching this run cost (the tracer's own kernel-side time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracer_cost: Option<crate::trace::TracerCost>,
    /// The tracer's send-syscall bytes against what the benchmark itself sent.
    pub cross_check: CrossCheck,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CrossCheck {
    /// Bytes this process's send calls accepted by the benchmark's own account: data
    /// messages, rr requests and control frames (the server's share only when it is local).
    pub expected_send_bytes: u64,
    /// Bytes of send-type system calls the tracer counted in this process.
    pub traced_send_bytes: u64,
    pub ok: bool,
}

impl Record {
    pub fn integrity_ok(&self) -> bool {
        self.integrity == "ok"
    }

    /// Sender-side throughput in Gbit/s.
    pub fn gbps(&self) -> f64 {
        self.sender.gbps
    }
}

/// Mean and 95 % CI over the repeats of one cell.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellSummary {
    pub mode: Mode,
    pub pattern: Pattern,
    pub size: usize,
    pub threads: usize,
    pub repeats: usize,
    pub sender_gbps: Option<Estimate>,
    pub receiver_gbps: Option<Estimate>,
    pub messages_per_s: Option<Estimate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ns: Option<Estimate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ns: Option<Estimate>,
    pub cpu_s_per_gb: Option<Estimate>,
    pub context_switches_per_gb: Option<Estimate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copied_fraction: Option<Estimate>,
    pub integrity_ok: bool,
    /// Sender Gbit/s of the traced run, and 1 − traced ÷ mean untraced: what tracing cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traced_gbps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_overhead: Option<f64>,
}

impl CellSummary {
    pub fn from_records(all: &[&Record]) -> Option<CellSummary> {
        let rs: Vec<&Record> = all.iter().copied().filter(|r| !r.traced).collect();
        let traced = all.iter().find(|r| r.traced);
        let first = rs.first().or(traced)?;
        let est = |f: &dyn Fn(&Record) -> Option<f64>| {
            let v: Vec<f64> = rs.iter().filter_map(|r| f(r)).collect();
            crate::bench::stats::estimate(&v)
        };
        Some(CellSummary {
            mode: first.mode,
            pattern: first.pattern,
            size: first.size,
            threads: first.threads,
            repeats: rs.len(),
            sender_gbps: est(&|r| Some(r.sender.gbps)),
            receiver_gbps: est(&|r| Some(r.receiver.gbps)),
            messages_per_s: est(&|r| Some(r.sender.messages_per_s)),
            p50_ns: est(&|r| r.latency.as_ref().map(|l| l.p50_ns as f64)),
            p99_ns: est(&|r| r.latency.as_ref().map(|l| l.p99_ns as f64)),
            cpu_s_per_gb: est(&|r| r.derived.cpu_s_per_gb),
            context_switches_per_gb: est(&|r| r.derived.context_switches_per_gb),
            copied_fraction: est(&|r| r.zerocopy.as_ref().and_then(|z| z.copied_fraction)),
            integrity_ok: all.iter().all(|r| r.integrity_ok()),
            traced_gbps: traced.map(|t| t.sender.gbps),
            trace_overhead: traced.and_then(|t| {
                let n = rs.len() as f64;
                let mean = rs.iter().map(|r| r.sender.gbps).sum::<f64>() / n;
                (n > 0.0 && mean > 0.0).then(|| 1.0 - t.sender.gbps / mean)
            }),
        })
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Host {
    pub hostname: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_bytes: u64,
}

impl Host {
    pub fn detect() -> Host {
        let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        Host {
            hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
            kernel: crate::features::kernel_release(),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_else(|| "unknown".into()),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes: read("/proc/meminfo")
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HardwareCounters {
    pub available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfigEcho {
    pub modes: Vec<Mode>,
    pub sizes: Vec<usize>,
    pub threads: Vec<usize>,
    pub patterns: Vec<Pattern>,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub repeat: usize,
    pub topology: String,
    pub size_meaning: String,
    pub trace: bool,
    /// How much of each message the receiver checked (absent in older results: full).
    #[serde(default)]
    pub verify: Verify,
    /// Messages per io_uring submission, when io_uring modes ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uring_depth: Option<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchDocument {
    pub schema: String,
    pub schema_version: u32,
    pub complete: bool,
    pub copytrace_version: String,
    pub started_at: String,
    pub finished_at: String,
    pub host: Host,
    pub features: Vec<Feature>,
    pub hardware_counters: HardwareCounters,
    pub config: ConfigEcho,
    /// The tracer's attach plan (tier per kernel path), when tracing was on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_plan: Option<Vec<PathDecision>>,
    pub records: Vec<Record>,
    pub summary: Vec<CellSummary>,
    pub notes: Vec<String>,
}

impl BenchDocument {
    /// Summaries of every cell present in `records`, in record order.
    pub fn summarize(records: &[Record]) -> Vec<CellSummary> {
        let mut keys: Vec<(Mode, Pattern, usize, usize)> = Vec::new();
        for r in records {
            let k = (r.mode, r.pattern, r.size, r.threads);
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        keys.into_iter()
            .filter_map(|k| {
                let rs: Vec<&Record> = records
                    .iter()
                    .filter(|r| (r.mode, r.pattern, r.size, r.threads) == k)
                    .collect();
                CellSummary::from_records(&rs)
            })
            .collect()
    }
}

pub fn to_json(doc: &BenchDocument) -> io::Result<Vec<u8>> {
    let mut v = serde_json::to_vec_pretty(doc).map_err(io::Error::other)?;
    v.push(b'\n');
    Ok(v)
}

/// One CSV row per record, flattened.
pub fn to_csv(doc: &BenchDocument) -> io::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "mode",
        "pattern",
        "size",
        "threads",
        "repeat",
        "sender_gbps",
        "receiver_gbps",
        "messages_per_s",
        "sender_bytes",
        "receiver_bytes",
        "p50_ns",
        "p90_ns",
        "p99_ns",
        "p999_ns",
        "max_ns",
        "send_syscalls",
        "cpu_s_per_gb",
        "context_switches_per_gb",
        "sender_task_clock_ns",
        "receiver_task_clock_ns",
        "copied_fraction",
        "enobufs",
        "integrity",
    ])?;
    let o = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let u = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    for r in &doc.records {
        let l = r.latency.as_ref();
        let z = r.zerocopy.as_ref();
        w.write_record([
            r.mode.as_str().to_string(),
            r.pattern.as_str().to_string(),
            r.size.to_string(),
            r.threads.to_string(),
            r.repeat.to_string(),
            r.sender.gbps.to_string(),
            r.receiver.gbps.to_string(),
            r.sender.messages_per_s.to_string(),
            r.sender.bytes.to_string(),
            r.receiver.bytes.to_string(),
            u(l.map(|l| l.p50_ns)),
            u(l.map(|l| l.p90_ns)),
            u(l.map(|l| l.p99_ns)),
            u(l.map(|l| l.p999_ns)),
            u(l.map(|l| l.max_ns)),
            r.send_syscalls.to_string(),
            o(r.derived.cpu_s_per_gb),
            o(r.derived.context_switches_per_gb),
            r.counters.sender.task_clock_ns.to_string(),
            r.counters.receiver.task_clock_ns.to_string(),
            o(z.and_then(|z| z.copied_fraction)),
            u(z.map(|z| z.stats.enobufs)),
            r.integrity.clone(),
        ])?;
    }
    w.into_inner().map_err(|e| io::Error::other(e.to_string()))
}

fn est(e: &Option<Estimate>, scale: f64, digits: usize) -> String {
    match e {
        None => "-".into(),
        Some(e) => match e.ci95 {
            Some(ci) => format!(
                "{:.digits$} ±{:.digits$}",
                e.mean * scale,
                ci * scale,
                digits = digits
            ),
            None => format!("{:.digits$}", e.mean * scale, digits = digits),
        },
    }
}

/// The human summary table.
pub fn render_summary(doc: &BenchDocument) -> String {
    let mut t = Table::new([
        "mode",
        "pattern",
        "size",
        "thr",
        "Gbit/s (tx, ±95%)",
        "rx/tx",
        "msg/s",
        "p50 µs",
        "p99 µs",
        "CPU s/GB",
        "copied",
        "trace cost",
        "integrity",
    ])
    .left(&[1, 12]);
    for s in &doc.summary {
        let rxtx = match (&s.sender_gbps, &s.receiver_gbps) {
            (Some(tx), Some(rx)) if tx.mean > 0.0 => format!("{:.3}", rx.mean / tx.mean),
            _ => "-".into(),
        };
        t.row([
            s.mode.as_str().to_string(),
            s.pattern.as_str().to_string(),
            size_label(s.size),
            s.threads.to_string(),
            est(&s.sender_gbps, 1.0, 3),
            rxtx,
            s.messages_per_s
                .as_ref()
                .map_or("-".into(), |e| format!("{:.0}", e.mean)),
            est(&s.p50_ns, 1e-3, 1),
            est(&s.p99_ns, 1e-3, 1),
            est(&s.cpu_s_per_gb, 1.0, 2),
            s.copied_fraction
                .as_ref()
                .map_or("-".into(), |e| format!("{:.0}%", e.mean * 100.0)),
            s.trace_overhead
                .map_or("-".into(), |o| format!("{:.0}%", o * 100.0)),
            if s.integrity_ok { "ok" } else { "CORRUPT" }.to_string(),
        ]);
    }
    t.render()
}

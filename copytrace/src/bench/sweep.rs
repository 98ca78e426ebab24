//! Running cells (mode × pattern × size × threads) and sweeps of them.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::{
        Arc, Barrier, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

use crate::{
    bench::{
        Mode, Pattern, Verify, cause,
        client::{self, ConnResult, ConnSpec, Window},
        message::MIN_SIZE,
        netns::{self, NetnsPair},
        results::{Counters, Derived, Latency, Record, Throughput, ZeroCopySummary},
        sender::{UringStats, ZeroCopyStats},
        server::{self, Server},
        zerocopy::ZeroCopyOptions,
    },
    counters::CounterValues,
};

pub const MAX_SIZE: usize = 1 << 30;
pub const MAX_THREADS: usize = 1024;

pub use super::topology::Topology;

/// Knobs the tests use to provoke failure modes on purpose.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultInjection {
    /// Zero-copy sender rewrites its only buffer without waiting for completions.
    pub zerocopy_reuse_early: bool,
    /// The server sleeps this long before reading (a slow receiver).
    pub server_read_delay_ms: u64,
    /// SO_RCVBUF on the server side.
    pub server_rcvbuf: Option<u32>,
    /// `net.core.optmem_max` in both namespaces (netns topology only).
    pub optmem_max: Option<u32>,
}

/// One cell to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    pub mode: Mode,
    pub pattern: Pattern,
    pub size: usize,
    pub threads: usize,
}

/// Validate user input before anything starts (no partial work on bad input).
pub fn validate(sizes: &[usize], threads: &[usize]) -> Result<(), String> {
    for &s in sizes {
        if s == 0 || s > MAX_SIZE {
            return Err(format!(
                "message size {s} is out of range: must be between {MIN_SIZE} bytes and 1 GiB"
            ));
        }
        if s < MIN_SIZE {
            return Err(format!(
                "message size {s} is too small: at least {MIN_SIZE} bytes (8 fields of 8 bytes)"
            ));
        }
    }
    for &t in threads {
        if t == 0 || t > MAX_THREADS {
            return Err(format!(
                "thread count {t} is out of range: must be between 1 and {MAX_THREADS}"
            ));
        }
    }
    if sizes.is_empty() || threads.is_empty() {
        return Err("nothing to run: no sizes or no thread counts".into());
    }
    Ok(())
}

/// The running environment of a sweep: the server (unless remote) and the namespaces.
pub struct Env {
    pub topology: Topology,
    pub server_addr: SocketAddr,
    pub client_netns: Option<PathBuf>,
    pub hardware_counters: bool,
    pub verify: Verify,
    pub faults: FaultInjection,
    /// io_uring modes: messages per submission.
    pub uring_depth: usize,
    // Field order matters for drop: stop the server before deleting its namespace.
    _server: Option<Server>,
    _netns: Option<NetnsPair>,
}

impl Env {
    /// Set up `topology`; `port` 0 picks a free port.
    pub fn new(
        topology: Topology,
        port: u16,
        hardware_counters: bool,
        verify: Verify,
        faults: FaultInjection,
    ) -> io::Result<Env> {
        match &topology {
            Topology::Loopback => {
                let listener =
                    server::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))?;
                let server = Server::spawn(listener)?;
                Ok(Env {
                    server_addr: server.addr(),
                    topology,
                    client_netns: None,
                    hardware_counters,
                    verify,
                    faults,
                    uring_depth: crate::bench::zerocopy::DEFAULT_DEPTH,
                    _server: Some(server),
                    _netns: None,
                })
            }
            Topology::Netns | Topology::Nics(..) => {
                let pair = match &topology {
                    Topology::Nics(a, b) => NetnsPair::with_nics(a, b)?,
                    _ => NetnsPair::create()?,
                };
                let ip = pair.server_ip();
                let listener = netns::run_in(Some(pair.server_path()), move || {
                    server::bind(SocketAddr::new(ip, port))
                })?;
                if let Topology::Nics(a, b) = &topology {
                    check_reachable(&pair, a, b)?;
                }
                if let Some(v) = faults.optmem_max {
                    for ns in [pair.client_path(), pair.server_path()] {
                        netns::sysctl_in(ns, "net.core.optmem_max", v.to_string())?;
                    }
                }
                let server = Server::spawn(listener)?;
                Ok(Env {
                    server_addr: server.addr(),
                    client_netns: Some(pair.client_path()),
                    topology,
                    hardware_counters,
                    verify,
                    faults,
                    uring_depth: crate::bench::zerocopy::DEFAULT_DEPTH,
                    _server: Some(server),
                    _netns: Some(pair),
                })
            }
            Topology::Remote(addr) => Ok(Env {
                server_addr: *addr,
                topology: topology.clone(),
                client_netns: None,
                hardware_counters,
                verify,
                faults,
                uring_depth: crate::bench::zerocopy::DEFAULT_DEPTH,
                _server: None,
                _netns: None,
            }),
        }
    }
}

/// Before measuring over two host interfaces: can the sender's side reach the receiver's? A
/// TCP handshake to a throwaway listener, from the client namespace, within 3 s.
fn check_reachable(pair: &NetnsPair, a: &str, b: &str) -> io::Result<()> {
    let ip = pair.server_ip();
    let probe = netns::run_in(Some(pair.server_path()), move || {
        std::net::TcpListener::bind(SocketAddr::new(ip, 0))
    })?;
    let addr = probe.local_addr()?;
    let (a, b) = (a.to_string(), b.to_string());
    netns::run_in(Some(pair.client_path()), move || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .map(drop)
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!(
                        "{a} cannot reach {b} (no TCP handshake from {a} to {addr} on {b} in \
                         3 s: {e}): are they joined by a wire?"
                    ),
                )
            })
    })
}

/// Run one cell: `threads` connections measuring the same window. `None` if interrupted.
pub fn run_cell(
    env: &Env,
    cell: Cell,
    repeat: usize,
    warmup: Duration,
    duration: Duration,
    stop: &Arc<AtomicBool>,
) -> io::Result<Option<Record>> {
    let n = cell.threads;
    let connected = Arc::new(Barrier::new(n + 1));
    let go = Arc::new(Barrier::new(n + 1));
    let window: Arc<OnceLock<Window>> = Arc::new(OnceLock::new());
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let mut zc = ZeroCopyOptions::for_size(cell.size);
        zc.reuse_early = env.faults.zerocopy_reuse_early;
        zc.uring_depth = env.uring_depth;
        let spec = ConnSpec {
            addr: env.server_addr,
            mode: cell.mode,
            pattern: cell.pattern,
            size: cell.size,
            conn: i as u32,
            hardware_counters: env.hardware_counters,
            verify: env.verify,
            zerocopy: zc,
            read_delay_ms: env.faults.server_read_delay_ms,
            rcvbuf: env.faults.server_rcvbuf,
        };
        let (connected, go, window, stop) =
            (connected.clone(), go.clone(), window.clone(), stop.clone());
        let ns = env.client_netns.clone();
        handles.push(
            thread::Builder::new()
                .name(format!("ct-{}-{i}", cell.mode.as_str()))
                .spawn(move || -> io::Result<ConnResult> {
                    // Whatever happens, take part in both barriers so nobody waits forever.
                    let conn = ns
                        .as_deref()
                        .map_or(Ok(()), netns::enter)
                        .and_then(|()| client::connect(&spec));
                    connected.wait();
                    go.wait();
                    let s = conn?;
                    let w = *window.get().expect("window set before go");
                    client::run(s, &spec, w, &stop)
                })?,
        );
    }
    connected.wait();
    let start = Instant::now() + Duration::from_millis(5);
    let _ = window.set(Window {
        warm_end: start + warmup,
        end: start + warmup + duration,
    });
    go.wait();
    let mut results = Vec::with_capacity(n);
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => results.push(r),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert(io::Error::other("a connection thread panicked"));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    if stop.load(Ordering::SeqCst) || results.iter().any(|r| r.interrupted) {
        return Ok(None);
    }
    let mut r = assemble(cell, repeat, &results)?;
    if let Some(z) = r.zerocopy.as_mut() {
        z.cause = cause::explain(
            &env.topology,
            env.client_netns.as_deref(),
            z.copied_fraction,
        );
    }
    Ok(Some(r))
}

fn rate(bytes: u64, messages: u64, ns: u64) -> (f64, f64) {
    if ns == 0 {
        return (0.0, 0.0);
    }
    let s = ns as f64 / 1e9;
    (bytes as f64 * 8.0 / s / 1e9, messages as f64 / s)
}

/// Sum per-connection (bytes, messages, ns) into a throughput.
fn throughput(parts: impl Iterator<Item = (u64, u64, u64)>) -> Throughput {
    let mut t = Throughput::default();
    let mut secs = Vec::new();
    for (bytes, messages, ns) in parts {
        let (g, m) = rate(bytes, messages, ns);
        t.bytes += bytes;
        t.messages += messages;
        t.gbps += g;
        t.messages_per_s += m;
        secs.push(ns as f64 / 1e9);
    }
    if !secs.is_empty() {
        t.seconds = secs.iter().sum::<f64>() / secs.len() as f64;
    }
    t
}

fn latency(hists: &[&Histogram<u64>]) -> io::Result<Option<Latency>> {
    let Some(first) = hists.first() else {
        return Ok(None);
    };
    let mut h = (*first).clone();
    for o in &hists[1..] {
        h.add(*o)
            .map_err(|e| io::Error::other(format!("merging histograms: {e}")))?;
    }
    if h.is_empty() {
        return Ok(None);
    }
    let cdf = h
        .iter_quantiles(2)
        .map(|v| (v.value_iterated_to(), v.quantile_iterated_to()))
        .collect();
    Ok(Some(Latency {
        count: h.len(),
        min_ns: h.min(),
        mean_ns: h.mean(),
        p50_ns: h.value_at_quantile(0.50),
        p90_ns: h.value_at_quantile(0.90),
        p99_ns: h.value_at_quantile(0.99),
        p999_ns: h.value_at_quantile(0.999),
        max_ns: h.max(),
        cdf,
    }))
}

fn add_zc(total: &mut Option<ZeroCopyStats>, s: Option<&ZeroCopyStats>) {
    let Some(s) = s else { return };
    let t = total.get_or_insert_with(ZeroCopyStats::default);
    t.ids += s.ids;
    t.notifications += s.notifications;
    t.zerocopy_ids += s.zerocopy_ids;
    t.copied_ids += s.copied_ids;
    t.zerocopy_bytes += s.zerocopy_bytes;
    t.copied_bytes += s.copied_bytes;
    t.enobufs += s.enobufs;
    t.pool_waits += s.pool_waits;
    t.errqueue_reads += s.errqueue_reads;
    t.unknown_ids += s.unknown_ids;
    t.unknown_bytes += s.unknown_bytes;
}

fn add_uring(total: &mut Option<UringStats>, s: Option<&UringStats>) {
    let Some(s) = s else { return };
    let t = total.get_or_insert_with(|| UringStats {
        depth: s.depth,
        fixed_buffers: true,
        usage_reported: true,
        ..UringStats::default()
    });
    t.submits += s.submits;
    t.resubmitted += s.resubmitted;
    t.fixed_buffers &= s.fixed_buffers;
    t.usage_reported &= s.usage_reported;
}

fn assemble(cell: Cell, repeat: usize, rs: &[ConnResult]) -> io::Result<Record> {
    let size = cell.size as u64;
    let mut client_counters = CounterValues::default();
    let mut server_counters = CounterValues::default();
    let (mut zc, mut uring) = (None, None);
    let (mut send_syscalls, mut send_bytes) = (0, 0);
    for r in rs {
        client_counters.add(&r.counters);
        server_counters.add(&r.report.counters);
        let sender = match cell.pattern {
            Pattern::Stream => Some(&r.sender),
            Pattern::Rr => r.report.sender.as_ref(),
        };
        if let Some(s) = sender {
            send_syscalls += s.syscalls;
            send_bytes += s.bytes;
            add_zc(&mut zc, s.zerocopy.as_ref());
            add_uring(&mut uring, s.uring.as_ref());
        }
    }
    let corruption = rs
        .iter()
        .find_map(|r| r.corruption.clone().or_else(|| r.report.corruption.clone()));
    let (sender, receiver, counters, lat) = match cell.pattern {
        Pattern::Stream => (
            throughput(rs.iter().map(|r| {
                (
                    r.measured_messages * size,
                    r.measured_messages,
                    r.measured_ns,
                )
            })),
            throughput(rs.iter().map(|r| {
                (
                    r.report.measured_bytes,
                    r.report.measured_messages,
                    r.report.measured_ns,
                )
            })),
            Counters {
                sender: client_counters,
                receiver: server_counters,
            },
            None,
        ),
        Pattern::Rr => {
            // The server sends the messages; the client receives them and times round trips.
            // Both sides count the same measured responses over the client's window.
            let rx = throughput(rs.iter().map(|r| {
                (
                    r.measured_messages * size,
                    r.measured_messages,
                    r.measured_ns,
                )
            }));
            let tx = throughput(rs.iter().map(|r| {
                (
                    r.report.measured_responses * size,
                    r.report.measured_responses,
                    r.measured_ns,
                )
            }));
            let hists: Vec<&Histogram<u64>> =
                rs.iter().filter_map(|r| r.latency.as_ref()).collect();
            (
                tx,
                rx,
                Counters {
                    sender: server_counters,
                    receiver: client_counters,
                },
                latency(&hists)?,
            )
        }
    };
    if corruption.is_none() && (sender.messages == 0 || receiver.messages == 0) {
        return Err(io::Error::other(format!(
            "{} {} {} ×{}: no message completed inside the measured window; use a longer \
             --duration",
            cell.mode.as_str(),
            cell.pattern.as_str(),
            cell.size,
            cell.threads
        )));
    }
    let derived = Derived::compute(&counters, sender.bytes);
    Ok(Record {
        mode: cell.mode,
        pattern: cell.pattern,
        size: cell.size,
        threads: cell.threads,
        repeat,
        rx_tx_ratio: (sender.gbps > 0.0).then(|| receiver.gbps / sender.gbps),
        receiver_wait_ns: (cell.pattern == Pattern::Stream)
            .then(|| rs.iter().map(|r| r.report.wait_ns).max().unwrap_or(0)),
        sender,
        receiver,
        latency: lat,
        send_syscalls,
        send_bytes,
        requests: (cell.pattern == Pattern::Rr).then(|| rs.iter().map(|r| r.requests).sum()),
        control_bytes_client: rs.iter().map(|r| r.hello_bytes).sum(),
        control_bytes_server: rs.iter().map(|r| r.report_bytes).sum(),
        retransmitted_bytes: Some(rs.iter().map(|r| r.retransmitted_bytes).sum()),
        counters,
        derived,
        zerocopy: zc.map(|stats| ZeroCopySummary {
            copied_fraction: stats.copied_fraction(),
            cause: None,
            stats,
        }),
        uring,
        traced: false,
        integrity: match corruption {
            None => "ok".into(),
            Some(c) => format!("corrupt: {c}"),
        },
        trace: None,
    })
}

/// Called around the runs of a sweep's traced pass (the tracer hooks in here).
pub trait CellHook {
    /// The tracer's attach plan, if this hook traces.
    fn decisions(&self) -> Option<Vec<crate::trace::PathDecision>> {
        None
    }
    /// Run one extra, traced run per cell after the (untraced) repeats?
    fn traced_pass(&self) -> bool {
        false
    }
    fn before(&mut self, _cell: &Cell) -> io::Result<()> {
        Ok(())
    }
    fn after(&mut self, _cell: &Cell, _record: &mut Record) -> io::Result<()> {
        Ok(())
    }
}

pub struct NoHook;
impl CellHook for NoHook {}

/// A sweep's plan: every cell, `repeat` times (repeats outermost, so slow drift of the machine
/// spreads over all cells instead of biasing some), then — when a tracer is attached — one
/// traced run per cell. Tracing costs throughput (every traced system call runs eBPF
/// programs), so the repeats that make the statistics run untraced and the traced run only
/// says where the bytes went (and, next to the repeats, what tracing cost).
pub struct Plan {
    pub cells: Vec<Cell>,
    pub repeat: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

impl Plan {
    pub fn runs(&self, traced_pass: bool) -> usize {
        self.cells.len() * (self.repeat + usize::from(traced_pass))
    }

    /// The traced run has a shorter warm-up (the connection is as warm as in the repeats) and
    /// the repeats' measured window: it is there for the breakdown, but its record must hold
    /// to the same standard (rx/tx agree), and the edges of a shorter window weigh more.
    pub fn traced_window(&self) -> (Duration, Duration) {
        (self.warmup / 2, self.duration)
    }
}

/// Run the plan; `progress(k, n, label)` is called before each run. Returns the records and
/// whether the sweep completed (false: stopped by `stop`).
pub fn run_sweep(
    env: &Env,
    plan: &Plan,
    stop: &Arc<AtomicBool>,
    hook: &mut dyn CellHook,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> io::Result<(Vec<Record>, bool)> {
    let mut records = Vec::new();
    let traced = hook.traced_pass();
    let n = plan.runs(traced);
    let mut k = 0;
    let passes = plan.repeat + usize::from(traced);
    for rep in 0..passes {
        let tracing = rep == plan.repeat;
        let (warmup, duration) = if tracing {
            plan.traced_window()
        } else {
            (plan.warmup, plan.duration)
        };
        for cell in &plan.cells {
            if stop.load(Ordering::SeqCst) {
                return Ok((records, false));
            }
            let which = if tracing {
                "traced".to_string()
            } else {
                format!("repeat {}/{}", rep + 1, plan.repeat)
            };
            progress(
                k,
                n,
                &format!(
                    "{} {} {} ×{} ({which})",
                    cell.mode.as_str(),
                    cell.pattern.as_str(),
                    crate::bench::size_label(cell.size),
                    cell.threads,
                ),
            );
            if tracing {
                hook.before(cell)?;
            }
            match run_cell(env, *cell, rep, warmup, duration, stop)? {
                Some(mut r) => {
                    if tracing {
                        r.traced = true;
                        hook.after(cell, &mut r)?;
                    }
                    records.push(r);
                }
                None => return Ok((records, false)),
            }
            k += 1;
        }
    }
    progress(n, n, "done");
    Ok((records, true))
}

//! Human-readable tables of a trace.
use copytrace_common::path;

use crate::{
    table::{Table, ns},
    trace::snapshot::{Snapshot, Summary},
};

fn opt_ns(v: Option<u64>) -> String {
    match v {
        Some(u64::MAX) => "> 2 s".into(),
        Some(v) => format!("≤{}", ns(v)),
        None => "-".into(),
    }
}

fn summary_table(first: &str, rows: &[Summary], timed: bool) -> Table {
    let mut header = vec![first, "family", "calls", "bytes", "errors"];
    if timed {
        header.extend(["total time", "avg", "p50", "p99"]);
    }
    let mut t = Table::new(header).left(&[1]);
    for s in rows {
        let mut cells = vec![
            s.name.clone(),
            s.family.clone(),
            s.calls.to_string(),
            s.bytes.to_string(),
            s.errors.to_string(),
        ];
        if timed {
            cells.extend([
                ns(s.total_ns),
                s.avg_ns().map(ns).unwrap_or_else(|| "-".into()),
                opt_ns(s.p50_ns_le),
                opt_ns(s.p99_ns_le),
            ]);
        }
        t.row(cells);
    }
    t
}

/// The per-syscall and socket-layer tables plus the tracer's health line.
pub fn breakdown(snap: &Snapshot) -> String {
    let mut out = String::new();
    let sys = snap.syscalls();
    if sys.is_empty() {
        out.push_str("no socket system calls seen\n");
    } else {
        out.push_str(&summary_table("syscall", &sys, true).render());
    }
    let mut sock = snap.socket(path::SOCK_SEND);
    sock.extend(snap.socket(path::SOCK_RECV));
    if !sock.is_empty() {
        out.push('\n');
        out.push_str(&summary_table("socket layer", &sock, false).render());
    }
    let c = snap.counters;
    out.push_str(&format!(
        "\n(p50/p99 are upper bounds of log2 buckets) events {}, lost {}, calls in flight at \
         attach (not counted) {}, events of threads not yet seen in a call (not counted) {}\n",
        c.events,
        c.lost(),
        c.unpaired_exits,
        c.unknown_context
    ));
    if !snap.skipped.is_empty() {
        let by_program: Vec<String> = snap
            .skipped
            .iter()
            .map(|(p, n)| format!("{p} {n}"))
            .collect();
        out.push_str(&format!(
            "{} of the lost events are program runs the kernel skipped (a probe that fired \
             while another probe's program ran on the CPU): {}\n",
            c.skipped_runs,
            by_program.join(", ")
        ));
    }
    if c.offcpu_missed_switch_in > 0 {
        out.push_str(&format!(
            "{} of the lost events are off-CPU intervals of traced threads whose switch back \
             in was not seen (the kernel does not count these)\n",
            c.offcpu_missed_switch_in
        ));
    }
    if c.straddling_calls > 0 {
        out.push_str(&format!(
            "{} call(s) still in flight when the trace ended: their nested events are \
             counted, the calls are not\n",
            c.straddling_calls
        ));
    }
    out
}

//! Exports of a trace: JSON (versioned schema), CSV (raw rows), Perfetto/Chrome trace events.
//!
//! # JSON schema `copytrace.trace`, version 1
//!
//! ```text
//! {
//!   "schema": "copytrace.trace", "schema_version": 1,
//!   "copytrace_version", "kernel", "started_at", "duration_s",
//!   "target": {"command": [..] | null, "pids": [..]},
//!   "plan": [{path, tier, target, attempts: [{tier, target, error}], note}],
//!   "syscalls": [{name, family, calls, bytes, errors, total_ns, p50_ns_le, p99_ns_le}],
//!   "socket": [same shape],
//!   "breakdown": {paths: [{path, tier, calls, bytes, errors, total_ns, ...}], ...},
//!   "threads": [{tgid, tid, comm, syscalls: [...]}],     // with --threads
//!   "intervals": [{end_s, syscalls: [...]}],             // with -i
//!   "counters": {stats_full, inflight_full, unpaired_exits, unknown_context,
//!                straddling_calls, pids_full, entry_full, ringbuf_full, uring_overflow,
//!                offcpu_full, offcpu_missed_switch_in, skipped_runs, inflight_shared,
//!                events},
//!   "skipped_runs_by_program": {name: runs},             // when the kernel skipped some
//!   "spans": {sampled, written, sample_every}
//! }
//! ```
//! Bytes are bytes (pages for page pinning); times are ns; p50/p99 are upper bounds of the
//! kernel's log2 histogram buckets.
pub mod openmetrics;

use std::{collections::BTreeMap, io};

use copytrace_common::{SpanEvent, StatKey, Stats, aux, path, syscall};
use serde::{Deserialize, Serialize};

use crate::trace::{
    Breakdown, Counters, PathDecision, Snapshot, Summary, TracerCost, snapshot::family_name,
};

pub const TRACE_SCHEMA: &str = "copytrace.trace";
pub const TRACE_SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Target {
    pub command: Option<Vec<String>>,
    pub pids: Vec<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ThreadRows {
    pub tgid: u32,
    pub tid: u32,
    pub comm: String,
    pub syscalls: Vec<Summary>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Interval {
    pub end_s: f64,
    pub syscalls: Vec<Summary>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SpanInfo {
    pub sample_every: u32,
    pub sampled: usize,
    pub written: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TraceDocument {
    pub schema: String,
    pub schema_version: u32,
    pub copytrace_version: String,
    pub kernel: String,
    pub started_at: String,
    pub duration_s: f64,
    pub target: Target,
    pub plan: Vec<PathDecision>,
    pub syscalls: Vec<Summary>,
    pub socket: Vec<Summary>,
    pub breakdown: Breakdown,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub threads: Vec<ThreadRows>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intervals: Vec<Interval>,
    pub counters: Counters,
    /// Runs the kernel skipped, by program (see [`crate::trace::skipped`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped_runs_by_program: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans: Option<SpanInfo>,
    /// What watching cost (copytrace's own kernel-side time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracer_cost: Option<TracerCost>,
}

/// Per-thread syscall summaries.
pub fn threads(snap: &Snapshot, comm: impl Fn(u32) -> String) -> Vec<ThreadRows> {
    let mut tids: Vec<(u32, u32)> = snap
        .rows
        .keys()
        .filter(|k| k.path == path::SYSCALL || k.path == path::URING_SEND)
        .map(|k| (k.tgid, k.tid))
        .collect();
    tids.dedup();
    tids.sort();
    tids.dedup();
    tids.into_iter()
        .map(|(tgid, tid)| ThreadRows {
            tgid,
            tid,
            comm: comm(tid),
            syscalls: snap.for_thread(tid).syscalls(),
        })
        .collect()
}

fn path_name(p: u16) -> &'static str {
    match p {
        path::SYSCALL => "syscall",
        path::SOCK_SEND => "sock_send",
        path::SOCK_RECV => "sock_recv",
        path::TCP_SENDMSG => "tcp_sendmsg",
        path::COPY_FROM_USER => "copy_from_user",
        path::ZEROCOPY => "zerocopy",
        path::PIN_PAGES => "pin_pages",
        path::DEFERRED_COPY => "deferred_copy",
        path::RECV_COPY => "recv_copy",
        path::OFF_CPU => "off_cpu",
        path::ZC_COMPLETION => "zc_completion",
        path::URING_SEND => "uring_send",
        _ => "?",
    }
}

fn op_name(k: &StatKey) -> String {
    match k.path {
        path::COPY_FROM_USER if k.op == syscall::IO_URING => "io_uring".to_string(),
        path::SYSCALL | path::COPY_FROM_USER => syscall::NAMES
            .get(k.op as usize)
            .copied()
            .unwrap_or("?")
            .to_string(),
        path::SOCK_SEND | path::SOCK_RECV => crate::trace::snapshot::proto_name(k.op),
        path::URING_SEND => copytrace_common::uring::NAMES
            .get(k.op as usize)
            .copied()
            .unwrap_or("?")
            .to_string(),
        path::ZC_COMPLETION if k.op == copytrace_common::completion::IO_URING => {
            "io_uring".to_string()
        }
        _ => String::new(),
    }
}

/// Every raw (tgid, tid, path, op, aux) row: the most detailed view there is.
pub fn csv(snap: &Snapshot) -> io::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "tgid",
        "tid",
        "path",
        "op",
        "family",
        "zerocopy_requested",
        "derived",
        "requested",
        "count",
        "bytes",
        "errors",
        "total_ns",
    ])?;
    for (k, v) in &snap.rows {
        let Stats {
            count,
            bytes,
            errors,
            total_ns,
            ..
        } = *v;
        w.write_record([
            k.tgid.to_string(),
            k.tid.to_string(),
            path_name(k.path).to_string(),
            op_name(k),
            family_name(aux::family(k.aux)).to_string(),
            (k.aux & aux::ZEROCOPY_REQUESTED != 0).to_string(),
            (k.aux & aux::DERIVED != 0).to_string(),
            (k.aux & aux::REQUESTED != 0).to_string(),
            count.to_string(),
            bytes.to_string(),
            errors.to_string(),
            total_ns.to_string(),
        ])?;
    }
    w.into_inner().map_err(|e| io::Error::other(e.to_string()))
}

/// Chrome trace-event JSON (opens in ui.perfetto.dev): one complete ("X") event per sampled
/// system call, on the track of its thread, plus process/thread names.
pub fn perfetto(spans: &[SpanEvent], comm: impl Fn(u32) -> String) -> io::Result<Vec<u8>> {
    let mut events = Vec::with_capacity(spans.len() + 16);
    let mut named: BTreeMap<(u32, u32), ()> = BTreeMap::new();
    for s in spans {
        if named.insert((s.tgid, s.tid), ()).is_none() {
            events.push(serde_json::json!({
                "ph": "M", "name": "thread_name", "pid": s.tgid, "tid": s.tid,
                "args": {"name": format!("{} ({})", comm(s.tid), s.tid)}
            }));
            if s.tid == s.tgid || !named.contains_key(&(s.tgid, s.tgid)) {
                events.push(serde_json::json!({
                    "ph": "M", "name": "process_name", "pid": s.tgid, "tid": s.tgid,
                    "args": {"name": format!("{} ({})", comm(s.tgid), s.tgid)}
                }));
            }
        }
        let name = syscall::NAMES.get(s.op as usize).copied().unwrap_or("?");
        let label = if s.aux & aux::ZEROCOPY_REQUESTED != 0 {
            format!("{name} +MSG_ZEROCOPY")
        } else {
            name.to_string()
        };
        events.push(serde_json::json!({
            "ph": "X",
            "cat": "syscall",
            "name": label,
            "pid": s.tgid,
            "tid": s.tid,
            "ts": s.start_ns as f64 / 1e3,
            "dur": s.duration_ns as f64 / 1e3,
            "args": {
                "ret": s.ret,
                "bytes": s.ret.max(0),
                "family": family_name(s.family),
            }
        }));
    }
    let doc = serde_json::json!({
        "displayTimeUnit": "ns",
        "otherData": {"producer": "copytrace", "version": env!("CARGO_PKG_VERSION")},
        "traceEvents": events,
    });
    let mut v = serde_json::to_vec(&doc).map_err(io::Error::other)?;
    v.push(b'\n');
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfetto_events_are_complete_events_in_microseconds() {
        let spans = [SpanEvent {
            start_ns: 2_000_000,
            duration_ns: 1_500,
            ret: 4096,
            tgid: 10,
            tid: 11,
            op: syscall::SENDMSG,
            family: libc::AF_INET as u16,
            aux: aux::ZEROCOPY_REQUESTED,
        }];
        let v: serde_json::Value =
            serde_json::from_slice(&perfetto(&spans, |t| format!("t{t}")).unwrap()).unwrap();
        let evs = v["traceEvents"].as_array().unwrap();
        let x = evs.iter().find(|e| e["ph"] == "X").unwrap();
        assert_eq!(x["name"], "sendmsg +MSG_ZEROCOPY");
        assert_eq!(x["ts"], 2000.0);
        assert_eq!(x["dur"], 1.5);
        assert_eq!(x["args"]["bytes"], 4096);
        assert_eq!((x["pid"].as_u64(), x["tid"].as_u64()), (Some(10), Some(11)));
        assert!(evs.iter().any(|e| e["name"] == "thread_name"));
        assert!(evs.iter().any(|e| e["name"] == "process_name"));
    }

    #[test]
    fn csv_has_one_row_per_key() {
        let mut snap = Snapshot::default();
        let mut s = Stats::ZERO;
        s.count = 3;
        s.bytes = 300;
        snap.rows.insert(
            StatKey {
                tgid: 1,
                tid: 2,
                path: path::SYSCALL,
                op: syscall::SENDTO,
                aux: (libc::AF_INET as u32) << aux::FAMILY_SHIFT,
            },
            s,
        );
        let text = String::from_utf8(csv(&snap).unwrap()).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[1],
            "1,2,syscall,sendto,inet,false,false,false,3,300,0,0"
        );
    }
}

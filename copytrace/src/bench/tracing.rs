//! `bench --trace`: after the untraced repeats, one traced run per cell, with the eBPF tracer
//! watching this process; each traced run's record gets the tracer's view of that run,
//! cross-checked against what the benchmark itself sent.
//!
//! The tracer is attached once, when the traced pass starts, and stays attached to the end:
//! detaching waits for an RCU grace period per tracepoint under a global mutex (about a second
//! for all of them in a VM), far too slow to do per run. Runs are sequential, so snapshots
//! before and after each one isolate it.
use std::io;

use copytrace_common::{path, syscall};

use crate::{
    bench::{
        Pattern,
        results::{CellTrace, CrossCheck, Record},
        sweep::{Cell, CellHook, Topology},
        wire::REQUEST_LEN,
    },
    trace::{Breakdown, PathDecision, Snapshot, TraceOptions, Tracer},
};

pub struct TraceHook {
    tracer: Option<Tracer>,
    before: Snapshot,
    /// Program statistics and this process's CPU time when the run started.
    counts_before: (crate::trace::cost::Sampled, u64),
    /// With a remote server, the server's sends are not in this process.
    remote: bool,
}

/// CPU time of this whole process so far, ns: the bench traces itself.
fn process_cpu_ns() -> u64 {
    crate::trace::cost::rusage_cpu_ns(libc::RUSAGE_SELF)
}

fn io_err(e: crate::Error) -> io::Error {
    io::Error::other(crate::error::chain(&e))
}

impl TraceHook {
    /// Check that tracing can work at all (root) without attaching yet.
    pub fn new(topology: &Topology) -> io::Result<TraceHook> {
        crate::trace::loader::require_root().map_err(io_err)?;
        Ok(TraceHook {
            tracer: None,
            before: Snapshot::default(),
            counts_before: Default::default(),
            remote: matches!(topology, Topology::Remote(_)),
        })
    }

    fn tracer(&mut self) -> io::Result<&mut Tracer> {
        if self.tracer.is_none() {
            self.tracer = Some(
                Tracer::start(&TraceOptions {
                    pids: vec![std::process::id()],
                    include_self: true,
                    ..Default::default()
                })
                .map_err(io_err)?,
            );
        }
        Ok(self.tracer.as_mut().expect("just set"))
    }
}

impl CellHook for TraceHook {
    fn decisions(&self) -> Option<Vec<PathDecision>> {
        self.tracer.as_ref().map(|t| t.decisions().to_vec())
    }

    fn traced_pass(&self) -> bool {
        true
    }

    fn before(&mut self, _cell: &Cell) -> io::Result<()> {
        let tracer = self.tracer()?;
        let (snap, counts) = (tracer.snapshot().map_err(io_err)?, tracer.cost_reading());
        self.before = snap;
        self.counts_before = (counts, process_cpu_ns());
        Ok(())
    }

    fn after(&mut self, cell: &Cell, record: &mut Record) -> io::Result<()> {
        let remote = self.remote;
        let before = std::mem::take(&mut self.before);
        let (counts, cpu) = std::mem::take(&mut self.counts_before);
        let tracer = self.tracer()?;
        let now = tracer.snapshot().map_err(io_err)?;
        // The bench traces itself: the traced threads are this process's.
        let cost = tracer
            .cost_between(&counts, &tracer.cost_reading())
            .with_cpu(Some(process_cpu_ns().saturating_sub(cpu)));
        let d = now.since(&before);
        // Send system calls and io_uring send requests: every way this process sends.
        let traced = d
            .sum(|k| {
                (k.path == path::SYSCALL && syscall::is_send(k.op)) || k.path == path::URING_SEND
            })
            .bytes;
        let requests = record.requests.unwrap_or(0) * REQUEST_LEN as u64;
        // Stream: the clients send the messages, the server its reports. Rr: the clients send
        // requests, the server the responses and reports. A remote server's sends are not ours.
        let (client, server) = match cell.pattern {
            Pattern::Stream => (record.send_bytes, 0),
            Pattern::Rr => (requests, record.send_bytes),
        };
        let client = client + record.control_bytes_client;
        let server = server + record.control_bytes_server;
        let expected = if remote { client } else { client + server };
        record.trace = Some(CellTrace {
            breakdown: Breakdown::compute(&d, tracer.decisions()),
            syscalls: d.syscalls(),
            tracer_cost: Some(cost),
            cross_check: CrossCheck {
                expected_send_bytes: expected,
                traced_send_bytes: traced,
                ok: expected == traced,
            },
        });
        Ok(())
    }
}

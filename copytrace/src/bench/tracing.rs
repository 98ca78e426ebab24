//! `bench --trace`: the eBPF tracer watches this process for the whole sweep and each run's
//! record gets the tracer's view of that run, cross-checked against what the senders sent.
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
    tracer: Tracer,
    before: Snapshot,
    /// With a remote server, the server's sends are not in this process.
    remote: bool,
}

fn io_err(e: crate::Error) -> io::Error {
    io::Error::other(crate::error::chain(&e))
}

impl TraceHook {
    pub fn start(topology: &Topology) -> io::Result<TraceHook> {
        let tracer = Tracer::start(&TraceOptions {
            pids: vec![std::process::id()],
            include_self: true,
            ..Default::default()
        })
        .map_err(io_err)?;
        Ok(TraceHook {
            tracer,
            before: Snapshot::default(),
            remote: matches!(topology, Topology::Remote(_)),
        })
    }
}

impl CellHook for TraceHook {
    fn decisions(&self) -> Option<Vec<PathDecision>> {
        Some(self.tracer.decisions().to_vec())
    }

    fn before(&mut self, _cell: &Cell) -> io::Result<()> {
        self.before = self.tracer.snapshot().map_err(io_err)?;
        Ok(())
    }

    fn after(&mut self, cell: &Cell, record: &mut Record) -> io::Result<()> {
        let now = self.tracer.snapshot().map_err(io_err)?;
        let d = now.since(&self.before);
        let traced = d
            .sum(|k| k.path == path::SYSCALL && syscall::is_send(k.op))
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
        let expected = if self.remote { client } else { client + server };
        record.trace = Some(CellTrace {
            breakdown: Breakdown::compute(&d, self.tracer.decisions()),
            syscalls: d.syscalls(),
            cross_check: CrossCheck {
                expected_send_bytes: expected,
                traced_send_bytes: traced,
                ok: expected == traced,
            },
        });
        Ok(())
    }
}

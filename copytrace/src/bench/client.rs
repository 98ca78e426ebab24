//! The client side of one connection: a stream sender or a request/response requester.
use std::{
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    os::fd::AsRawFd,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

use crate::{
    bench::{
        Mode, Pattern, Verify,
        message::{AlignedBuf, Verifier},
        modes::new_sender,
        sender::{Sender, SenderStats},
        wire::{self, Hello, PROTOCOL_VERSION, Report},
        zerocopy::ZeroCopyOptions,
    },
    counters::{CounterValues, ThreadCounters},
};

/// Everything one connection needs to know.
#[derive(Clone, Debug)]
pub struct ConnSpec {
    pub addr: SocketAddr,
    pub mode: Mode,
    pub pattern: Pattern,
    pub size: usize,
    pub conn: u32,
    pub hardware_counters: bool,
    pub verify: Verify,
    pub zerocopy: ZeroCopyOptions,
    /// Test knobs passed to the server.
    pub read_delay_ms: u64,
    pub rcvbuf: Option<u32>,
}

/// The shared clock of a cell: every connection measures the same window.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub warm_end: Instant,
    pub end: Instant,
}

/// What one connection measured.
pub struct ConnResult {
    /// Stream: the client's sends. Rr: unused (the server sends; see `report.sender`).
    pub sender: SenderStats,
    pub counters: CounterValues,
    /// Messages the client sent (stream) or received (rr) inside the window.
    pub measured_messages: u64,
    /// Last warm-up send returned (else first measured send started) / last measured send
    /// returned (stream), or first measured request sent / last measured response verified
    /// (rr).
    pub measured_ns: u64,
    /// Rr: round-trip times of measured requests, in ns.
    pub latency: Option<Histogram<u64>>,
    /// Rr: the client-side verification of responses failed.
    pub corruption: Option<String>,
    pub report: Report,
    pub interrupted: bool,
    /// Rr: requests sent (warmup included).
    pub requests: u64,
    /// Control-frame bytes: our hello, the server's report.
    pub hello_bytes: u64,
    pub report_bytes: u64,
    /// TCP's retransmitted bytes on this connection, read once the server's report arrived.
    pub retransmitted_bytes: u64,
}

/// A connected, greeted connection with everything its run needs already allocated (the
/// zero-copy buffer pool can take a while to fill; that must not eat into the measured window).
pub struct Connected {
    stream: TcpStream,
    hello_bytes: u64,
    ready_bytes: u64,
    counters: ThreadCounters,
    /// Stream: the sender.
    sender: Option<Box<dyn Sender>>,
    /// Rr: the response checker and the round-trip histogram.
    verifier: Option<Verifier>,
    hist: Option<Histogram<u64>>,
}

/// Connect and say hello (done before the cell's clock starts).
pub fn connect(spec: &ConnSpec) -> io::Result<Connected> {
    let mut s = TcpStream::connect_timeout(&spec.addr, Duration::from_secs(5))
        .map_err(|e| io::Error::new(e.kind(), format!("connect to {}: {e}", spec.addr)))?;
    if spec.pattern == Pattern::Rr {
        s.set_nodelay(true)?;
    }
    let hello_bytes = wire::write_frame(
        &mut s,
        &Hello {
            version: PROTOCOL_VERSION,
            pattern: spec.pattern,
            mode: spec.mode,
            size: spec.size,
            conn: spec.conn,
            hardware_counters: spec.hardware_counters,
            verify: spec.verify,
            read_delay_ms: spec.read_delay_ms,
            rcvbuf: spec.rcvbuf,
        },
    )?;
    // Wait until the server has set up its side.
    let (ready, ready_bytes): (String, u64) = wire::read_frame_sized(&mut s)
        .map_err(|e| io::Error::new(e.kind(), format!("waiting for the server: {e}")))?;
    if ready != wire::READY {
        return Err(io::Error::other(format!(
            "unexpected server answer {ready:?}"
        )));
    }
    let counters = ThreadCounters::open(spec.hardware_counters)?;
    let (sender, verifier, hist) = match spec.pattern {
        Pattern::Stream => (
            Some(new_sender(
                spec.mode,
                s.as_raw_fd(),
                spec.conn,
                spec.size,
                spec.zerocopy,
            )?),
            None,
            None,
        ),
        // 1 ns .. 60 s at 3 significant digits.
        Pattern::Rr => (
            None,
            Some(Verifier::new(spec.conn, spec.size, spec.verify)),
            Some(
                Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
                    .map_err(|e| io::Error::other(format!("histogram: {e}")))?,
            ),
        ),
    };
    Ok(Connected {
        stream: s,
        hello_bytes,
        ready_bytes,
        counters,
        sender,
        verifier,
        hist,
    })
}

pub fn run(
    c: Connected,
    spec: &ConnSpec,
    window: Window,
    stop: &AtomicBool,
) -> io::Result<ConnResult> {
    let (hello_bytes, ready_bytes) = (c.hello_bytes, c.ready_bytes);
    let mut r = match spec.pattern {
        Pattern::Stream => run_stream(c, window, stop),
        Pattern::Rr => run_rr(c, spec, window, stop),
    }?;
    r.hello_bytes = hello_bytes;
    // The server's control bytes: its ready answer and its report.
    r.report_bytes += ready_bytes;
    Ok(r)
}

/// Shut down our sending side and read the server's report.
fn finish_connection(s: &mut TcpStream) -> io::Result<(Report, u64)> {
    s.shutdown(Shutdown::Write)?;
    read_report(s)
}

/// Read the server's report (sent once it has seen our end of stream), then the end of the
/// server's stream. The server ends it only after its report's write returned, so every send
/// it made has returned by then, and a tracer (which counts a call at its return) has
/// counted it before this cell is over. Without the wait a traced cell came out one report
/// short now and then (rr, uring-send-zc, 64 KiB: the tracer counted 577 bytes fewer than
/// were sent, the report's frame).
fn read_report(s: &mut TcpStream) -> io::Result<(Report, u64)> {
    let report = wire::read_frame_sized(s)
        .map_err(|e| io::Error::new(e.kind(), format!("reading the report: {e}")))?;
    let mut extra = [0u8; 64];
    loop {
        match s.read(&mut extra) {
            Ok(0) => return Ok(report),
            Ok(n) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{n} bytes after the server's report"),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("waiting for the end of the server's stream: {e}"),
                ));
            }
        }
    }
}

fn run_stream(c: Connected, w: Window, stop: &AtomicBool) -> io::Result<ConnResult> {
    let Connected {
        stream: mut s,
        mut counters,
        sender,
        ..
    } = c;
    let mut sender = sender.expect("stream connections have a sender");
    let (mut seq, mut measured_messages) = (0u64, 0u64);
    // The window runs from the last warm-up send's return (the first measured send's start
    // without a warm-up) to the last measured send's return, as the receiver counts it: a
    // stall before the first measured send is then in both windows (see
    // `Verifier::window_start`).
    let (mut first, mut last, mut warm_end) = (None, None, None);
    let mut interrupted = false;
    loop {
        let now = Instant::now();
        if now >= w.end {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        let measured = now >= w.warm_end;
        if measured && first.is_none() {
            counters.enable()?;
            first = Some(warm_end.unwrap_or_else(Instant::now));
        }
        sender.send(seq, measured)?;
        seq += 1;
        if measured {
            measured_messages += 1;
            last = Some(Instant::now());
        } else {
            warm_end = Some(Instant::now());
        }
    }
    // Batching senders (io_uring) may still hold measured messages: they are sent only now.
    if sender.flush()? && last.is_some() {
        last = Some(Instant::now());
    }
    counters.disable()?;
    // End the stream now, before waiting for zero-copy completions: the FIN pushes whatever
    // Nagle still holds and wakes the receiver, which waits for SO_RCVLOWAT bytes otherwise.
    // Waiting for completions first made the receiver's window end 40 ms after the sender's:
    // a zero-copy completion needs the ACK of its data, and a receiver that has nothing to
    // read delays its ACK by TCP_DELACK_MIN (6 of 100 zero-copy 64 B runs without the
    // low-water mark, 50 of 108 zero-copy runs with it).
    s.shutdown(Shutdown::Write)?;
    let stats = sender.finish()?;
    let (report, report_bytes) = read_report(&mut s)?;
    let retransmitted_bytes = super::server::bytes_retransmitted(&s)?;
    Ok(ConnResult {
        sender: stats,
        counters: counters.read()?,
        measured_messages,
        measured_ns: match (first, last) {
            (Some(a), Some(b)) => b.duration_since(a).as_nanos() as u64,
            _ => 0,
        },
        latency: None,
        corruption: None,
        report,
        interrupted,
        requests: 0,
        hello_bytes: 0,
        report_bytes,
        retransmitted_bytes,
    })
}

fn run_rr(c: Connected, spec: &ConnSpec, w: Window, stop: &AtomicBool) -> io::Result<ConnResult> {
    let Connected {
        stream: mut s,
        mut counters,
        verifier,
        hist,
        ..
    } = c;
    let mut v = verifier.expect("rr connections have a verifier");
    let mut hist = hist.expect("rr connections have a histogram");
    let mut buf = AlignedBuf::new(spec.size.min(1 << 20), AlignedBuf::PAGE);
    let (mut seq, mut measured_messages) = (0u64, 0u64);
    let (mut first, mut last) = (None, None);
    let mut corruption = None;
    let mut interrupted = false;
    let mut requests = 0u64;
    loop {
        let t0 = Instant::now();
        if t0 >= w.end {
            break;
        }
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        let measured = t0 >= w.warm_end;
        if measured && first.is_none() {
            counters.enable()?;
            first = Some(t0);
        }
        v.expect_seq(seq);
        s.write_all(&wire::encode_request(seq, measured))?;
        requests += 1;
        let mut left = spec.size;
        while left > 0 {
            let want = left.min(buf.len());
            let n = match s.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed mid-response",
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            // After a corruption, read the rest of the response unchecked so the stream
            // stays aligned for the server's report.
            if corruption.is_none()
                && let Err(c) = v.feed(&buf[..n], Instant::now())
            {
                corruption = Some(c.0);
            }
            left -= n;
        }
        if corruption.is_some() {
            break;
        }
        let t1 = Instant::now();
        if measured {
            hist.record((t1 - t0).as_nanos().max(1) as u64)
                .map_err(|e| io::Error::other(format!("histogram: {e}")))?;
            measured_messages += 1;
            last = Some(t1);
        }
        seq += 1;
    }
    counters.disable()?;
    let (report, report_bytes) = finish_connection(&mut s)?;
    let retransmitted_bytes = super::server::bytes_retransmitted(&s)?;
    Ok(ConnResult {
        sender: SenderStats::default(),
        counters: counters.read()?,
        measured_messages,
        measured_ns: match (first, last) {
            (Some(a), Some(b)) => b.duration_since(a).as_nanos() as u64,
            _ => 0,
        },
        latency: Some(hist),
        corruption,
        report,
        interrupted,
        requests,
        hello_bytes: 0,
        report_bytes,
        retransmitted_bytes,
    })
}

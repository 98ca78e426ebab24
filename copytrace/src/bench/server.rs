//! The server side: accepts connections, one thread each, and either verifies a stream of
//! messages (every byte) or answers requests with messages sent in the requested mode.
use std::{
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use crate::{
    bench::{
        Pattern, arrival,
        message::{AlignedBuf, Verifier},
        modes::new_sender,
        sender::Sender,
        sockopt::set_int_opt,
        wire::{self, Hello, PROTOCOL_VERSION, REQUEST_LEN, Report},
        zerocopy::ZeroCopyOptions,
    },
    counters::ThreadCounters,
};

/// Bind the benchmark listener, turning "address in use" into a sentence.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(
                e.kind(),
                format!("port {} is in use (on {})", addr.port(), addr.ip()),
            )
        } else {
            io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
        }
    })
}

/// An accept loop on its own thread; stops (and joins) on drop.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Server {
    pub fn spawn(listener: TcpListener) -> io::Result<Server> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = thread::Builder::new()
            .name("ct-accept".into())
            .spawn(move || accept_loop(&listener, &s))?;
        Ok(Server {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accept until `stop`; each connection is handled on its own thread.
pub fn accept_loop(listener: &TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((s, peer)) => {
                let _ = s.set_nonblocking(false);
                let r = thread::Builder::new()
                    .name("ct-conn".into())
                    .spawn(move || {
                        if let Err(e) = handle(s) {
                            log::warn!("connection from {peer}: {e}");
                        }
                    });
                if let Err(e) = r {
                    log::warn!("cannot spawn a connection thread: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => log::warn!("accept: {e}"),
        }
    }
}

fn handle(mut s: TcpStream) -> io::Result<()> {
    let hello: Hello = wire::read_frame(&mut s)?;
    if hello.version != PROTOCOL_VERSION {
        return Err(io::Error::other(format!(
            "peer speaks protocol {}, we speak {PROTOCOL_VERSION}",
            hello.version
        )));
    }
    if let Some(b) = hello.rcvbuf {
        set_int_opt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, b as i32)?;
    }
    // Allocate everything first (a zero-copy pool can take a while to fill), then tell the
    // client we are ready, so the measured window never includes our setup.
    let counters = ThreadCounters::open(hello.hardware_counters)?;
    let report = match hello.pattern {
        Pattern::Stream => {
            // Wake the receiver only once a message's worth (up to 256 KiB) is queued: a
            // receiver woken for every segment makes the sender pay a cross-CPU wake-up per
            // segment (IPI, a VM exit in a VM).
            let lowat = hello.size.clamp(1, 256 << 10) as i32;
            set_int_opt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVLOWAT, lowat)?;
            arrival::enable(&s)?;
            let v = Verifier::new(hello.conn, hello.size, hello.verify);
            wire::write_frame(&mut s, &wire::READY)?;
            if hello.read_delay_ms > 0 {
                thread::sleep(Duration::from_millis(hello.read_delay_ms));
            }
            receive_stream(&mut s, v, counters)?
        }
        Pattern::Rr => {
            s.set_nodelay(true)?;
            let sender = new_sender(
                hello.mode,
                s.as_raw_fd(),
                hello.conn,
                hello.size,
                ZeroCopyOptions {
                    // A response goes out when asked for: io_uring must not hold it back to
                    // fill a batch.
                    uring_depth: 1,
                    ..ZeroCopyOptions::for_size(hello.size)
                },
            )?;
            wire::write_frame(&mut s, &wire::READY)?;
            respond(&mut s, &hello, sender, counters)?
        }
    };
    wire::write_frame(&mut s, &report)?;
    s.flush()?;
    let _ = s.shutdown(Shutdown::Write);
    Ok(())
}

/// Bytes TCP retransmitted on `s` so far (TCP_INFO `tcpi_bytes_retrans`): a retransmitted
/// MSG_ZEROCOPY segment is copied later once more, so a tracer that counts deferred copies can
/// see more of them than bytes sent.
pub fn bytes_retransmitted(s: &TcpStream) -> io::Result<u64> {
    // SAFETY: a zeroed tcp_info is valid; the kernel fills up to `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: valid fd, buffer and length.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(info.tcpi_bytes_retrans)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn read_some(s: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Read and verify every byte until the client shuts down its side.
fn receive_stream(
    s: &mut TcpStream,
    mut v: Verifier,
    mut counters: ThreadCounters,
) -> io::Result<Report> {
    let mut buf = AlignedBuf::new(1 << 20, AlignedBuf::PAGE);
    let mut corruption = None;
    let mut enabled = false;
    let mut wait = Duration::ZERO;
    loop {
        let r = arrival::read(s, &mut buf)?;
        if r.len == 0 {
            break;
        }
        // After a corruption keep draining, so the sender finishes and gets the report.
        if corruption.is_none()
            && let Err(c) = v.feed(&buf[..r.len], r.at)
        {
            corruption = Some(c.0);
        }
        if v.window_start.is_some() {
            wait = wait.max(r.waited());
            if !enabled {
                counters.enable()?;
                enabled = true;
            }
        }
    }
    if corruption.is_none()
        && let Err(c) = v.finish()
    {
        corruption = Some(c.0);
    }
    counters.disable()?;
    let measured_ns = match (v.window_start, v.last_measured_end) {
        (Some(a), Some(b)) => b.duration_since(a).as_nanos() as u64,
        _ => 0,
    };
    Ok(Report {
        corruption,
        messages: v.messages,
        bytes: v.bytes,
        measured_messages: v.measured_messages,
        measured_bytes: v.measured_bytes(),
        measured_ns,
        wait_ns: wait.as_nanos() as u64,
        counters: counters.read()?,
        sender: None,
        measured_responses: 0,
    })
}

/// Read one request; `None` on a clean end of stream.
fn read_request(s: &mut TcpStream) -> io::Result<Option<[u8; REQUEST_LEN]>> {
    let mut req = [0u8; REQUEST_LEN];
    let mut got = 0;
    while got < REQUEST_LEN {
        let n = read_some(s, &mut req[got..])?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "request truncated",
                ))
            };
        }
        got += n;
    }
    Ok(Some(req))
}

/// Answer each request with one message sent in the requested mode.
fn respond(
    s: &mut TcpStream,
    hello: &Hello,
    mut sender: Box<dyn Sender>,
    mut counters: ThreadCounters,
) -> io::Result<Report> {
    let (mut messages, mut measured_responses, mut enabled) = (0u64, 0u64, false);
    while let Some(req) = read_request(s)? {
        let (seq, measured) = wire::decode_request(&req);
        if measured && !enabled {
            counters.enable()?;
            enabled = true;
        }
        sender.send(seq, measured)?;
        messages += 1;
        measured_responses += u64::from(measured);
    }
    let stats = sender.finish()?;
    counters.disable()?;
    Ok(Report {
        corruption: None,
        messages,
        bytes: messages * hello.size as u64,
        measured_messages: measured_responses,
        measured_bytes: measured_responses * hello.size as u64,
        measured_ns: 0,
        wait_ns: 0,
        counters: counters.read()?,
        sender: Some(stats),
        measured_responses,
    })
}

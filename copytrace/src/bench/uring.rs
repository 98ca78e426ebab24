//! io_uring senders (the `io-uring` crate): `IORING_OP_SEND` of the serialized message, the
//! io_uring twin of two-copy, and `IORING_OP_SEND_ZC` from registered buffers, the twin of
//! MSG_ZEROCOPY (done the way liburing's `examples/send-zerocopy.c` does it).
//!
//! * Up to `depth` messages go to the kernel in one `io_uring_enter`, as one linked chain:
//!   io_uring does not keep separate in-flight sends on one TCP socket in order, a chain does.
//!   The next chain is submitted once every send of the previous one has completed. A send
//!   that came back short (`MSG_WAITALL` retries inside the kernel, so only on error or
//!   signal) cancels the rest of its chain; the remainder and the cancelled sends go again,
//!   in order.
//! * SEND_ZC posts a second completion, the notification, once the kernel no longer needs the
//!   buffer; only then is it reused. Asked for with `IORING_SEND_ZC_REPORT_USAGE` (6.2+), the
//!   notification says whether the kernel copied the bytes after all
//!   (`IORING_NOTIF_USAGE_ZC_COPIED`); on kernels that cannot report it the copied fraction is
//!   unknown, and said to be.
use std::{io, os::fd::RawFd};

use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types::Fd};

use crate::bench::{
    message::{AlignedBuf, Message, fill_contiguous, stamp_contiguous},
    sender::{Sender, SenderStats, UringStats, ZeroCopyStats},
    zerocopy::{COMPLETION_TIMEOUT, ZeroCopyOptions},
};

/// `IORING_SEND_ZC_REPORT_USAGE` (include/uapi/linux/io_uring.h): ask the notification to say
/// whether the data was copied.
const SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`: set in a notification's result when the kernel copied.
const NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;
/// Is io_uring usable here? `Err` says why not (a kernel built without it, or
/// `kernel.io_uring_disabled`), in one line.
pub fn available(zero_copy: bool) -> Result<(), String> {
    let ring = IoUring::new(2).map_err(|e| {
        let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .map(|v| format!(" (kernel.io_uring_disabled = {})", v.trim()))
            .unwrap_or_default();
        format!("io_uring is refused here{sysctl}: {e}")
    })?;
    if zero_copy {
        let mut probe = Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|e| format!("probing io_uring opcodes: {e}"))?;
        if !probe.is_supported(opcode::SendZc::CODE) {
            return Err("this kernel's io_uring has no IORING_OP_SEND_ZC (6.0+)".into());
        }
    }
    Ok(())
}

/// One send in flight: its buffer and where in it the send starts.
#[derive(Clone, Copy)]
struct Request {
    buf: usize,
    off: usize,
}

pub struct UringSender {
    ring: IoUring,
    fd: RawFd,
    zero_copy: bool,
    /// Send: the 8 fields serialized into a buffer per message (the user-space copy).
    msg: Option<Message>,
    bufs: Vec<AlignedBuf>,
    free: Vec<usize>,
    /// Buffers filled and not yet submitted, in message order.
    batch: Vec<usize>,
    /// SEND_ZC: bytes of each request whose notification is still to come, per buffer.
    notif_bytes: Vec<std::collections::VecDeque<u64>>,
    depth: usize,
    reuse_early: bool,
    stats: SenderStats,
    zc: ZeroCopyStats,
    uring: UringStats,
}

impl UringSender {
    pub fn new(
        fd: RawFd,
        conn: u32,
        size: usize,
        zero_copy: bool,
        opts: ZeroCopyOptions,
    ) -> io::Result<UringSender> {
        let depth = opts.uring_depth.max(1);
        // Send: buffers are free again once their send completed (the kernel copied them).
        // SEND_ZC: only after the notification, so as many as MSG_ZEROCOPY's pool.
        let n = match (zero_copy, opts.reuse_early) {
            (true, true) => 1,
            (true, false) => opts.pool.max(2 * depth),
            (false, _) => depth,
        };
        let entries = (2 * depth).next_power_of_two().max(8) as u32;
        // Room for every completion that can be pending at once (a send result and a
        // notification per buffer): an overflowing completion ring costs the kernel a detour,
        // and its completions are invisible to the tracer's request matching.
        let cq = (2 * (n + depth))
            .next_power_of_two()
            .max(2 * entries as usize) as u32;
        let ring = IoUring::builder()
            .setup_cqsize(cq)
            .build(entries)
            .map_err(|e| io::Error::new(e.kind(), format!("io_uring_setup: {e}")))?;
        let mut first = AlignedBuf::new(size, AlignedBuf::PAGE);
        fill_contiguous(&mut first, conn);
        let bufs: Vec<AlignedBuf> = (0..n).map(|_| first.clone()).collect();
        let mut uring = UringStats {
            depth,
            ..UringStats::default()
        };
        if zero_copy {
            let iov: Vec<libc::iovec> = bufs
                .iter()
                .map(|b| libc::iovec {
                    iov_base: b.as_ptr() as *mut libc::c_void,
                    iov_len: b.len(),
                })
                .collect();
            // SAFETY: the buffers outlive the ring (dropped after it: field order) and never
            // move (heap storage). Registration can fail (RLIMIT_MEMLOCK, too many buffers):
            // then plain buffers are used, and the record says so.
            uring.fixed_buffers = iov.len() <= u16::MAX as usize
                && unsafe { ring.submitter().register_buffers(&iov) }.is_ok();
            uring.usage_reported = true; // until the kernel refuses the flag
        }
        Ok(UringSender {
            ring,
            fd,
            zero_copy,
            msg: (!zero_copy).then(|| Message::new(conn, size)),
            bufs,
            free: (0..n).rev().collect(),
            batch: Vec::with_capacity(depth),
            notif_bytes: vec![Default::default(); n],
            depth,
            reuse_early: opts.reuse_early,
            stats: SenderStats::default(),
            zc: ZeroCopyStats::default(),
            uring,
        })
    }

    fn entry(&self, r: Request) -> squeue::Entry {
        let b = &self.bufs[r.buf];
        let (ptr, len) = (b[r.off..].as_ptr(), (b.len() - r.off) as u32);
        let flags = libc::MSG_WAITALL | libc::MSG_NOSIGNAL;
        let e = if self.zero_copy {
            let zc_flags = if self.uring.usage_reported {
                SEND_ZC_REPORT_USAGE
            } else {
                0
            };
            opcode::SendZc::new(Fd(self.fd), ptr, len)
                .buf_index(self.uring.fixed_buffers.then_some(r.buf as u16))
                .flags(flags)
                .zc_flags(zc_flags)
                .build()
        } else {
            opcode::Send::new(Fd(self.fd), ptr, len)
                .flags(flags)
                .build()
        };
        e.user_data(r.buf as u64)
    }

    /// Submit `reqs` as one chain and wait for each one's send completion; what has to go
    /// again (a short send's remainder, cancelled links), in order.
    fn submit_chain(&mut self, reqs: &[Request]) -> io::Result<Vec<Request>> {
        for (i, &r) in reqs.iter().enumerate() {
            let mut e = self.entry(r);
            if i + 1 < reqs.len() {
                e = e.flags(squeue::Flags::IO_LINK);
            }
            // SAFETY: the buffer stays untouched until its completion (and, for SEND_ZC,
            // its notification) has been reaped.
            unsafe { self.ring.submission().push(&e) }
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        self.uring.submits += 1;
        let mut results: Vec<Option<i32>> = vec![None; reqs.len()];
        let mut pending = reqs.len();
        let mut first = true;
        while pending > 0 {
            let r = if first {
                self.ring.submit_and_wait(1)
            } else {
                self.ring.submitter().submit_and_wait(1)
            };
            first = false;
            if let Err(e) = r {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io::Error::new(e.kind(), format!("io_uring_enter: {e}")));
            }
            pending -= self.reap(reqs, &mut results)?;
        }
        self.redo(reqs, &results)
    }

    /// Read every completion queued: send results into `results` (by position in `reqs`),
    /// notifications into the zero-copy statistics. Returns how many send results it read.
    fn reap(&mut self, reqs: &[Request], results: &mut [Option<i32>]) -> io::Result<usize> {
        let cqes: Vec<cqueue::Entry> = self.ring.completion().collect();
        let mut sends = 0;
        for c in cqes {
            let buf = c.user_data() as usize;
            if cqueue::notif(c.flags()) {
                self.notified(buf, c.result() as u32)?;
                continue;
            }
            let Some(i) = reqs.iter().position(|r| r.buf == buf) else {
                return Err(io::Error::other(format!(
                    "io_uring completion for buffer {buf}, which is not in flight"
                )));
            };
            results[i] = Some(c.result());
            sends += 1;
            if cqueue::more(c.flags()) {
                self.notif_bytes[buf].push_back(c.result().max(0) as u64);
                self.zc.ids += 1;
            }
        }
        Ok(sends)
    }

    /// A SEND_ZC notification for a request on `buf`.
    fn notified(&mut self, buf: usize, res: u32) -> io::Result<()> {
        let bytes = self.notif_bytes[buf].pop_front().ok_or_else(|| {
            io::Error::other(format!("io_uring notification for idle buffer {buf}"))
        })?;
        self.zc.notifications += 1;
        if !self.uring.usage_reported {
            self.zc.unknown_ids += 1;
            self.zc.unknown_bytes += bytes;
        } else if res & NOTIF_USAGE_ZC_COPIED != 0 {
            self.zc.copied_ids += 1;
            self.zc.copied_bytes += bytes;
        } else {
            self.zc.zerocopy_ids += 1;
            self.zc.zerocopy_bytes += bytes;
        }
        self.release(buf);
        Ok(())
    }

    /// `buf` may be written again once nothing of it is in flight.
    fn release(&mut self, buf: usize) {
        if self.notif_bytes[buf].is_empty() && !self.reuse_early && !self.batch.contains(&buf) {
            self.free.push(buf);
        }
    }

    /// From a chain's results, what goes again; buffers whose send is done are released.
    fn redo(&mut self, reqs: &[Request], results: &[Option<i32>]) -> io::Result<Vec<Request>> {
        let mut again = Vec::new();
        for (r, res) in reqs.iter().zip(results) {
            let res = res.expect("every send of the chain completed");
            let left = self.bufs[r.buf].len() - r.off;
            match res {
                n if n > 0 => {
                    self.stats.syscalls += 1;
                    self.stats.bytes += n as u64;
                    if (n as usize) < left {
                        again.push(Request {
                            buf: r.buf,
                            off: r.off + n as usize,
                        });
                        continue;
                    }
                }
                n if n == -libc::ECANCELED || n == -libc::EINTR || n == -libc::EAGAIN => {
                    self.uring.resubmitted += 1;
                    again.push(*r);
                    continue;
                }
                n if n == -libc::EINVAL && self.zero_copy && self.uring.usage_reported => {
                    // Kernels before 6.2 refuse IORING_SEND_ZC_REPORT_USAGE.
                    if self.zc.ids > 0 {
                        return Err(io::Error::other(
                            "io_uring SEND_ZC failed with EINVAL after sends had succeeded",
                        ));
                    }
                    self.uring.usage_reported = false;
                    self.uring.resubmitted += 1;
                    again.push(*r);
                    continue;
                }
                n => {
                    let e = io::Error::from_raw_os_error(-n);
                    let op = if self.zero_copy { "SEND_ZC" } else { "SEND" };
                    return Err(io::Error::new(e.kind(), format!("io_uring {op}: {e}")));
                }
            }
        }
        Ok(again)
    }

    /// Submit the filled buffers, and everything that has to go again, until all is sent.
    fn submit_batch(&mut self) -> io::Result<()> {
        let mut reqs: Vec<Request> = self
            .batch
            .iter()
            .map(|&buf| Request { buf, off: 0 })
            .collect();
        let mut rounds = 0;
        while !reqs.is_empty() {
            rounds += 1;
            if rounds > 1000 {
                return Err(io::Error::other(
                    "io_uring sends keep coming back unfinished",
                ));
            }
            reqs = self.submit_chain(&reqs)?;
        }
        let done = std::mem::take(&mut self.batch);
        for buf in done {
            self.release(buf);
        }
        Ok(())
    }

    /// A buffer to fill: a free one, or reap notifications until one is.
    fn acquire(&mut self) -> io::Result<usize> {
        if self.reuse_early {
            return Ok(0);
        }
        let started = std::time::Instant::now();
        loop {
            if let Some(b) = self.free.pop() {
                return Ok(b);
            }
            self.zc.pool_waits += 1;
            if started.elapsed() > COMPLETION_TIMEOUT {
                return Err(io::Error::other(format!(
                    "no io_uring notification for {COMPLETION_TIMEOUT:?} with every buffer in \
                     flight"
                )));
            }
            self.wait_notification()?;
        }
    }

    /// Block until at least one completion arrives (only notifications can be pending here).
    fn wait_notification(&mut self) -> io::Result<()> {
        match self.ring.submitter().submit_and_wait(1) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                return Err(io::Error::new(e.kind(), format!("io_uring_enter: {e}")));
            }
            _ => {}
        }
        self.reap(&[], &mut [])?;
        Ok(())
    }
}

impl Sender for UringSender {
    fn send(&mut self, seq: u64, measured: bool) -> io::Result<()> {
        let buf = self.acquire()?;
        let b = &mut self.bufs[buf];
        match &mut self.msg {
            // Send: serialize the fields (copy 1), the kernel copies the buffer (copy 2).
            Some(m) => {
                m.stamp(seq, measured);
                self.stats.user_copy_bytes += m.serialize_into(b) as u64;
            }
            // SEND_ZC: the message lives in the registered buffer; only its stamps change.
            None => stamp_contiguous(b, seq, measured),
        }
        self.batch.push(buf);
        if self.batch.len() >= self.depth || self.reuse_early {
            self.submit_batch()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<bool> {
        if self.batch.is_empty() {
            return Ok(false);
        }
        self.submit_batch()?;
        Ok(true)
    }

    fn finish(&mut self) -> io::Result<SenderStats> {
        self.flush()?;
        let started = std::time::Instant::now();
        while self.notif_bytes.iter().any(|q| !q.is_empty()) {
            if started.elapsed() > COMPLETION_TIMEOUT {
                return Err(io::Error::other(format!(
                    "io_uring SEND_ZC notifications never came within {COMPLETION_TIMEOUT:?}"
                )));
            }
            self.wait_notification()?;
        }
        let mut s = self.stats.clone();
        if self.zero_copy {
            s.zerocopy = Some(self.zc.clone());
        }
        s.uring = Some(self.uring.clone());
        Ok(s)
    }
}

//! MSG_ZEROCOPY sender, done the way the kernel's msg_zerocopy selftest does it.
//!
//! * `SO_ZEROCOPY` on the socket, `sendmsg(MSG_ZEROCOPY)` with the 8-field iovec.
//! * Each successful call gets the next notification id. The kernel later reports ranges of
//!   completed ids on the socket error queue (`MSG_ERRQUEUE`); only then may the pages of that
//!   call be written again. Buffers come from a pool and go back to it only when every id of the
//!   message they carried has completed.
//! * Completions are drained without blocking every few sends, and blocking when no buffer is
//!   free or the kernel says `ENOBUFS` (its optmem budget for pending notifications is spent).
//! * Every completion's `ee_code` is counted: `SO_EE_CODE_ZEROCOPY_COPIED` means the kernel
//!   copied the data after all (always the case over loopback and veth, whose receive path copies
//!   user pages out of the skb with `skb_copy_ubufs`).
use std::{
    collections::VecDeque,
    io,
    os::fd::RawFd,
    time::{Duration, Instant},
};

use crate::bench::{
    message::{FIELDS, Message},
    sender::{Sender, SenderStats, ZeroCopyStats, sendmsg_all},
    sockopt::set_int_opt,
};

const SO_ZEROCOPY: libc::c_int = 60;
const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

/// Drain completions without blocking after this many sends.
const DRAIN_EVERY: u64 = 16;
/// Give up waiting for outstanding completions after this long.
pub(crate) const COMPLETION_TIMEOUT: Duration = Duration::from_secs(20);

/// Default number of messages the io_uring modes submit per `io_uring_enter`.
pub const DEFAULT_DEPTH: usize = 8;

#[derive(Clone, Copy, Debug)]
pub struct ZeroCopyOptions {
    /// Number of message buffers in flight at most.
    pub pool: usize,
    /// Fault injection for tests: one buffer, rewritten without waiting for completions.
    pub reuse_early: bool,
    /// io_uring modes: messages submitted per `io_uring_enter` (one linked chain).
    pub uring_depth: usize,
}

impl ZeroCopyOptions {
    /// Enough buffers to cover a full send buffer (tcp_wmem max is 4 MiB by default) twice;
    /// at least 2 so one can be refilled while the other is in flight.
    pub fn for_size(size: usize) -> ZeroCopyOptions {
        ZeroCopyOptions {
            pool: (8usize << 20).div_ceil(size).clamp(2, 4096),
            reuse_early: false,
            uring_depth: DEFAULT_DEPTH,
        }
    }
}

struct Pending {
    id: u32,
    bytes: u64,
    buf: usize,
    done: bool,
}

pub struct ZeroCopySender {
    fd: RawFd,
    pool: Vec<Message>,
    free: Vec<usize>,
    /// Ids not yet completed, per buffer. A buffer is free when its count is 0 and it is not
    /// the one being sent right now.
    outstanding: Vec<u32>,
    /// The buffer `send` is working on (its ids may complete before the message is done).
    sending: Option<usize>,
    /// Ids in issue order, starting at `pending[0].id`.
    pending: VecDeque<Pending>,
    next_id: u32,
    sends: u64,
    opts: ZeroCopyOptions,
    stats: SenderStats,
    zc: ZeroCopyStats,
}

impl ZeroCopySender {
    pub fn new(fd: RawFd, conn: u32, size: usize, opts: ZeroCopyOptions) -> io::Result<Self> {
        set_int_opt(fd, libc::SOL_SOCKET, SO_ZEROCOPY, 1)
            .map_err(|e| io::Error::new(e.kind(), format!("setsockopt(SO_ZEROCOPY): {e}")))?;
        let n = if opts.reuse_early {
            1
        } else {
            opts.pool.max(1)
        };
        Ok(ZeroCopySender {
            fd,
            pool: {
                // Every buffer starts with the same pattern: build it once, copy it.
                let first = Message::new(conn, size);
                (0..n).map(|_| first.clone()).collect()
            },
            free: (0..n).rev().collect(),
            outstanding: vec![0; n],
            sending: None,
            pending: VecDeque::new(),
            next_id: 0,
            sends: 0,
            opts,
            stats: SenderStats::default(),
            zc: ZeroCopyStats::default(),
        })
    }

    /// Read every notification queued on the error queue; wait up to `wait` for the first.
    fn drain(&mut self, wait: Option<Duration>) -> io::Result<()> {
        if let Some(wait) = wait {
            let mut pfd = libc::pollfd {
                fd: self.fd,
                events: 0, // POLLERR is always reported
                revents: 0,
            };
            // SAFETY: valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, wait.as_millis().min(1000) as i32) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
        loop {
            let mut control = [0u64; 16]; // aligned cmsg space
            // SAFETY: zeroed msghdr is valid.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control);
            self.zc.errqueue_reads += 1;
            // SAFETY: valid fd and msghdr.
            let rc = unsafe {
                libc::recvmsg(self.fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT)
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(()),
                    Some(libc::EINTR) => continue,
                    _ => {
                        return Err(io::Error::new(
                            e.kind(),
                            format!("recvmsg(MSG_ERRQUEUE): {e}"),
                        ));
                    }
                }
            }
            // SAFETY: walking the control buffer the kernel filled.
            let mut cm = unsafe { libc::CMSG_FIRSTHDR(&msg) };
            while !cm.is_null() {
                // SAFETY: `cm` is a valid cmsghdr within `control`.
                let c = unsafe { &*cm };
                let is_recverr = (c.cmsg_level == libc::SOL_IP && c.cmsg_type == libc::IP_RECVERR)
                    || (c.cmsg_level == libc::SOL_IPV6 && c.cmsg_type == libc::IPV6_RECVERR);
                if is_recverr {
                    // SAFETY: IP_RECVERR data is a sock_extended_err.
                    let ee: libc::sock_extended_err =
                        unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cm).cast()) };
                    if ee.ee_origin != SO_EE_ORIGIN_ZEROCOPY || ee.ee_errno != 0 {
                        return Err(io::Error::other(format!(
                            "unexpected error-queue message: origin {} errno {}",
                            ee.ee_origin, ee.ee_errno
                        )));
                    }
                    self.complete(
                        ee.ee_info,
                        ee.ee_data,
                        ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0,
                    )?;
                }
                // SAFETY: as above.
                cm = unsafe { libc::CMSG_NXTHDR(&msg, cm) };
            }
        }
    }

    /// Ids `lo..=hi` completed (ranges may arrive out of order).
    fn complete(&mut self, lo: u32, hi: u32, copied: bool) -> io::Result<()> {
        self.zc.notifications += 1;
        let Some(base) = self.pending.front().map(|p| p.id) else {
            return Err(io::Error::other(format!(
                "completion for ids {lo}..={hi} with nothing outstanding"
            )));
        };
        let count = hi.wrapping_sub(lo).wrapping_add(1);
        for k in 0..count {
            let id = lo.wrapping_add(k);
            let idx = id.wrapping_sub(base) as usize;
            let p = self.pending.get_mut(idx).ok_or_else(|| {
                io::Error::other(format!("completion for unknown id {id} (oldest {base})"))
            })?;
            if p.done {
                return Err(io::Error::other(format!("id {id} completed twice")));
            }
            p.done = true;
            let buf = p.buf;
            self.outstanding[buf] -= 1;
            if self.outstanding[buf] == 0 && self.sending != Some(buf) && !self.opts.reuse_early {
                self.free.push(buf);
            }
            if copied {
                self.zc.copied_ids += 1;
                self.zc.copied_bytes += p.bytes;
            } else {
                self.zc.zerocopy_ids += 1;
                self.zc.zerocopy_bytes += p.bytes;
            }
        }
        while self.pending.front().is_some_and(|p| p.done) {
            self.pending.pop_front();
        }
        Ok(())
    }

    fn acquire(&mut self) -> io::Result<usize> {
        if self.opts.reuse_early {
            return Ok(0);
        }
        let started = Instant::now();
        loop {
            if let Some(b) = self.free.pop() {
                return Ok(b);
            }
            self.zc.pool_waits += 1;
            self.drain(Some(Duration::from_millis(100)))?;
            if started.elapsed() > COMPLETION_TIMEOUT {
                return Err(io::Error::other(format!(
                    "no zero-copy completion for {COMPLETION_TIMEOUT:?} with all {} buffers in flight",
                    self.pool.len()
                )));
            }
        }
    }

    /// sendmsg(MSG_ZEROCOPY) the whole message in `buf`, surviving ENOBUFS.
    fn send_buffer(&mut self, buf: usize) -> io::Result<()> {
        let mut sent = 0usize;
        let mut enobufs_in_a_row = 0u32;
        loop {
            // Resend only what is left after an ENOBUFS part-way through the message.
            let mut skip = sent;
            let fields = &self.pool[buf].fields;
            let rest: [&[u8]; FIELDS] = std::array::from_fn(|i| {
                let p = &fields[i][..];
                let s = &p[skip.min(p.len())..];
                skip = skip.saturating_sub(p.len());
                s
            });
            let (stats, pending, next_id) = (&mut self.stats, &mut self.pending, &mut self.next_id);
            let (zc, outstanding) = (&mut self.zc, &mut self.outstanding);
            let r = sendmsg_all(self.fd, &rest, libc::MSG_ZEROCOPY, |n| {
                sent += n;
                stats.syscalls += 1;
                stats.bytes += n as u64;
                // Each call that queued data got the next notification id from the kernel.
                zc.ids += 1;
                outstanding[buf] += 1;
                pending.push_back(Pending {
                    id: *next_id,
                    bytes: n as u64,
                    buf,
                    done: false,
                });
                *next_id = next_id.wrapping_add(1);
            });
            match r {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // The socket's optmem budget is spent on pending notifications: read them
                    // (waiting briefly for one) and try again.
                    self.zc.enobufs += 1;
                    enobufs_in_a_row += 1;
                    if self.pending.is_empty() && enobufs_in_a_row > 100 {
                        return Err(io::Error::other(
                            "sendmsg(MSG_ZEROCOPY) keeps failing with ENOBUFS with no \
                             notification outstanding: net.core.optmem_max is too small",
                        ));
                    }
                    self.drain(Some(Duration::from_millis(10)))?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Sender for ZeroCopySender {
    fn send(&mut self, seq: u64, measured: bool) -> io::Result<()> {
        self.sends += 1;
        if self.sends.is_multiple_of(DRAIN_EVERY) {
            self.drain(None)?;
        }
        let buf = self.acquire()?;
        self.sending = Some(buf);
        self.pool[buf].stamp(seq, measured);
        let r = self.send_buffer(buf);
        self.sending = None;
        if self.outstanding[buf] == 0 && !self.opts.reuse_early {
            // Every id of this message already completed (or none was issued).
            self.free.push(buf);
        }
        r
    }

    fn finish(&mut self) -> io::Result<SenderStats> {
        let started = Instant::now();
        while !self.pending.is_empty() {
            if started.elapsed() > COMPLETION_TIMEOUT {
                return Err(io::Error::other(format!(
                    "{} zero-copy sends never completed within {COMPLETION_TIMEOUT:?}",
                    self.pending.len()
                )));
            }
            self.drain(Some(Duration::from_millis(100)))?;
        }
        let mut s = self.stats.clone();
        s.zerocopy = Some(self.zc.clone());
        Ok(s)
    }
}

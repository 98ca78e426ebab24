//! The three ways of sending a message, behind one trait.
use std::{io, os::fd::RawFd};

use serde::{Deserialize, Serialize};

use crate::bench::message::{AlignedBuf, FIELDS, Message};

/// Sends whole messages on a connected socket.
pub trait Sender: Send {
    /// Send message `seq` completely (looping over partial sends).
    fn send(&mut self, seq: u64, measured: bool) -> io::Result<()>;
    /// Hand the kernel whatever `send` queued without submitting (io_uring batches); `true`
    /// if there was something.
    fn flush(&mut self) -> io::Result<bool> {
        Ok(false)
    }
    /// Make sure the kernel no longer needs any of our buffers, then report.
    fn finish(&mut self) -> io::Result<SenderStats>;
}

/// What a sender did, from its own point of view.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SenderStats {
    /// send/sendmsg/sendfile system calls, or io_uring send requests, that returned
    /// successfully.
    pub syscalls: u64,
    /// Bytes those calls accepted.
    pub bytes: u64,
    /// Bytes copied in user space before sending (two-copy's serialization).
    pub user_copy_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zerocopy: Option<ZeroCopyStats>,
    /// The io_uring modes: how the ring was driven.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uring: Option<UringStats>,
}

/// How the io_uring senders ran, for the record.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UringStats {
    /// Messages per submitted chain at most (`--uring-depth`).
    pub depth: usize,
    /// `io_uring_enter` calls that submitted sends.
    pub submits: u64,
    /// Send requests that failed and were submitted again: a cancelled link, or a flag the
    /// kernel refused (the tracer counts them as failed requests).
    pub resubmitted: u64,
    /// SEND_ZC: buffers registered with the ring (fixed buffers).
    pub fixed_buffers: bool,
    /// SEND_ZC: the kernel reported per notification whether it copied.
    pub usage_reported: bool,
}

/// What the kernel told us about our zero-copy sends.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ZeroCopyStats {
    /// Calls that got a notification id.
    pub ids: u64,
    /// Notifications read from the error queue (each covers a range of ids).
    pub notifications: u64,
    /// Ids completed with the pages sent by reference.
    pub zerocopy_ids: u64,
    /// Ids completed with `SO_EE_CODE_ZEROCOPY_COPIED`: the kernel copied anyway.
    pub copied_ids: u64,
    pub zerocopy_bytes: u64,
    pub copied_bytes: u64,
    /// Completions that did not say whether the kernel copied (io_uring SEND_ZC on kernels
    /// before 6.2, which cannot report it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unknown_ids: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unknown_bytes: u64,
    /// `ENOBUFS` returned by sendmsg (then drained and retried).
    pub enobufs: u64,
    /// Times a send waited for a completion to free a buffer.
    pub pool_waits: u64,
    /// recvmsg(MSG_ERRQUEUE) calls.
    pub errqueue_reads: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl ZeroCopyStats {
    /// Fraction of completed bytes the kernel copied anyway (of those it said).
    pub fn copied_fraction(&self) -> Option<f64> {
        let total = self.copied_bytes + self.zerocopy_bytes;
        (total > 0).then(|| self.copied_bytes as f64 / total as f64)
    }
}

/// `sendmsg(fd, iov, flags)` until every byte of `parts` is accepted. Calls `on_call(n)` after
/// each successful call with the bytes it accepted. Errors other than EINTR are returned as is
/// (with what was sent so far lost: the caller decides whether that is fatal).
pub fn sendmsg_all(
    fd: RawFd,
    parts: &[&[u8]],
    flags: libc::c_int,
    mut on_call: impl FnMut(usize),
) -> io::Result<()> {
    assert!(parts.len() <= FIELDS, "at most {FIELDS} parts");
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = 0usize;
    // A fixed array: no allocation per message on the hot path.
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; FIELDS];
    while done < total {
        // Rebuild the iovec past what was already sent (rare: blocking TCP sends are whole).
        let mut used = 0;
        let mut skip = done;
        for p in parts {
            if skip >= p.len() {
                skip -= p.len();
                continue;
            }
            iov[used] = libc::iovec {
                iov_base: p[skip..].as_ptr() as *mut libc::c_void,
                iov_len: p.len() - skip,
            };
            used += 1;
            skip = 0;
        }
        // SAFETY: a zeroed msghdr is valid; the iovecs point into `parts`, alive for the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = used;
        // SAFETY: valid fd and msghdr.
        let n = unsafe { libc::sendmsg(fd, &msg, flags | libc::MSG_NOSIGNAL) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        on_call(n as usize);
        done += n as usize;
    }
    Ok(())
}

/// Serialize the 8 fields into one buffer (copy 1, user space), then `send` it (copy 2, kernel).
pub struct TwoCopy {
    fd: RawFd,
    msg: Message,
    buf: AlignedBuf,
    stats: SenderStats,
}

impl TwoCopy {
    pub fn new(fd: RawFd, conn: u32, size: usize) -> TwoCopy {
        TwoCopy {
            fd,
            msg: Message::new(conn, size),
            buf: AlignedBuf::new(size, AlignedBuf::PAGE),
            stats: SenderStats::default(),
        }
    }
}

impl Sender for TwoCopy {
    fn send(&mut self, seq: u64, measured: bool) -> io::Result<()> {
        self.msg.stamp(seq, measured);
        self.stats.user_copy_bytes += self.msg.serialize_into(&mut self.buf) as u64;
        let stats = &mut self.stats;
        let mut rest: &[u8] = &self.buf;
        while !rest.is_empty() {
            // SAFETY: valid fd and buffer.
            let n = unsafe {
                libc::send(
                    self.fd,
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            stats.syscalls += 1;
            stats.bytes += n as u64;
            rest = &rest[n as usize..];
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<SenderStats> {
        Ok(self.stats.clone())
    }
}

/// `sendmsg` with an 8-entry iovec pointing at the fields: the kernel gathers them (one copy).
pub struct OneCopy {
    fd: RawFd,
    msg: Message,
    stats: SenderStats,
}

impl OneCopy {
    pub fn new(fd: RawFd, conn: u32, size: usize) -> OneCopy {
        OneCopy {
            fd,
            msg: Message::new(conn, size),
            stats: SenderStats::default(),
        }
    }
}

impl Sender for OneCopy {
    fn send(&mut self, seq: u64, measured: bool) -> io::Result<()> {
        self.msg.stamp(seq, measured);
        let parts: [&[u8]; FIELDS] = std::array::from_fn(|i| &self.msg.fields[i][..]);
        let stats = &mut self.stats;
        sendmsg_all(self.fd, &parts, 0, |n| {
            stats.syscalls += 1;
            stats.bytes += n as u64;
        })
    }

    fn finish(&mut self) -> io::Result<SenderStats> {
        Ok(self.stats.clone())
    }
}

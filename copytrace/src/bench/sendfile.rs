//! `sendfile(2)` sender: the message's bytes come from a file in the page cache, attached to
//! the socket by reference (what nginx, Kafka and `iperf3 -Z` do).
//!
//! The file is a memfd (tmpfs, nothing left on disk) written once per connection with a ring
//! of messages. Only the 8 stamps of a slot are rewritten per message, through a shared
//! mapping. sendfile gives no completion: a page it attached stays referenced until TCP has
//! sent and acknowledged it *and*, over a local path, until the receiver has read it. The ring
//! is therefore larger than everything the two sockets can hold (twice the largest send buffer
//! plus the largest receive buffer the kernel would grant), so a slot is rewritten only after
//! its previous bytes were consumed. A slot rewritten too early shows up at the receiver as a
//! stamp from the wrong message.
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    ptr::NonNull,
};

use crate::bench::{
    message::{fill_contiguous, stamp_contiguous},
    sender::{Sender, SenderStats},
};

/// The most bytes the kernel lets a TCP socket pair hold: the largest send buffer plus the
/// largest receive buffer (autotuning maxima, or twice the setsockopt caps), from the calling
/// thread's network namespace.
fn socket_pair_capacity() -> io::Result<u64> {
    let read = |path: &str| -> io::Result<Vec<u64>> {
        let s = std::fs::read_to_string(path)
            .map_err(|e| io::Error::new(e.kind(), format!("reading {path}: {e}")))?;
        Ok(s.split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect())
    };
    let last = |v: Vec<u64>| v.last().copied().unwrap_or(0);
    let snd = last(read("/proc/sys/net/ipv4/tcp_wmem")?)
        .max(2 * last(read("/proc/sys/net/core/wmem_max")?));
    let rcv = last(read("/proc/sys/net/ipv4/tcp_rmem")?)
        .max(2 * last(read("/proc/sys/net/core/rmem_max")?));
    Ok(snd + rcv)
}

/// A shared, writable mapping of a whole file; unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by one sender, which is moved between threads, never shared.
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(fd: RawFd, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh shared mapping of `len` bytes of a file at least that long.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("mmap of the memfd: {e}")));
        }
        Ok(Mapping {
            ptr: NonNull::new(p.cast()).expect("mmap never returns NULL on success"),
            len,
        })
    }

    fn slice(&mut self, off: usize, len: usize) -> &mut [u8] {
        assert!(off + len <= self.len);
        // SAFETY: within the mapping, which lives as long as `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(off), len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

pub struct SendfileSender {
    sock: RawFd,
    file: OwnedFd,
    map: Mapping,
    size: usize,
    slots: usize,
    next: usize,
    stats: SenderStats,
}

impl SendfileSender {
    pub fn new(sock: RawFd, conn: u32, size: usize) -> io::Result<SendfileSender> {
        let slots = (2 * socket_pair_capacity()?).div_ceil(size as u64).max(2) as usize;
        let len = slots
            .checked_mul(size)
            .ok_or_else(|| io::Error::other("sendfile ring size overflows"))?;
        // SAFETY: a NUL-terminated name; flags valid.
        let fd = unsafe { libc::memfd_create(c"copytrace-sendfile".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("memfd_create: {e}")));
        }
        // SAFETY: a descriptor we own from here on.
        let file = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain ftruncate on our memfd.
        if unsafe { libc::ftruncate(file.as_raw_fd(), len as libc::off_t) } != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("sizing the {len}-byte sendfile ring: {e}"),
            ));
        }
        let mut map = Mapping::new(file.as_raw_fd(), len)?;
        // Written once: every slot holds the connection's pattern; stamps come per message.
        let first = map.slice(0, size);
        fill_contiguous(first, conn);
        let first = first.to_vec();
        for s in 1..slots {
            map.slice(s * size, size).copy_from_slice(&first);
        }
        Ok(SendfileSender {
            sock,
            file,
            map,
            size,
            slots,
            next: 0,
            stats: SenderStats::default(),
        })
    }
}

impl Sender for SendfileSender {
    fn send(&mut self, seq: u64, measured: bool) -> io::Result<()> {
        let slot = self.next;
        self.next = (self.next + 1) % self.slots;
        let start = slot * self.size;
        stamp_contiguous(self.map.slice(start, self.size), seq, measured);
        let mut off = start as libc::off_t;
        let end = (start + self.size) as libc::off_t;
        while off < end {
            // SAFETY: valid descriptors; the kernel advances `off`.
            let n = unsafe {
                libc::sendfile(
                    self.sock,
                    self.file.as_raw_fd(),
                    &mut off,
                    (end - off) as usize,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io::Error::new(e.kind(), format!("sendfile: {e}")));
            }
            if n == 0 {
                return Err(io::Error::other("sendfile sent nothing"));
            }
            self.stats.syscalls += 1;
            self.stats.bytes += n as u64;
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<SenderStats> {
        Ok(self.stats.clone())
    }
}

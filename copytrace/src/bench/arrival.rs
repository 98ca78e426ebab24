//! When received bytes reached the socket, not when the receiving thread got around to them.
//!
//! A stream's receiver times its window by message ends. Taken at the return of `read()`,
//! those times include however long the receiver was off the CPU with the data already
//! queued: a CI run on this 2-vCPU VM saw the receiver's window 24.5 ms longer than the
//! sender's, and a 30 ms sleep injected into the receiver just after the sender's last send
//! returned reproduces it. The kernel stamps each packet as it is received (`SO_TIMESTAMPNS`),
//! and TCP's `recvmsg` hands back the stamp of the last packet it read from: the time the
//! newest byte of the read arrived. A stall with nothing queued (the sender starved or
//! blocked, a delayed ACK holding data back) still delays the arrival, so it is still in the
//! window, as it is in the sender's. So is a stall with the receive buffer full, which holds
//! the sender's last bytes back after its send returned: [`StampedRead::waited`] measures
//! that one, and the record reports it (`receiver_wait_ns`).
use std::{
    io,
    net::TcpStream,
    os::fd::AsRawFd,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::bench::sockopt::set_int_opt;

/// Ask the kernel to stamp the packets of `s` as they arrive.
///
/// Turning stamps on enables receive timestamping machine-wide (a static key, switched from a
/// work queue), so the first packets after this call may arrive unstamped: their reads fall
/// back to the read time, which [`StampedRead::stamped`] says.
pub fn enable(s: &TcpStream) -> io::Result<()> {
    set_int_opt(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
}

/// One read: how many bytes, and when the newest of them arrived.
#[derive(Clone, Copy, Debug)]
pub struct StampedRead {
    pub len: usize,
    /// The arrival of the read's newest byte, on the monotonic clock; the read's return when
    /// the kernel gave no stamp.
    pub at: Instant,
    /// Whether `at` is the kernel's arrival stamp.
    pub stamped: bool,
    /// When the read returned.
    pub returned: Instant,
}

impl StampedRead {
    /// How long the read's newest byte sat queued before this read took it: the time the
    /// reader spent elsewhere (off the CPU, verifying) while data waited for it.
    pub fn waited(&self) -> Duration {
        self.returned.duration_since(self.at)
    }
}

/// `recvmsg` into `buf`, retried on EINTR. `len == 0` is the end of the stream.
pub fn read(s: &TcpStream, buf: &mut [u8]) -> io::Result<StampedRead> {
    // Room for one `struct timespec` control message, 8-byte aligned as cmsghdr needs.
    let mut control = [0u64; 8];
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: zeroed msghdr is valid; the pointers below outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: valid fd; msg points at live buffers of the lengths it states.
        let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, 0) };
        let (now, wall) = (Instant::now(), SystemTime::now());
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let arrived = arrival_stamp(&msg);
        return Ok(StampedRead {
            len: n as usize,
            at: arrived.map_or(now, |a| back_dated(now, wall, a)),
            stamped: arrived.is_some(),
            returned: now,
        });
    }
}

/// The `SCM_TIMESTAMPNS` control message of a completed `recvmsg`, if any.
fn arrival_stamp(msg: &libc::msghdr) -> Option<SystemTime> {
    // SAFETY: msg was filled in by recvmsg; the CMSG macros stay inside msg_control.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return Some(UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

/// The monotonic instant `arrived` (a wall-clock stamp) stands for, given that `now` and
/// `wall` were read together: the bytes are `wall - arrived` old. A stamp from the future (a
/// wall clock stepped back in between) counts as now.
fn back_dated(now: Instant, wall: SystemTime, arrived: SystemTime) -> Instant {
    let age = wall.duration_since(arrived).unwrap_or(Duration::ZERO);
    now.checked_sub(age).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{io::Write, net::TcpListener, thread};

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let tx = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (rx, _) = l.accept().unwrap();
        enable(&rx).unwrap();
        (tx, rx)
    }

    /// Bytes left queued for 30 ms are timed when they came, not when they were read, and never
    /// before they were sent: a reader that answered "now" fails the first bound, one that
    /// back-dated by the wrong clock the second.
    #[test]
    fn a_read_is_timed_by_when_its_bytes_arrived() {
        let (mut tx, rx) = pair();
        let mut buf = [0u8; 64];
        // The first packets after enabling may go unstamped (see `enable`): warm up.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            tx.write_all(b"x").unwrap();
            if read(&rx, &mut buf).unwrap().stamped {
                break;
            }
            assert!(Instant::now() < deadline, "no receive stamps within 5 s");
            thread::sleep(Duration::from_millis(10));
        }
        let sent = Instant::now();
        tx.write_all(b"late").unwrap();
        thread::sleep(Duration::from_millis(30));
        let late = read(&rx, &mut buf).unwrap();
        assert!(late.stamped && late.len == 4, "{late:?}");
        assert!(late.at >= sent, "arrived before it was sent: {late:?}");
        assert!(
            late.waited() >= Duration::from_millis(30),
            "a read 30 ms after the bytes came was timed {:?} before its return",
            late.waited()
        );

        // A reader already waiting when the bytes come: timed between the write and its own
        // return (how soon it wakes is the scheduler's business, so no bound on the gap).
        let reader = thread::spawn(move || read(&rx, &mut [0u8; 64]).unwrap());
        thread::sleep(Duration::from_millis(30));
        let sent = Instant::now();
        tx.write_all(b"prompt").unwrap();
        let prompt = reader.join().unwrap();
        assert!(prompt.stamped && prompt.len == 6, "{prompt:?}");
        assert!(
            sent <= prompt.at && prompt.at <= prompt.returned,
            "{prompt:?}"
        );
    }

    #[test]
    fn the_end_of_the_stream_is_a_zero_length_read() {
        let (tx, rx) = pair();
        drop(tx);
        let r = read(&rx, &mut [0u8; 16]).unwrap();
        assert_eq!(r.len, 0);
    }

    #[test]
    fn a_stamp_from_the_future_counts_as_now() {
        let (now, wall) = (Instant::now(), SystemTime::now());
        assert_eq!(back_dated(now, wall, wall + Duration::from_secs(1)), now);
        assert_eq!(
            back_dated(now, wall, wall - Duration::from_millis(5)),
            now - Duration::from_millis(5)
        );
    }
}

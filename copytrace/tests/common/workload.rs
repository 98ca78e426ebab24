//! One workload every tier sees alike, and the check that they agree on it: send, sendmsg
//! with an iovec and MSG_ZEROCOPY sends over loopback from this process, their receives, then
//! sendfile, io_uring SEND and SEND_ZC from a `copytrace bench` child. Used by the guest's
//! four-tier check and the host's two tracepoint tiers.
#![allow(dead_code)] // each test binary uses its part

use std::{
    io::Read,
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use copytrace::trace::{Snapshot, Tier, TraceOptions, Tracer};

use crate::common::{TierView, tiers_agree};

pub const PAGE: usize = 4096;
pub const SENDS: usize = 16;
pub const SEND_LEN: usize = 64 * 1024;

/// A page-aligned buffer, so the pinned-page arithmetic is exact.
pub struct Aligned {
    pub ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    pub fn new(len: usize) -> Aligned {
        let layout = std::alloc::Layout::from_size_align(len, PAGE).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        Aligned { ptr, layout }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated above with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

/// Read zero-copy completions until `n` ids are done.
pub fn wait_completions(fd: i32, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut done = 0;
    while done < n {
        assert!(Instant::now() < deadline, "only {done}/{n} completions");
        let mut pfd = libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        };
        // SAFETY: valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 100) };
        loop {
            let mut control = [0u64; 16];
            // SAFETY: zeroed msghdr is valid.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control);
            // SAFETY: valid fd and msghdr.
            let r = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
            if r < 0 {
                break;
            }
            // SAFETY: walking the control buffer the kernel filled.
            let cm = unsafe { libc::CMSG_FIRSTHDR(&msg) };
            if !cm.is_null() {
                // SAFETY: IP_RECVERR carries a sock_extended_err.
                let ee: libc::sock_extended_err =
                    unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cm).cast()) };
                done += ee.ee_data - ee.ee_info + 1;
            }
        }
    }
}

/// Send SENDS × SEND_LEN bytes from a page-aligned buffer, with or without MSG_ZEROCOPY.
/// Bytes TCP retransmitted on `fd` (a retransmitted zero-copy skb is copied later again).
pub fn bytes_retransmitted(fd: i32) -> u64 {
    // SAFETY: a zeroed tcp_info is valid; the kernel fills up to `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: valid fd, buffer and length.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_bytes_retrans
}

/// How a phase hands its bytes to the socket.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// send(2): copied from user memory.
    Send,
    /// sendmsg(2) with each message split over [`IOVECS`] iovecs: copied, piece by piece.
    SendmsgIovec,
    /// send(2) with MSG_ZEROCOPY: pages pinned and attached, copied later over loopback.
    ZeroCopy,
}

pub const IOVECS: usize = 4;

/// One message of `SEND_LEN` bytes at `at`, the way `via` sends it; what the call returned.
pub fn send_one(fd: i32, at: *mut u8, via: Via) -> isize {
    match via {
        Via::SendmsgIovec => {
            let piece = SEND_LEN / IOVECS;
            let mut iov: Vec<libc::iovec> = (0..IOVECS)
                .map(|j| libc::iovec {
                    // SAFETY: inside the message, which is inside the buffer.
                    iov_base: unsafe { at.add(j * piece) }.cast(),
                    iov_len: piece,
                })
                .collect();
            // SAFETY: a zeroed msghdr is valid; the iovecs outlive the call.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = IOVECS;
            // SAFETY: valid fd and msghdr.
            unsafe { libc::sendmsg(fd, &msg, 0) }
        }
        Via::Send | Via::ZeroCopy => {
            let flags = if via == Via::ZeroCopy {
                libc::MSG_ZEROCOPY
            } else {
                0
            };
            // SAFETY: the buffer outlives the send and its completion.
            unsafe { libc::send(fd, at.cast(), SEND_LEN, flags) }
        }
    }
}

/// Send the phase's bytes over loopback; returns (bytes received, bytes retransmitted).
pub fn send_phase(via: Via) -> (u64, u64) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let rx = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                return total;
            }
            total += n as u64;
        }
    });
    let s = TcpStream::connect(addr).unwrap();
    let fd = s.as_raw_fd();
    let buf = Aligned::new(SEND_LEN * SENDS);
    if via == Via::ZeroCopy {
        let one: libc::c_int = 1;
        // SAFETY: valid fd and option.
        let rc =
            unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, 60, (&one as *const i32).cast(), 4) };
        assert_eq!(rc, 0, "SO_ZEROCOPY");
    }
    for i in 0..SENDS {
        // SAFETY: message i lies inside the buffer.
        let n = send_one(fd, unsafe { buf.ptr.add(i * SEND_LEN) }, via);
        assert_eq!(
            n,
            SEND_LEN as isize,
            "send: {}",
            std::io::Error::last_os_error()
        );
    }
    if via == Via::ZeroCopy {
        wait_completions(fd, SENDS as u32);
    }
    let retransmitted = bytes_retransmitted(fd);
    drop(s);
    let got = rx.join().unwrap();
    assert_eq!(got, (SENDS * SEND_LEN) as u64, "receiver ground truth");
    (got, retransmitted)
}

/// sendfile, io_uring SEND and io_uring SEND_ZC over loopback, from an untraced-by-itself
/// `copytrace bench` child (the tracers around it follow it).
pub fn new_modes_child() {
    // NEW_MODES_BENCH starts with the subcommand.
    crate::common::run_bench("agreement-modes", &crate::common::NEW_MODES_BENCH[1..]);
}

/// Tracers capped at each of `caps`, attached at once to the workload (following the child):
/// what disagrees, one line per path and pair of tiers. Prints the table.
pub fn tiers_agree_on_one_workload(caps: &[Tier]) -> Vec<String> {
    // Following children: the new modes run in a `copytrace bench` child.
    let tracers: Vec<Tracer> = caps
        .iter()
        .map(|&best_tier| {
            Tracer::start(&TraceOptions {
                pids: vec![std::process::id()],
                include_self: true,
                follow_children: true,
                best_tier,
                ..Default::default()
            })
            .expect("tracer starts")
        })
        .collect();
    let before = common_snapshots(&tracers);
    for via in [Via::Send, Via::SendmsgIovec, Via::ZeroCopy] {
        send_phase(via);
    }
    new_modes_child();
    // Late deferred copies and completions of the zero-copy phase land before the snapshots.
    std::thread::sleep(Duration::from_millis(300));
    let after = common_snapshots(&tracers);
    let views: Vec<TierView> = tracers
        .iter()
        .zip(before.iter().zip(&after))
        .zip(caps.iter().copied())
        .map(|((t, (b, a)), cap)| TierView::of(cap, &a.since(b), t.decisions()))
        .collect();
    tiers_agree(&views)
}

/// One snapshot per tracer, all of the same events. The tracers are read one after another,
/// and an event that lands in between (a deferred copy or completion of earlier traffic, in
/// softirq) would count for the later ones only: so the first tracer is read again after
/// the last, and the round is repeated until its counts held still across it. Off-CPU time
/// is left out of that test: reading the maps is itself time off and on the CPU.
fn common_snapshots(tracers: &[Tracer]) -> Vec<Snapshot> {
    let counts = |s: &Snapshot| -> Vec<_> {
        s.rows
            .iter()
            .filter(|(k, _)| k.path != copytrace_common::path::OFF_CPU)
            .map(|(k, v)| (*k, v.count, v.bytes))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let snaps: Vec<Snapshot> = tracers.iter().map(|t| t.snapshot().unwrap()).collect();
        let again = tracers[0].snapshot().unwrap();
        if counts(&again) == counts(&snaps[0]) {
            return snaps;
        }
        assert!(
            Instant::now() < deadline,
            "the traced counts never held still for one round of snapshots in 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

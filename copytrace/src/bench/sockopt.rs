//! Integer socket options, the one `setsockopt` the benchmark's ends share.
use std::{io, os::fd::RawFd};

/// `setsockopt(fd, level, opt, &v)` for an `int` option.
pub fn set_int_opt(fd: RawFd, level: i32, opt: i32, v: i32) -> io::Result<()> {
    // SAFETY: the kernel checks fd; the option buffer is a live int of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

//! The sender behind each mode.
use std::{io, os::fd::RawFd};

use crate::bench::{
    Mode,
    sender::{OneCopy, Sender, TwoCopy},
    sendfile::SendfileSender,
    uring::UringSender,
    zerocopy::{ZeroCopyOptions, ZeroCopySender},
};

/// A sender of `size`-byte messages on `fd` for connection `conn`, the `mode` way.
pub fn new_sender(
    mode: Mode,
    fd: RawFd,
    conn: u32,
    size: usize,
    zc: ZeroCopyOptions,
) -> io::Result<Box<dyn Sender>> {
    Ok(match mode {
        Mode::TwoCopy => Box::new(TwoCopy::new(fd, conn, size)),
        Mode::OneCopy => Box::new(OneCopy::new(fd, conn, size)),
        Mode::ZeroCopy => Box::new(ZeroCopySender::new(fd, conn, size, zc)?),
        Mode::Sendfile => Box::new(SendfileSender::new(fd, conn, size)?),
        Mode::UringSend => Box::new(UringSender::new(fd, conn, size, false, zc)?),
        Mode::UringSendZc => Box::new(UringSender::new(fd, conn, size, true, zc)?),
    })
}

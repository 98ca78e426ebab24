//! The benchmark message and its byte-exact verification.
//!
//! A message of `size` bytes is a struct of 8 separately heap-allocated fields of `size / 8`
//! bytes each (the remainder goes to the last fields), like the original study's struct of 8
//! strings. Every byte is checkable by the receiver:
//!
//! * each field starts with an 8-byte **stamp**: `seq << 4 | field << 1 | measured`;
//! * every other byte is a fixed pattern of (connection, position in the message).
//!
//! Senders only rewrite the 8 stamps (64 bytes) per message, so generating data costs nothing
//! next to the copies being measured, yet a buffer reused before the kernel is done with it
//! (zero-copy lifetime bug) shows up as a stamp from the wrong message.
use std::time::Instant;

use crate::bench::Verify;

pub const FIELDS: usize = 8;
pub const STAMP: usize = 8;
/// Smallest message: every field must hold its stamp.
pub const MIN_SIZE: usize = FIELDS * STAMP;

/// Field lengths for a message of `size` bytes.
pub fn field_lengths(size: usize) -> [usize; FIELDS] {
    let base = size / FIELDS;
    let extra = size % FIELDS;
    std::array::from_fn(|i| base + usize::from(i >= FIELDS - extra))
}

/// Offsets of the fields within the message as it appears on the wire.
pub fn field_offsets(size: usize) -> [usize; FIELDS] {
    let lens = field_lengths(size);
    let mut off = [0; FIELDS];
    for i in 1..FIELDS {
        off[i] = off[i - 1] + lens[i - 1];
    }
    off
}

pub fn stamp(seq: u64, field: usize, measured: bool) -> u64 {
    (seq << 4) | ((field as u64) << 1) | u64::from(measured)
}

/// The fixed pattern byte at `pos` of a message on connection `conn`.
#[inline]
pub fn pattern_byte(conn: u32, pos: usize) -> u8 {
    // A multiplicative hash: every input bit below 56 (position and connection) reaches the
    // top byte.
    let x = (pos as u64 ^ (u64::from(conn) << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8
}

/// One message: 8 heap-allocated fields.
#[derive(Clone)]
pub struct Message {
    pub fields: Vec<AlignedBuf>,
}

impl Message {
    pub fn new(conn: u32, size: usize) -> Message {
        let offs = field_offsets(size);
        let fields = field_lengths(size)
            .iter()
            .zip(offs)
            .map(|(&len, off)| {
                let mut f = AlignedBuf::new(len, AlignedBuf::LINE);
                for (i, b) in f.iter_mut().enumerate() {
                    *b = pattern_byte(conn, off + i);
                }
                f
            })
            .collect();
        Message { fields }
    }

    /// Write the 8 stamps for message `seq`.
    pub fn stamp(&mut self, seq: u64, measured: bool) {
        for (i, f) in self.fields.iter_mut().enumerate() {
            f[..STAMP].copy_from_slice(&stamp(seq, i, measured).to_le_bytes());
        }
    }

    /// Serialize the 8 fields into `dst` (the user-space copy of the two-copy senders);
    /// returns the bytes copied.
    pub fn serialize_into(&self, dst: &mut [u8]) -> usize {
        let mut off = 0;
        for f in &self.fields {
            dst[off..off + f.len()].copy_from_slice(f);
            off += f.len();
        }
        off
    }

    pub fn len(&self) -> usize {
        self.fields.iter().map(|f| f.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A message laid out contiguously as it appears on the wire (the senders that hand the kernel
/// one buffer or a file: io_uring, sendfile): the pattern of connection `conn` in `dst`, whose
/// length is the message size. Stamps are written per message with [`stamp_contiguous`].
pub fn fill_contiguous(dst: &mut [u8], conn: u32) {
    for (i, b) in dst.iter_mut().enumerate() {
        *b = pattern_byte(conn, i);
    }
}

/// Write message `seq`'s 8 stamps into a contiguous message (see [`fill_contiguous`]).
pub fn stamp_contiguous(dst: &mut [u8], seq: u64, measured: bool) {
    for (i, off) in field_offsets(dst.len()).into_iter().enumerate() {
        dst[off..off + STAMP].copy_from_slice(&stamp(seq, i, measured).to_le_bytes());
    }
}

/// An aligned byte buffer: message fields (cache-line aligned), send and receive buffers
/// (page-aligned). The kernel copies with `rep movsb`, which on some CPUs (the CI VM's AMD
/// EPYC) runs several times slower from or into memory that is not cache-line aligned — and
/// malloc returns page + 16 bytes for large blocks. With malloc'd buffers the receiver spent
/// 4× longer per byte in `_copy_to_iter` than the sender in `_copy_from_iter` (perf,
/// cpu-clock samples), and the two-copy sender the reverse; iperf3's buffers are
/// page-aligned.
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
    align: usize,
}

impl AlignedBuf {
    /// Cache-line alignment, for the many small fields of small messages.
    pub const LINE: usize = 64;
    pub const PAGE: usize = 4096;

    /// `len` zero bytes starting at a multiple of `align` (a power of two).
    pub fn new(len: usize, align: usize) -> AlignedBuf {
        let storage = vec![0u8; len + align];
        let start = storage.as_ptr().align_offset(align);
        AlignedBuf {
            storage,
            start,
            len,
            align,
        }
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

impl Clone for AlignedBuf {
    fn clone(&self) -> AlignedBuf {
        let mut b = AlignedBuf::new(self.len, self.align);
        b.copy_from_slice(self);
        b
    }
}

/// What the verifier found wrong, precisely enough to debug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption(pub String);

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a byte stream of consecutive messages, every byte, incrementally.
pub struct Verifier {
    conn: u32,
    size: usize,
    /// Compare every byte (else only the stamps).
    full: bool,
    /// The message with all stamps zeroed.
    template: Vec<u8>,
    offsets: [usize; FIELDS],
    /// Position within the current message.
    off: usize,
    /// Sequence number expected for the current message.
    seq: u64,
    stamp_buf: [u8; STAMP],
    /// Measured flag of the current message (from its first stamp), if read.
    cur_measured: Option<bool>,
    cur_start: Option<Instant>,
    seen_measured: bool,
    done_measuring: bool,
    pub messages: u64,
    pub bytes: u64,
    pub measured_messages: u64,
    /// The measured window's start, set once the first measured message is complete: the
    /// end of the unmeasured message before it, or the first measured message's start when
    /// none came before. Ends, not starts, as the sender counts: a sender stalled between its
    /// last unmeasured send and its first measured one (a vCPU stolen for 13 ms, say) leaves
    /// both windows the same idle time, where a window from the first measured byte here
    /// left it out of the receiver's alone.
    pub window_start: Option<Instant>,
    pub last_measured_end: Option<Instant>,
    /// When the last unmeasured message before the measured ones was complete.
    last_unmeasured_end: Option<Instant>,
}

impl Verifier {
    pub fn new(conn: u32, size: usize, verify: Verify) -> Verifier {
        let mut template: Vec<u8> = (0..size).map(|p| pattern_byte(conn, p)).collect();
        let offsets = field_offsets(size);
        for &o in &offsets {
            template[o..o + STAMP].fill(0);
        }
        Verifier {
            conn,
            size,
            full: verify == Verify::Full,
            template,
            offsets,
            off: 0,
            seq: 0,
            stamp_buf: [0; STAMP],
            cur_measured: None,
            cur_start: None,
            seen_measured: false,
            done_measuring: false,
            messages: 0,
            bytes: 0,
            measured_messages: 0,
            window_start: None,
            last_measured_end: None,
            last_unmeasured_end: None,
        }
    }

    /// Start expecting message `seq` next (request/response: the client knows what it asked).
    pub fn expect_seq(&mut self, seq: u64) {
        debug_assert_eq!(self.off, 0);
        self.seq = seq;
    }

    /// Feed the next bytes of the stream, received at `now`.
    pub fn feed(&mut self, mut data: &[u8], now: Instant) -> Result<(), Corruption> {
        self.bytes += data.len() as u64;
        while !data.is_empty() {
            if self.off == 0 {
                self.cur_start = Some(now);
                self.cur_measured = None;
            }
            // The next stamp at or after `off`, or the message end.
            let field = self
                .offsets
                .iter()
                .rposition(|&o| o <= self.off)
                .unwrap_or(0);
            let stamp_start = self.offsets[field];
            let n;
            if self.off < stamp_start + STAMP {
                let k = self.off - stamp_start;
                n = (STAMP - k).min(data.len());
                self.stamp_buf[k..k + n].copy_from_slice(&data[..n]);
                if k + n == STAMP {
                    self.check_stamp(field)?;
                }
            } else {
                let next = self.offsets.get(field + 1).copied().unwrap_or(self.size);
                n = (next - self.off).min(data.len());
                if self.full && data[..n] != self.template[self.off..self.off + n] {
                    let i = (0..n)
                        .find(|&i| data[i] != self.template[self.off + i])
                        .unwrap_or(0);
                    return Err(Corruption(format!(
                        "connection {}, message {}, byte {} (field {field}): expected {:#04x}, got {:#04x}",
                        self.conn,
                        self.seq,
                        self.off + i,
                        self.template[self.off + i],
                        data[i]
                    )));
                }
            }
            self.off += n;
            data = &data[n..];
            if self.off == self.size {
                self.finish_message(now);
            }
        }
        Ok(())
    }

    fn check_stamp(&mut self, field: usize) -> Result<(), Corruption> {
        let got = u64::from_le_bytes(self.stamp_buf);
        let (seq, f, measured) = (got >> 4, ((got >> 1) & 7) as usize, got & 1 == 1);
        if seq != self.seq || f != field {
            return Err(Corruption(format!(
                "connection {}, message {}, field {field}: stamp says message {seq} field {f} \
                 (a buffer was reused or data reordered)",
                self.conn, self.seq
            )));
        }
        match self.cur_measured {
            None => {
                if measured && self.done_measuring {
                    return Err(Corruption(format!(
                        "connection {}, message {}: measured flag set again after the \
                         measured window ended",
                        self.conn, self.seq
                    )));
                }
                if !measured && self.seen_measured {
                    self.done_measuring = true;
                }
                self.cur_measured = Some(measured);
            }
            Some(m) if m != measured => {
                return Err(Corruption(format!(
                    "connection {}, message {}, field {field}: measured flag differs between \
                     fields",
                    self.conn, self.seq
                )));
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn finish_message(&mut self, now: Instant) {
        if self.cur_measured == Some(true) {
            if !self.seen_measured {
                self.seen_measured = true;
                self.window_start = self.last_unmeasured_end.or(self.cur_start);
            }
            self.measured_messages += 1;
            self.last_measured_end = Some(now);
        } else if !self.seen_measured {
            self.last_unmeasured_end = Some(now);
        }
        self.messages += 1;
        self.seq += 1;
        self.off = 0;
    }

    /// The stream ended: it must end between messages.
    pub fn finish(&self) -> Result<(), Corruption> {
        if self.off != 0 {
            return Err(Corruption(format!(
                "connection {}: stream ended {} bytes into message {}",
                self.conn, self.off, self.seq
            )));
        }
        Ok(())
    }

    /// Bytes of the measured messages.
    pub fn measured_bytes(&self) -> u64 {
        self.measured_messages * self.size as u64
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn wire(m: &Message) -> Vec<u8> {
        m.fields.iter().flat_map(|f| f.iter().copied()).collect()
    }

    #[test]
    fn aligned_buffers_are_page_aligned() {
        for len in [1, 4096, 1 << 20] {
            let b = AlignedBuf::new(len, AlignedBuf::PAGE);
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % 4096, 0);
            let c = b.clone();
            assert_eq!((c.len(), c.as_ptr() as usize % 4096), (len, 0));
        }
    }

    #[test]
    fn stamps_mode_checks_stamps_only() {
        let size = 4096;
        let mut m = Message::new(1, size);
        m.stamp(0, false);
        let mut bad = wire(&m);
        bad[100] ^= 0x40;
        assert!(
            Verifier::new(1, size, Verify::Stamps)
                .feed(&bad, Instant::now())
                .is_ok()
        );
        assert!(
            Verifier::new(1, size, Verify::Full)
                .feed(&bad, Instant::now())
                .is_err()
        );
        m.stamp(1, false);
        let reused = wire(&m);
        let e = Verifier::new(1, size, Verify::Stamps)
            .feed(&reused, Instant::now())
            .unwrap_err();
        assert!(e.0.contains("stamp says message 1"), "{e}");
    }

    #[test]
    fn fields_split_the_total_size() {
        assert_eq!(field_lengths(64), [8; 8]);
        assert_eq!(field_lengths(1000), [125; 8]);
        assert_eq!(field_lengths(67), [8, 8, 8, 8, 8, 9, 9, 9]);
        assert_eq!(field_lengths(1 << 20).iter().sum::<usize>(), 1 << 20);
        let m = Message::new(3, 4099);
        assert_eq!(m.len(), 4099);
        assert_eq!(m.fields.len(), 8);
    }

    #[test]
    fn verifies_a_stream_fed_in_odd_chunks() {
        for size in [64, 67, 4096, 70_001] {
            let mut m = Message::new(7, size);
            let mut stream = Vec::new();
            for seq in 0..5 {
                m.stamp(seq, (1..4).contains(&seq));
                stream.extend(wire(&m));
            }
            let mut v = Verifier::new(7, size, Verify::Full);
            let now = Instant::now();
            for chunk in stream.chunks(13) {
                v.feed(chunk, now).unwrap();
            }
            v.finish().unwrap();
            assert_eq!(v.messages, 5);
            assert_eq!(v.measured_messages, 3);
            assert_eq!(v.measured_bytes(), 3 * size as u64);
            assert_eq!(v.bytes, 5 * size as u64);
        }
    }

    /// The window runs from the end of the last unmeasured message to the end of the last
    /// measured one (the start of the first measured one without a warm-up).
    #[test]
    fn the_window_starts_where_the_warm_up_ended() {
        let size = 4096;
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut m = Message::new(3, size);
        let mut msg = |seq: u64, measured: bool| {
            m.stamp(seq, measured);
            wire(&m)
        };
        // Warm-up ends at 1 ms; the first measured message starts arriving at 5 ms.
        let mut v = Verifier::new(3, size, Verify::Stamps);
        v.feed(&msg(0, false), at(1)).unwrap();
        let first = msg(1, true);
        v.feed(&first[..100], at(5)).unwrap();
        v.feed(&first[100..], at(6)).unwrap();
        v.feed(&msg(2, true), at(9)).unwrap();
        v.feed(&msg(3, false), at(12)).unwrap();
        assert_eq!(
            (v.window_start, v.last_measured_end),
            (Some(at(1)), Some(at(9)))
        );
        // No warm-up: from the first measured message's first bytes.
        let mut v = Verifier::new(3, size, Verify::Stamps);
        let first = msg(0, true);
        v.feed(&first[..100], at(5)).unwrap();
        v.feed(&first[100..], at(6)).unwrap();
        assert_eq!(
            (v.window_start, v.last_measured_end),
            (Some(at(5)), Some(at(6)))
        );
    }

    #[test]
    fn detects_a_flipped_byte_anywhere() {
        let size = 4096;
        let mut m = Message::new(1, size);
        m.stamp(0, false);
        let good = wire(&m);
        for pos in [0, 7, 8, 511, 512, 513, 4095] {
            let mut bad = good.clone();
            bad[pos] ^= 0x40;
            let mut v = Verifier::new(1, size, Verify::Full);
            assert!(
                v.feed(&bad, Instant::now()).is_err(),
                "byte {pos} not caught"
            );
        }
    }

    #[test]
    fn detects_a_reused_buffer() {
        // The buffer of message 0 was overwritten by message 1's stamps before it was sent.
        let size = 256;
        let mut m = Message::new(0, size);
        m.stamp(1, false);
        let mut v = Verifier::new(0, size, Verify::Stamps);
        let e = v.feed(&wire(&m), Instant::now()).unwrap_err();
        assert!(e.0.contains("stamp says message 1"), "{e}");
    }

    #[test]
    fn detects_wrong_connection_data_and_truncation() {
        let size = 128;
        let mut m = Message::new(2, size);
        m.stamp(0, false);
        let mut v = Verifier::new(3, size, Verify::Full);
        assert!(v.feed(&wire(&m), Instant::now()).is_err());
        let mut v = Verifier::new(2, size, Verify::Full);
        v.feed(&wire(&m)[..100], Instant::now()).unwrap();
        assert!(v.finish().is_err());
    }
}

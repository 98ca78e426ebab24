//! The benchmark engine: two-copy, one-copy and zero-copy TCP senders, a verifying receiver,
//! stream and request/response patterns, and sweeps over modes × sizes × threads × repeats.
pub mod arrival;
pub mod cause;
pub mod client;
pub mod message;
pub mod modes;
pub mod netns;
pub mod results;
pub mod sender;
pub mod sendfile;
pub mod server;
pub mod sockopt;
pub mod stats;
pub mod sweep;
pub mod topology;
pub mod tracing;
pub mod uring;
pub mod wire;
pub mod zerocopy;

use serde::{Deserialize, Serialize};

/// How a sender hands a message to the kernel.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// memcpy the 8 fields into one buffer, then send() it.
    TwoCopy,
    /// sendmsg() with an 8-entry iovec: the kernel gathers the fields.
    OneCopy,
    /// SO_ZEROCOPY + sendmsg(MSG_ZEROCOPY) with the iovec; buffers reused after completion.
    ZeroCopy,
    /// sendfile(2) from a page-cache (tmpfs) file: the file's pages attached by reference.
    Sendfile,
    /// io_uring IORING_OP_SEND of the serialized buffer: the io_uring twin of two-copy.
    UringSend,
    /// io_uring IORING_OP_SEND_ZC from registered buffers, reused after their notification.
    UringSendZc,
}

impl Mode {
    pub const ALL: [Mode; 6] = [
        Mode::TwoCopy,
        Mode::OneCopy,
        Mode::ZeroCopy,
        Mode::Sendfile,
        Mode::UringSend,
        Mode::UringSendZc,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::TwoCopy => "two-copy",
            Mode::OneCopy => "one-copy",
            Mode::ZeroCopy => "zero-copy",
            Mode::Sendfile => "sendfile",
            Mode::UringSend => "uring-send",
            Mode::UringSendZc => "uring-send-zc",
        }
    }

    /// Modes whose kernel may keep the sender's own pages after the call returns (completion
    /// notifications tell when it no longer does).
    pub fn zero_copy(self) -> bool {
        matches!(self, Mode::ZeroCopy | Mode::UringSendZc)
    }

    /// Modes that need io_uring.
    pub fn uring(self) -> bool {
        matches!(self, Mode::UringSend | Mode::UringSendZc)
    }
}

/// How much of every received message the receiver checks.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Verify {
    /// Every byte against the expected pattern: catches any corruption, at the cost of a
    /// second pass over the data on the receiving CPU.
    #[default]
    Full,
    /// The 8-byte stamp at the start of every field (message, field, measured flag): catches
    /// reordering and a buffer reused before the kernel was done with it, and costs nothing.
    Stamps,
}

impl Verify {
    pub fn as_str(self) -> &'static str {
        match self {
            Verify::Full => "full",
            Verify::Stamps => "stamps",
        }
    }
}

/// What the connection does.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// The client pushes messages for the whole duration (throughput).
    Stream,
    /// The client sends a 16-byte request, the server answers with one message (latency).
    Rr,
}

impl Pattern {
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Stream => "stream",
            Pattern::Rr => "rr",
        }
    }
}

/// Parse a message size: `64`, `4K`/`4KiB` (4096), `1M`/`1MiB`, `1G`/`1GiB`; `kB`/`MB`/`GB`
/// are decimal (1000-based).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size `{s}`: expected e.g. 64, 4K, 64KiB, 1M"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" | "b" => 1,
        "K" | "k" | "KiB" | "Ki" => 1 << 10,
        "M" | "MiB" | "Mi" => 1 << 20,
        "G" | "GiB" | "Gi" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => return Err(format!("invalid size unit `{u}` in `{s}`")),
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("size `{s}` is too large"))?;
    usize::try_from(v).map_err(|_| format!("size `{s}` is too large"))
}

/// A size in the largest binary unit that divides it, for labels (`4 KiB`, `1 MiB`, `100 B`).
pub fn size_label(n: usize) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("10kB"), Ok(10_000));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert!(parse_size("").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert_eq!(size_label(65536), "64 KiB");
        assert_eq!(size_label(1 << 20), "1 MiB");
        assert_eq!(size_label(100), "100 B");
    }
}

//! "Where the bytes went": every byte a traced run sent, counted once, in exactly one class.
//!
//! The tracer's paths overlap by design: a zero-copy byte is first *attached* by reference and
//! may later be *copied* by the kernel (`skb_copy_ubufs`), so stacking the paths' byte counts
//! counts it twice. The classes here partition the bytes the run's send calls accepted:
//!
//! * copied by the CPU at send time (user→kernel copy);
//! * attached by reference, then copied later by the kernel (deferred copy);
//! * attached and never copied (real zero-copy);
//! * not visible: bytes no path of this kernel's tiers could place.
//!
//! Where the deferred-copy path is not traceable (tracepoint-only kernels), the split between
//! "copied later" and "real zero-copy" comes from the benchmark's own completion codes
//! (`SO_EE_CODE_ZEROCOPY_COPIED`), and says so.
use serde::Serialize;

use crate::{bench::results::Record, trace::planner::names};

/// Where the split between copied-later and real zero-copy came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DeferredSource {
    /// The deferred-copy path was traced (`skb_copy_ubufs`).
    Traced,
    /// The zero-copy completions' `ee_code`s, as the sender read them.
    CompletionCodes,
    /// Neither: attached bytes are "not visible".
    Unknown,
}

/// The bytes of one traced run, by class. `copied_at_send + deferred + zero_copy +
/// not_visible == sent`, always; what the paths claimed beyond that is `overcounted`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ByteClasses {
    /// Bytes the run's send calls accepted (the tracer's count, cross-checked).
    pub sent: u64,
    pub copied_at_send: u64,
    pub deferred: u64,
    pub zero_copy: u64,
    pub not_visible: u64,
    /// Bytes the paths reported beyond the bytes sent (a path counting a byte twice, or two
    /// paths claiming it): 0 for a consistent trace.
    pub overcounted: u64,
    pub deferred_source: DeferredSource,
}

/// Take up to `want` from `left`; what did not fit goes to `over`.
fn take(want: u64, left: &mut u64, over: &mut u64) -> u64 {
    let v = want.min(*left);
    *left -= v;
    *over += want - v;
    v
}

impl ByteClasses {
    /// The classes of a traced run; `None` for a run without a trace.
    pub fn of(r: &Record) -> Option<ByteClasses> {
        let t = r.trace.as_ref()?;
        let b = &t.breakdown;
        let sent = t.cross_check.traced_send_bytes;
        let (mut left, mut over) = (sent, 0);
        let copied_at_send = take(b.bytes_of(names::COPY).unwrap_or(0), &mut left, &mut over);
        let attached = take(
            b.bytes_of(names::ZEROCOPY).unwrap_or(0),
            &mut left,
            &mut over,
        );
        let mut in_attached = attached;
        let (deferred, zero_copy, deferred_source) = match b.bytes_of(names::DEFERRED) {
            Some(d) => {
                let later = d + b.deferred_unattributed_bytes.unwrap_or(0);
                let deferred = take(later, &mut in_attached, &mut over);
                // The tier sees every deferred copy: the rest left from the pinned pages.
                (
                    deferred,
                    std::mem::take(&mut in_attached),
                    DeferredSource::Traced,
                )
            }
            None => match &r.zerocopy {
                Some(z) => {
                    let deferred = take(z.stats.copied_bytes, &mut in_attached, &mut over);
                    let zero = take(z.stats.zerocopy_bytes, &mut in_attached, &mut over);
                    (deferred, zero, DeferredSource::CompletionCodes)
                }
                None => (0, 0, DeferredSource::Unknown),
            },
        };
        // sendfile's page-cache pages: attached by reference, and nothing copies them later.
        let from_files = take(
            b.bytes_of(crate::trace::breakdown::SENDFILE_ATTACH)
                .unwrap_or(0),
            &mut left,
            &mut over,
        );
        Some(ByteClasses {
            sent,
            copied_at_send,
            deferred,
            zero_copy: zero_copy + from_files,
            not_visible: left + in_attached,
            overcounted: over,
            deferred_source,
        })
    }

    /// The four classes as fractions of the bytes sent (they sum to 1).
    pub fn fractions(&self) -> [f64; 4] {
        let s = self.sent.max(1) as f64;
        [
            self.copied_at_send as f64 / s,
            self.deferred as f64 / s,
            self.zero_copy as f64 / s,
            self.not_visible as f64 / s,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_never_hands_out_more_than_is_left() {
        let (mut left, mut over) = (10, 0);
        assert_eq!(take(4, &mut left, &mut over), 4);
        assert_eq!(take(9, &mut left, &mut over), 6);
        assert_eq!((left, over), (0, 3));
    }
}

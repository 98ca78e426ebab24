//! Checks shared by several integration test binaries.
use copytrace::{
    bench::{Mode, Pattern, results::Record},
    report::classes::ByteClasses,
};

/// "Where the bytes went" of every traced stream record: each byte sent in exactly one class,
/// and each class equal to what the benchmark itself knows it sent. Returns how many records
/// were checked.
pub fn assert_byte_classes_add_up(records: &[Record]) -> usize {
    let mut checked = 0;
    for r in records
        .iter()
        .filter(|r| r.traced && r.pattern == Pattern::Stream)
    {
        let what = format!("{} {} x{}", r.mode.as_str(), r.size, r.threads);
        let c = ByteClasses::of(r).unwrap_or_else(|| panic!("{what}: traced run without a trace"));
        // A path may claim more than was sent only where TCP sent bytes twice: a retransmitted
        // zero-copy segment is copied later once more (seen in the guest over loopback).
        let retransmitted = r.retransmitted_bytes.unwrap_or(0);
        assert!(
            c.overcounted <= retransmitted,
            "{what}: {} bytes overcounted, {retransmitted} retransmitted: {c:?}",
            c.overcounted
        );
        assert_eq!(
            c.copied_at_send + c.deferred + c.zero_copy + c.not_visible,
            c.sent,
            "{what}: {c:?}"
        );
        let sum: f64 = c.fractions().iter().sum();
        assert!((sum - 1.0).abs() < 1e-9, "{what}: fractions sum to {sum}");
        // Ground truth: the benchmark's own count of its message and control bytes.
        let control = r.control_bytes_client + r.control_bytes_server;
        assert_eq!(c.sent, r.send_bytes + control, "{what}: {c:?}");
        match r.mode {
            Mode::TwoCopy | Mode::OneCopy | Mode::UringSend => {
                assert_eq!(c.copied_at_send, c.sent, "{what}: {c:?}");
            }
            Mode::Sendfile => {
                // The file's pages are attached; only the control frames are copied.
                assert_eq!(c.copied_at_send, control, "{what}: {c:?}");
                assert_eq!(c.zero_copy, r.send_bytes, "{what}: {c:?}");
            }
            Mode::ZeroCopy | Mode::UringSendZc => {
                // Only the control frames are sent without MSG_ZEROCOPY.
                assert_eq!(c.copied_at_send, control, "{what}: {c:?}");
                let z = &r.zerocopy.as_ref().expect("zero-copy stats").stats;
                assert_eq!(c.deferred + c.zero_copy, r.send_bytes, "{what}: {c:?}");
                assert_eq!(c.deferred, z.copied_bytes, "{what}: {c:?}");
            }
        }
        checked += 1;
    }
    checked
}

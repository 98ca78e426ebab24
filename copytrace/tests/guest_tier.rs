//! Guest-kernel tests: the fentry and kprobe tiers, on a kernel that has them.
//!
//! `cargo xtask vm-test` boots a stock Debian kernel under QEMU and runs these there; on a
//! kernel without kprobes they fail at their first check (so `cargo xtask test` skips
//! `guest_*`). Every number is checked against what the test itself sent.
use copytrace::{
    bench::Mode,
    trace::{Breakdown, PathDecision, Snapshot, Tier, TraceOptions, Tracer},
};
use copytrace_common::{aux, path, syscall};

mod common;
#[path = "common/exporter.rs"]
mod exporter;
#[path = "common/skipcheck.rs"]
mod skipcheck;
#[path = "common/workload.rs"]
mod workload;

use workload::{PAGE, SEND_LEN, SENDS, Via, send_phase};

/// Paths that need a probe (no tracepoint shows them).
const PROBED: [&str; 5] = [
    "tcp_sendmsg",
    "user→kernel copy",
    "zero-copy attach",
    "page pinning",
    "deferred copy",
];

fn require_probe_kernel() {
    assert!(
        std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists(),
        "this kernel has no kprobes: run these tests with `cargo xtask vm-test`"
    );
}

fn tier(decisions: &[PathDecision], path: &str) -> Tier {
    decisions
        .iter()
        .find(|d| d.path == path)
        .unwrap_or_else(|| panic!("no decision for {path}"))
        .tier
}

fn start(best: Tier) -> Tracer {
    Tracer::start(&TraceOptions {
        pids: vec![std::process::id()],
        include_self: true,
        best_tier: best,
        ..Default::default()
    })
    .expect("tracer starts")
}

/// The planner, capped at `best` on a kernel with every probe: the probed paths take a probe
/// tier no better than the cap (fentry wins where allowed), system calls the raw tracepoints.
fn assert_planner_picks(best: Tier, decisions: &[PathDecision]) {
    let allowed = match best {
        Tier::Fentry => &[Tier::Fentry, Tier::Kprobe][..],
        _ => &[Tier::Kprobe][..],
    };
    for p in PROBED {
        let got = tier(decisions, p);
        assert!(allowed.contains(&got), "best {best:?}: {p} got {got:?}");
    }
    // Fentry is the best tier: with nothing refusing it, it must win where allowed.
    if best == Tier::Fentry {
        assert_eq!(tier(decisions, "tcp_sendmsg"), Tier::Fentry);
    }
    // System calls have no probe tier; raw tracepoints beat classic ones.
    assert_eq!(tier(decisions, "syscalls"), Tier::RawTp);
    println!(
        "best {best:?}: {:?}",
        decisions
            .iter()
            .map(|d| format!("{}={}", d.path, d.tier.as_str()))
            .collect::<Vec<_>>()
    );
}

fn phase_numbers(best: Tier) {
    let tracer = start(best);
    let decisions = tracer.decisions().to_vec();
    assert_planner_picks(best, &decisions);
    let total = (SENDS * SEND_LEN) as u64;
    let pages = total / PAGE as u64;

    // --- copying sends ------------------------------------------------------------------
    let s0 = tracer.snapshot().unwrap();
    send_phase(Via::Send);
    let s1 = tracer.snapshot().unwrap();
    let d: Snapshot = s1.since(&s0);
    let b = Breakdown::compute(&d, &decisions);
    let sendto = d.sum(|k| k.path == path::SYSCALL && k.op == syscall::SENDTO);
    assert_eq!(
        (sendto.count, sendto.bytes),
        (SENDS as u64, total),
        "copy: syscalls"
    );
    let copied = b.bytes_of("user→kernel copy").unwrap();
    println!("{best:?} copy phase: copied {copied} bytes, breakdown {b:?}");
    // One __check_object_size() per copy chunk, sizes summing to the payload, nothing else.
    assert_eq!(copied, total, "copy: every byte copied from user, once");
    assert_eq!(b.bytes_of("zero-copy attach"), Some(0));
    assert_eq!(b.bytes_of("page pinning"), Some(0));

    // --- zero-copy sends -----------------------------------------------------------------
    let (_, retransmitted) = send_phase(Via::ZeroCopy);
    let s2 = tracer.snapshot().unwrap();
    let d = s2.since(&s1);
    let b = Breakdown::compute(&d, &decisions);
    println!("{best:?} zero-copy phase: {b:?}");
    let zc = d.sum(|k| {
        k.path == path::SYSCALL && k.op == syscall::SENDTO && k.aux & aux::ZEROCOPY_REQUESTED != 0
    });
    assert_eq!((zc.count, zc.bytes), (SENDS as u64, total), "zc: syscalls");
    assert_eq!(
        b.bytes_of("zero-copy attach"),
        Some(total),
        "zc: attached bytes"
    );
    // Pinning: every requested page was pinned, and
    //   Σ pinned = Σ_calls ceil((start % 4096 + len) / 4096)
    // over the get_user_pages calls. The buffer is page-aligned and the bytes are contiguous, so
    // the sum is total/4096 plus at most one extra page per call (a call starting mid-page
    // re-pins the page the previous call ended in).
    let pin = b.path("page pinning").unwrap();
    let pinned = pin.bytes.unwrap();
    assert_eq!(pin.errors, 0, "zc: short pins");
    assert_eq!(
        b.pin_requested_pages,
        Some(pinned),
        "zc: requested == pinned"
    );
    assert!(
        pinned >= pages && pinned <= pages + pin.calls,
        "zc: {pinned} pages pinned in {} calls for {pages} pages of data",
        pin.calls
    );
    // Loopback delivers by copying the pinned pages after all (skb_copy_ubufs): every
    // zero-copy byte is copied later, in the sender's context (attributed) or in a softirq
    // elsewhere (not attributable), which may also copy other skbs. A retransmitted skb (a
    // tail loss probe, when the guest's slow timers make the ACK look late) is copied again:
    // that is a real second copy, as TCP_INFO's tcpi_bytes_retrans says.
    let attributed = b.bytes_of("deferred copy").unwrap();
    let elsewhere = b.deferred_unattributed_bytes.unwrap();
    println!("{best:?} zero-copy phase: {retransmitted} bytes retransmitted");
    assert!(
        attributed <= total + retransmitted,
        "zc: deferred {attributed} > sent {total} + retransmitted {retransmitted}"
    );
    assert!(
        attributed + elsewhere >= total,
        "zc: only {attributed} + {elsewhere} of {total} bytes copied later"
    );
    assert!(b.path("zero-copy completions").unwrap().calls > 0);
    let copied = b.bytes_of("user→kernel copy").unwrap();
    assert_eq!(copied, 0, "zc: nothing copied from user at send time");
    assert_eq!(b.lost_events, 0);
    drop(tracer);
}

/// The planner picks fentry (kprobe where fentry fails), and that tier sees every copy,
/// attach, pin and deferred copy of a copying and a zero-copy phase.
#[test]
#[ignore = "guest kernel only: run with `cargo xtask vm-test`"]
fn guest_fentry_tier_sees_copies_pins_and_deferred_copies() {
    require_probe_kernel();
    phase_numbers(Tier::Fentry);
}

/// The same, capped at kprobe: every probed path on kprobes.
#[test]
#[ignore = "guest kernel only: run with `cargo xtask vm-test`"]
fn guest_kprobe_tier_sees_copies_pins_and_deferred_copies() {
    require_probe_kernel();
    phase_numbers(Tier::Kprobe);
}

/// sendfile (through tcp_sendpage before 6.5) and io_uring SEND / SEND_ZC, counted exactly
/// per path on both probe tiers, against the benchmark's own counts.
#[test]
#[ignore = "guest kernel only: run with `cargo xtask vm-test`"]
fn guest_sendfile_and_io_uring_are_counted_exactly_on_both_probe_tiers() {
    require_probe_kernel();
    for tier in ["fentry", "kprobe"] {
        let dir =
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("new-modes-{tier}"));
        std::fs::create_dir_all(&dir).unwrap();
        common::trace_new_modes_from_outside(&dir, Some(tier));
        eprintln!("guest: sendfile and io_uring sends counted exactly at best tier {tier}");
    }
}

/// Where the bytes of sendfile and the io_uring modes went, on the fentry tier: each byte in
/// one class, each class equal to what the benchmark knows (sendfile: page-cache pages
/// attached; io_uring SEND: copied inside tcp_sendmsg; SEND_ZC: attached, then copied later
/// over loopback as traced by skb_copy_ubufs).
#[test]
#[ignore = "guest kernel only: run with `cargo xtask vm-test`"]
fn guest_byte_classes_of_sendfile_and_io_uring() {
    require_probe_kernel();
    let doc = guest_bench("new-modes", &[], "sendfile,uring-send,uring-send-zc");
    assert_eq!(common::assert_byte_classes_add_up(&doc.records), 3 * 2);
}

/// io_uring SEND_ZC from registered buffers: no page is pinned per send (the buffers were
/// pinned once, at registration); on the wire nothing is copied later, over loopback every
/// byte is (as traced by skb_copy_ubufs), and the notifications' usage reports say the same.
/// A kernel that cannot report usage leaves the copied fraction absent, never a guess.
fn uring_zero_copy_on(r: &copytrace::bench::results::Record, on_wire: bool, what: &str) {
    let z = r.zerocopy.as_ref().expect("SEND_ZC stats");
    match z.copied_fraction {
        // The kernel's own report (6.2+, and backported to Debian's 6.1).
        Some(f) if on_wire => assert!(f < 0.05, "{what}: copied fraction {f}"),
        Some(f) => assert!(f > 0.95, "{what}: copied fraction {f}"),
        None => assert_eq!(z.stats.unknown_bytes, r.send_bytes, "{what}"),
    }
    println!(
        "{what}: copied fraction {:?} (kernel's report)",
        z.copied_fraction
    );
    let Some(t) = r.trace.as_ref() else {
        return;
    };
    let b = &t.breakdown;
    let sent = r.send_bytes;
    let later = b.bytes_of("deferred copy").unwrap() + b.deferred_unattributed_bytes.unwrap();
    println!("{what}: {later} of {sent} bytes copied later (traced)");
    assert_eq!(b.bytes_of("page pinning"), Some(0), "{what}: fixed buffers");
    assert_eq!(b.bytes_of("zero-copy attach"), Some(sent), "{what}");
    if on_wire {
        assert!(
            later * 20 < sent,
            "{what}: {later} of {sent} bytes copied later"
        );
    } else {
        // Every byte copied later, a retransmitted one once more.
        assert_eq!(
            later - sent,
            r.retransmitted_bytes.unwrap(),
            "{what}: {later}"
        );
    }
}

/// One workload — send, sendmsg with an iovec, MSG_ZEROCOPY, their receives, then sendfile,
/// io_uring SEND and SEND_ZC from a child — and four tracers attached at once, capped at
/// fentry, kprobe, raw tracepoint and classic tracepoint, so all of them see exactly the same
/// events. Every path two tiers both measure must agree exactly, but for the program runs
/// the kernel reported skipping (a kprobe fired in a softirq while another probe's program
/// ran on the CPU; fentry does not skip there); where the tracepoint tier
/// derives a path, the derivation must equal what the probe tiers measure (the README's
/// claim). Prints the four-way table.
#[test]
#[ignore = "guest kernel only: run with `cargo xtask vm-test`"]
fn guest_tiers_agree_on_one_workload() {
    require_probe_kernel();
    let failures = workload::tiers_agree_on_one_workload(&[
        Tier::Fentry,
        Tier::Kprobe,
        Tier::RawTp,
        Tier::Tracepoint,
    ]);
    assert!(
        failures.is_empty(),
        "tiers disagree:\n{}",
        failures.join("\n")
    );
}

/// `copytrace bench` in the guest (traced: the fentry tier), one connection, one repeat.
fn guest_bench(
    name: &str,
    extra: &[&str],
    modes: &str,
) -> copytrace::bench::results::BenchDocument {
    let mut args = vec!["--trace", "--patterns", "stream", "--sizes", "64K,1M"];
    args.extend(["--threads", "1", "--duration", "1s", "--warmup", "200ms"]);
    args.extend(["--repeat", "1", "--modes", modes]);
    args.extend(extra);
    common::run_bench(&format!("guest-{name}"), &args)
}

/// Both sides of the zero-copy distinction in one guest: over the e1000 "wire" (two NICs on a
/// QEMU hub, each in its own namespace) the NIC transmits from the pinned pages and the kernel
/// reports completions without SO_EE_CODE_ZEROCOPY_COPIED; over loopback every byte is
/// copied later. A classifier stuck on either answer fails one half.
#[test]
#[ignore = "guest kernel only: run with `cargo xtask vm-test`"]
fn guest_zero_copy_is_real_on_the_wire_and_deferred_on_loopback() {
    require_probe_kernel();
    let wire = guest_bench(
        "wire",
        &["--topology", "nics", "--nics", "eth0,eth1"],
        "zero-copy,two-copy,one-copy,uring-send-zc",
    );
    let lo = guest_bench("loopback", &[], "zero-copy,two-copy,uring-send-zc");
    let gbps = |doc: &copytrace::bench::results::BenchDocument, mode: Mode, size: usize| {
        doc.records
            .iter()
            .find(|r| !r.traced && r.mode == mode && r.size == size)
            .map(|r| r.sender.gbps)
            .unwrap()
    };
    for (doc, on_wire) in [(&wire, true), (&lo, false)] {
        // Every byte in exactly one class; deferred copies beyond the bytes sent only as far
        // as TCP retransmitted.
        let traced = common::assert_byte_classes_add_up(&doc.records);
        assert_eq!(
            traced,
            doc.config.modes.len() * 2,
            "{}",
            doc.config.topology
        );
        for r in doc.records.iter().filter(|r| r.traced) {
            println!(
                "{} {} B on {}: {} bytes retransmitted",
                r.mode.as_str(),
                r.size,
                doc.config.topology,
                r.retransmitted_bytes.unwrap_or(0)
            );
        }
        for r in &doc.records {
            let what = format!(
                "{} {} B on {}",
                r.mode.as_str(),
                r.size,
                doc.config.topology
            );
            assert_eq!(r.integrity, "ok", "{what}");
            let b = r.trace.as_ref().map(|t| &t.breakdown);
            if r.mode == Mode::ZeroCopy {
                let copied = r.zerocopy.as_ref().unwrap().copied_fraction.unwrap();
                println!("{what}: copied fraction {copied:.4} (traced: {})", r.traced);
                let cause = r.zerocopy.as_ref().unwrap().cause.as_deref();
                if on_wire {
                    assert!(copied < 0.05, "{what}: copied fraction {copied}");
                    assert_eq!(cause, None, "{what}: nothing to explain");
                } else if let Some(b) = b {
                    // Over loopback every byte is copied later, a retransmitted one once more:
                    // the excess of deferred copies over attached bytes is exactly what TCP
                    // retransmitted.
                    let later = b.bytes_of("deferred copy").unwrap()
                        + b.deferred_unattributed_bytes.unwrap();
                    let attached = b.bytes_of("zero-copy attach").unwrap();
                    assert_eq!(
                        later - attached,
                        r.retransmitted_bytes.unwrap(),
                        "{what}: copied later {later}, attached {attached}"
                    );
                }
                if !on_wire {
                    assert!(copied > 0.95, "{what}: copied fraction {copied}");
                    let c = cause.unwrap_or_default();
                    assert!(c.starts_with("delivered to a local socket"), "{what}: {c}");
                }
                let (Some(b), true) = (b, on_wire) else {
                    continue;
                };
                let sent = r.send_bytes;
                let later =
                    b.bytes_of("deferred copy").unwrap() + b.deferred_unattributed_bytes.unwrap();
                assert!(
                    later * 20 < sent,
                    "{what}: {later} of {sent} bytes copied later"
                );
                let pin = b.path("page pinning").unwrap();
                let pages = pin.bytes.unwrap();
                let lo_pages = sent / PAGE as u64;
                assert!(
                    (lo_pages..=lo_pages + pin.calls).contains(&pages),
                    "{what}: {pages} pages pinned in {} calls for {sent} bytes",
                    pin.calls
                );
            } else if r.mode == Mode::UringSendZc {
                uring_zero_copy_on(r, on_wire, &what);
            } else if let Some(b) = b {
                let t = r.trace.as_ref().unwrap();
                assert_eq!(
                    b.bytes_of("user→kernel copy"),
                    Some(t.cross_check.traced_send_bytes),
                    "{what}"
                );
                assert_eq!(b.bytes_of("page pinning"), Some(0), "{what}");
            }
        }
    }
    for size in [64 << 10, 1 << 20] {
        println!(
            "wire, {size} B: zero-copy/two-copy throughput {:.3} (TCG: not a hardware figure)",
            gbps(&wire, Mode::ZeroCopy, size) / gbps(&wire, Mode::TwoCopy, size)
        );
    }
    compare_wire_and_loopback(wire, lo);
}

/// The side-by-side report of the two runs tells them apart, per size, from the files alone.
fn compare_wire_and_loopback(
    wire: copytrace::bench::results::BenchDocument,
    lo: copytrace::bench::results::BenchDocument,
) {
    use copytrace::report::{Format, Options, compare};
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let inputs = [("wire", wire), ("loopback", lo)].map(|(name, doc)| compare::Input {
        path: tmp.join(format!("guest-{name}.json")),
        doc,
    });
    let opts = Options {
        format: Format::Html,
        latency_size: None,
    };
    let out = compare::generate_comparison(&inputs, &tmp.join("guest-comparison"), &opts)
        .expect("comparison report");
    let [w, l] = &out.sides[..] else {
        panic!("two sides, got {}", out.sides.len())
    };
    assert_eq!(
        (w.label.as_str(), l.label.as_str()),
        ("nics eth0 → eth1", "loopback")
    );
    for (side, real) in [(w, true), (l, false)] {
        assert_eq!(side.rows.len(), 2, "{}: 64K and 1M", side.label);
        for r in &side.rows {
            let c = r.copied_fraction.expect("zero-copy completions");
            assert_eq!(c < 0.05, real, "{} {} B: copied {c}", side.label, r.size);
            assert_eq!(r.cause.is_none(), real, "{} {} B", side.label, r.size);
            assert!(r.zero_copy_gbps.is_some() && r.two_copy_gbps.is_some());
        }
        let q5 = side
            .analysis
            .answers
            .iter()
            .find(|a| a.question.starts_with("Q5."));
        println!("{}: {}", side.label, q5.expect("Q5 answered").answer);
    }
    println!("comparison: {}", out.main.display());
}

/// `copytrace bench --no-trace` of MSG_ZEROCOPY streams, with `extra` arguments (a topology):
/// the notifications the sender read, and how many ids they said were copied.
fn zero_copy_bench(name: &str, extra: &[&str]) -> (u64, u64) {
    let mut args = vec!["--no-trace", "--modes", "zero-copy", "--patterns", "stream"];
    args.extend(["--sizes", "64K", "--threads", "1", "--duration", "300ms"]);
    args.extend(["--warmup", "50ms", "--repeat", "1"]);
    args.extend(extra);
    let doc = common::run_bench(name, &args);
    let z = &doc.records[0]
        .zerocopy
        .as_ref()
        .expect("zero-copy stats")
        .stats;
    (z.notifications, z.copied_ids)
}

/// The exporter's probe-tier series on a live kernel. MSG_ZEROCOPY completions count skb
/// references released, each copied or not; the kernel calls a notification copied when any
/// of its references was. So on the e1000 wire (nothing copied, by the kernel's own report)
/// no reference may be copied, and over loopback (every notification copied) there must be at
/// least one copied reference per notification. Zero-copy attach, deferred copies and pinning
/// come from the fentry tier, never as zeros.
#[test]
#[ignore = "guest kernel only: run with `cargo xtask vm-test`"]
fn guest_exporter_sees_completions_and_copies_on_both_sides() {
    require_probe_kernel();
    let ex = exporter::Exporter::start(&["--interval", "200ms"]);
    let read = || {
        // Three intervals: the last events are on the page.
        std::thread::sleep(std::time::Duration::from_millis(600));
        exporter::samples(&ex.page())
    };
    let completions = |s: &[exporter::Sample], result: &str| {
        exporter::sum(
            s,
            "copytrace_zerocopy_completions_total",
            &[("result", result), ("via", "msg_zerocopy")],
        )
    };
    let path = |s: &[exporter::Sample], path: &str| {
        let tier = s
            .iter()
            .find(|x| x.name == "copytrace_path_info" && x.labels["path"] == path)
            .map(|x| x.labels["tier"].clone());
        (
            tier,
            exporter::sum(s, "copytrace_path_bytes_total", &[("path", path)]),
        )
    };
    let before = read();
    let (wire_notes, wire_copied_ids) = zero_copy_bench(
        "exporter-wire",
        &["--topology", "nics", "--nics", "eth0,eth1"],
    );
    let wire = read();
    let (lo_notes, lo_copied_ids) = zero_copy_bench("exporter-loopback", &[]);
    let lo = read();
    let delta = |a: &[exporter::Sample], b: &[exporter::Sample], r: &str| {
        completions(b, r) - completions(a, r)
    };
    let (wire_copied, wire_not) = (
        delta(&before, &wire, "copied"),
        delta(&before, &wire, "not_copied"),
    );
    let (lo_copied, lo_not) = (delta(&wire, &lo, "copied"), delta(&wire, &lo, "not_copied"));
    println!(
        "exporter: references released on the wire {wire_not} not copied / {wire_copied} \
         copied ({wire_notes} notifications, {wire_copied_ids} ids copied); over loopback \
         {lo_not} not copied / {lo_copied} copied ({lo_notes} notifications, {lo_copied_ids} \
         ids copied)"
    );
    assert!(wire_notes > 0 && lo_notes > 0 && lo_copied_ids > 0);
    assert!(wire_not > 0.0, "no completions seen on the wire");
    // A notification is copied exactly when one of its references was.
    assert_eq!(
        wire_copied == 0.0,
        wire_copied_ids == 0,
        "{wire_copied} copied references, {wire_copied_ids} ids copied on the wire"
    );
    assert!(
        lo_copied >= lo_notes as f64,
        "{lo_copied} copied references for {lo_notes} copied notifications"
    );
    // Attached and pinned on both; copied later only over loopback.
    for (p, later_copy) in [
        ("zero_copy_attach", false),
        ("page_pinning", false),
        ("deferred_copy", true),
    ] {
        let (tier, b0) = path(&before, p);
        let (w, l) = (path(&wire, p).1 - b0, path(&lo, p).1 - path(&wire, p).1);
        println!("exporter: {p} via {tier:?}: {w} on the wire, {l} over loopback");
        assert_eq!(tier.as_deref(), Some("fentry"), "{p}");
        assert!(l > 0.0, "{p}: nothing over loopback");
        if later_copy {
            assert!(w * 20.0 < l, "{p}: {w} on the wire");
        } else {
            assert!(w > 0.0, "{p}: nothing on the wire");
        }
    }
    assert!(ex.stop().success());
}

/// The kernel's release as (major, minor).
fn kernel_release() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = r
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// The kprobe tier's two ways to lose a run, each set off once per `getppid()` and read back
/// exactly: a kprobe hit while another kprobe's handler runs (the perf link's `missed`), and
/// a kprobe program refused while a classic tracepoint's program runs (`bpf_prog_active`, the
/// program's `recursion_misses`). Kernels before 6.7 count neither: there every read is 0 and
/// copytrace says so on the kprobe-tier paths.
#[test]
#[ignore = "guest kernel only: run with `cargo xtask vm-test`"]
fn guest_kprobe_skips_are_counted() {
    use copytrace::trace::skipped;
    use skipcheck::{CALLS, attach_kprobe, attach_tracepoint, getppid_calls, object};
    require_probe_kernel();
    let counted = kernel_release() >= (6, 7);
    assert_eq!(
        skipped::kprobe_skips_counted(),
        counted,
        "{:?}",
        kernel_release()
    );
    let want = if counted { CALLS } else { 0 };
    let victim = "skipcheck_victim_kprobe";
    // The kprobe trigger: the victim's hits inside its handler are dropped by kprobes.
    let mut ebpf = object();
    attach_kprobe(&mut ebpf, victim, "bpf_bprintf_prepare");
    attach_kprobe(&mut ebpf, "skipcheck_trigger_kprobe", "__x64_sys_getppid");
    getppid_calls();
    let by_kprobe = skipped::runs(&ebpf);
    assert_eq!(by_kprobe[victim], want, "{by_kprobe:?}");
    assert_eq!(by_kprobe["skipcheck_trigger_kprobe"], 0, "{by_kprobe:?}");
    drop(ebpf);
    // The classic tracepoint trigger: BPF refuses the victim's program.
    let mut ebpf = object();
    attach_kprobe(&mut ebpf, victim, "bpf_bprintf_prepare");
    attach_tracepoint(
        &mut ebpf,
        "skipcheck_trigger_tracepoint",
        "syscalls",
        "sys_enter_getppid",
    );
    getppid_calls();
    let by_tracepoint = skipped::runs(&ebpf);
    assert_eq!(by_tracepoint[victim], want, "{by_tracepoint:?}");
    assert_eq!(
        by_tracepoint["skipcheck_trigger_tracepoint"], 0,
        "{by_tracepoint:?}"
    );
    println!(
        "kernel {:?}: skipped runs under a kprobe {by_kprobe:?}, under a tracepoint \
         {by_tracepoint:?}",
        kernel_release()
    );
}

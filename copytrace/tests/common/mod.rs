//! Checks shared by several integration test binaries.
use copytrace::{
    bench::{Mode, Pattern, results::Record},
    report::classes::ByteClasses,
};

/// "Where the bytes went" of every traced stream record: each byte sent in exactly one class,
/// and each class equal to what the benchmark itself knows it sent. Returns how many records
/// were checked.
#[allow(dead_code)] // used by the bench, modes and guest_tier test binaries
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
                // The kernel's own report, where it gave one (SEND_ZC before 6.2 cannot).
                if z.unknown_bytes == 0 {
                    assert_eq!(c.deferred, z.copied_bytes, "{what}: {c:?}");
                }
            }
        }
        checked += 1;
    }
    checked
}

/// `copytrace bench ARGS --json target/tmp/NAME.json`, and its results.
#[allow(dead_code)] // used by the guest_tier and tiers test binaries
pub fn run_bench(name: &str, args: &[&str]) -> copytrace::bench::results::BenchDocument {
    // In a guest, its own scratch directory: the host reads it as target/vm/out/<kernel>/tmp.
    let json = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.json"));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_copytrace"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("copytrace runs");
    assert!(
        o.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    copytrace::report::load(&json).expect("bench result")
}

/// `copytrace` arguments for a short untraced run of the sendfile and io_uring modes, up to
/// `--json` (its file follows). The window is a second: loopback under the guests' emulated
/// CPUs, with four tracers attached, drops segments, and one retransmission timeout (200 ms
/// at least) stalled a 200 ms window with no message completed.
#[allow(dead_code)] // used by the modes, guest_tier and tiers test binaries
pub const NEW_MODES_BENCH: [&str; 16] = [
    "bench",
    "--no-trace",
    "--modes",
    "sendfile,uring-send,uring-send-zc",
    "--patterns",
    "stream",
    "--sizes",
    "64K",
    "--threads",
    "1",
    "--duration",
    "1s",
    "--warmup",
    "50ms",
    "--repeat",
    "1",
];

/// `copytrace trace [--best-tier T] -- copytrace bench` of the sendfile and io_uring modes,
/// then the trace's rows against what the benchmark counted on its own side: sendfile calls,
/// io_uring requests and their bytes, exactly; one io_uring notification per SEND_ZC request.
#[allow(dead_code)] // used by the modes and guest_tier test binaries
pub fn trace_new_modes_from_outside(dir: &std::path::Path, best_tier: Option<&str>) {
    use serde_json::Value;
    let (bench, trace) = (
        dir.join("new-modes-bench.json"),
        dir.join("new-modes-trace.json"),
    );
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_copytrace"));
    c.args(["trace", "--json"]).arg(&trace);
    if let Some(t) = best_tier {
        c.args(["--best-tier", t]);
    }
    let o = c
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_copytrace"))
        .args(NEW_MODES_BENCH)
        .arg("--json")
        .arg(&bench)
        .output()
        .expect("copytrace runs");
    assert!(
        o.status.success(),
        "{:?}: {}",
        best_tier,
        String::from_utf8_lossy(&o.stderr)
    );
    let load = |p: &std::path::Path| -> Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let (b, t) = (load(&bench), load(&trace));
    let u = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"));
    let by_mode = |m: &str| {
        b["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["mode"] == m)
            .unwrap_or_else(|| panic!("no {m} record"))
            .clone()
    };
    // (successful calls or requests, bytes, failed ones) of a row.
    let row = |name: &str| {
        t["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["name"] == name)
            .fold((0, 0, 0), |(c, by, e), s| {
                let errors = u(&s["errors"]);
                (c + u(&s["calls"]) - errors, by + u(&s["bytes"]), e + errors)
            })
    };
    for (mode, name) in [
        ("sendfile", "sendfile64"),
        ("uring-send", "io_uring send"),
        ("uring-send-zc", "io_uring send_zc"),
    ] {
        let r = by_mode(mode);
        // Failed requests are the ones the sender submitted again (cancelled links, a flag an
        // older kernel refused); sendfile fails none.
        let failed = r["uring"]["resubmitted"].as_u64().unwrap_or(0);
        let expected = (u(&r["send_syscalls"]), u(&r["send_bytes"]), failed);
        assert!(expected.1 > 0, "{mode}");
        assert_eq!(
            row(name),
            expected,
            "{best_tier:?} {name}: (calls, bytes, failed) traced vs sent"
        );
    }
    let zc = by_mode("uring-send-zc");
    let notes = t["breakdown"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"] == "io_uring notifications")
        .expect("a notifications row")
        .clone();
    assert_eq!(u(&notes["calls"]), u(&zc["zerocopy"]["notifications"]));
    assert_eq!(u(&zc["zerocopy"]["notifications"]), u(&zc["send_syscalls"]));
    // Nothing lost, and no other io_uring opcode leaked into these rows.
    assert_eq!(t["counters"]["stats_full"], 0);
    assert_eq!(t["counters"]["uring_overflow"], 0);
    assert_eq!(row("io_uring sendmsg"), (0, 0, 0));
}

/// What one tracer, capped at one tier, saw of a workload: per path, the tier that saw it,
/// events and bytes.
#[allow(dead_code)] // used by the guest_tier test binary
pub struct TierView {
    pub cap: copytrace::trace::Tier,
    pub paths: Vec<(String, copytrace::trace::Tier, u64, Option<u64>)>,
    /// Program runs the kernel reported skipping (each an event this tier missed), by
    /// program.
    pub skipped: std::collections::BTreeMap<String, u64>,
}

#[allow(dead_code)]
impl TierView {
    pub fn of(
        cap: copytrace::trace::Tier,
        d: &copytrace::trace::Snapshot,
        decisions: &[copytrace::trace::PathDecision],
    ) -> TierView {
        use copytrace::trace::{Breakdown, Tier};
        use copytrace_common::{path, syscall};
        let b = Breakdown::compute(d, decisions);
        let tier_of = |name: &str| {
            decisions
                .iter()
                .find(|x| x.path == name)
                .map_or(Tier::Unavailable, |x| x.tier)
        };
        let mut paths: Vec<_> = b
            .paths
            .iter()
            // Off-CPU time is a duration, not a count of the workload's events. The send
            // calls are compared split (below).
            .filter(|p| p.path != "scheduling" && p.path != "syscalls (send)")
            .map(|p| {
                let mut bytes = p.bytes;
                if p.path == "deferred copy" {
                    // Copies in contexts not attributable to the workload count too.
                    bytes = bytes.map(|v| v + b.deferred_unattributed_bytes.unwrap_or(0));
                }
                (
                    p.path.clone(),
                    p.tier.unwrap_or(Tier::Unavailable),
                    p.calls,
                    bytes,
                )
            })
            .collect();
        // Send calls that only sockets take, and those that files take too (write, writev,
        // sendfile): the latter count only where a tier sees the socket layer.
        let sends = |fd_calls: bool| {
            d.sum(|k| {
                k.path == path::SYSCALL
                    && syscall::is_send(k.op)
                    && syscall::socket_only(k.op) != fd_calls
            })
        };
        let socket_layer = tier_of("socket send") != Tier::Unavailable;
        for (name, fd_calls) in [
            ("send calls (sockets only)", false),
            ("send calls (write, writev, sendfile)", true),
        ] {
            let s = sends(fd_calls);
            let tier = if fd_calls && !socket_layer {
                Tier::Unavailable
            } else {
                tier_of("syscalls")
            };
            paths.push((name.to_string(), tier, s.count, Some(s.bytes)));
        }
        // The probe tiers and the raw tier (which finds the socket through the descriptor)
        // write the socket send row when the system call returns: io_uring requests reach
        // sock_sendmsg outside one and are not in it (README, Known limits).
        // sock:sock_send_length sees every call, io_uring's included (and its EAGAIN retries,
        // as events of 0 bytes): for the system calls' part, take the requests' bytes off.
        let send = d.total(path::SOCK_SEND, None);
        let send_tier = tier_of("socket send");
        let at_exit = matches!(send_tier, Tier::Fentry | Tier::Kprobe | Tier::RawTp);
        let (whole, calls_only) = if at_exit || send_tier == Tier::Unavailable {
            let t = if at_exit {
                Tier::Unavailable
            } else {
                send_tier
            };
            (t, (send_tier, send.count, send.bytes))
        } else {
            let uring = d.total(path::URING_SEND, None);
            // Events only shown, not compared (retries): bytes are exact.
            let calls = send.count.saturating_sub(uring.count);
            (send_tier, (Tier::Derived, calls, send.bytes - uring.bytes))
        };
        let recv = d.total(path::SOCK_RECV, None);
        paths.extend([
            (
                "socket send".to_string(),
                whole,
                send.count,
                Some(send.bytes),
            ),
            (
                "socket receive".to_string(),
                tier_of("socket receive"),
                recv.count,
                Some(recv.bytes),
            ),
            (
                "socket send (system calls)".to_string(),
                calls_only.0,
                calls_only.1,
                Some(calls_only.2),
            ),
        ]);
        TierView {
            cap,
            paths,
            skipped: d.skipped.clone(),
        }
    }
}

/// Paths whose events a derivation counts differently from a probe (system calls against
/// copy chunks): only their bytes must agree across a derived and a measured tier.
const BYTES_ONLY_WHEN_DERIVED: [&str; 4] = [
    "user→kernel copy",
    "zero-copy attach",
    "socket send (system calls)",
    "receive copy",
];

/// Compare every path between every two views: where both tiers see a path, events and bytes
/// must be equal (a tier may fall short by no more than the program runs the kernel reported
/// skipping for it); where one derives it, its bytes must equal the other's measurement. Prints
/// the three-way table; returns one line per disagreement, naming the path and both tiers.
#[allow(dead_code)]
pub fn tiers_agree(views: &[TierView]) -> Vec<String> {
    use copytrace::trace::Tier;
    let mut failures = Vec::new();
    println!(
        "{:<38} {}",
        "path",
        views
            .iter()
            .map(|v| format!("{:<36}", format!("capped at {}", v.cap.as_str())))
            .collect::<String>()
    );
    for v in views.iter().filter(|v| !v.skipped.is_empty()) {
        println!(
            "capped at {}: the kernel skipped program runs {:?}",
            v.cap.as_str(),
            v.skipped
        );
    }
    for (i, (name, ..)) in views[0].paths.iter().enumerate() {
        let cells: Vec<_> = views.iter().map(|v| &v.paths[i]).collect();
        println!(
            "{name:<38} {}",
            cells
                .iter()
                .map(|(_, t, c, b)| format!(
                    "{:<36}",
                    format!(
                        "{} {c} / {}",
                        t.as_str(),
                        b.map_or("-".to_string(), |b| format!("{b} B"))
                    )
                ))
                .collect::<String>()
        );
        for a in 0..cells.len() {
            for b in a + 1..cells.len() {
                let ((_, ta, ca, ba), (_, tb, cb, bb)) = (cells[a], cells[b]);
                if *ta == Tier::Unavailable || *tb == Tier::Unavailable {
                    continue;
                }
                let derived = *ta == Tier::Derived || *tb == Tier::Derived;
                let calls_differ =
                    ca != cb && !(derived && BYTES_ONLY_WHEN_DERIVED.contains(&name.as_str()));
                // A tier the kernel skipped programs of may miss as many events, and their
                // bytes; nothing else.
                let excused = |short: usize, c_short: u64, b_short, c_long: u64, b_long| {
                    let skipped: u64 = views[short].skipped.values().sum();
                    c_short < c_long && c_long - c_short <= skipped && b_short <= b_long
                };
                if (calls_differ || ba != bb)
                    && !excused(a, *ca, *ba, *cb, *bb)
                    && !excused(b, *cb, *bb, *ca, *ba)
                {
                    failures.push(format!(
                        "{name}: the {} tier (capped at {}) says {ca} events / {ba:?} bytes, the {} \
                         tier (capped at {}) says {cb} events / {bb:?} bytes",
                        ta.as_str(),
                        views[a].cap.as_str(),
                        tb.as_str(),
                        views[b].cap.as_str()
                    ));
                }
            }
        }
    }
    failures
}

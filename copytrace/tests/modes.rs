//! The sendfile and io_uring modes end to end: integrity, the kernel's own copied-fraction
//! report for SEND_ZC, a SEND_ZC buffer reused too early, and the tracer's exact count of
//! each path, checked against what the benchmark itself says it sent.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

mod common;

/// One at a time: the cells measure time on a 2-CPU machine.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn copytrace() -> Command {
    Command::new(env!("CARGO_BIN_EXE_copytrace"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("copytrace-modes-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn load(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
#[ignore = "needs root: run with `cargo xtask test`"]
fn new_modes_deliver_intact_and_uring_zero_copy_reports_copies() {
    let _serial = serial();
    let json = tmp("quick.json");
    let o = copytrace()
        .args([
            "bench",
            "--modes",
            "two-copy,sendfile,uring-send,uring-send-zc",
            "--quick",
            "--repeat",
            "1",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    ok(&o);
    let doc = load(&json);
    let recs = doc["records"].as_array().unwrap();
    // 4 modes × 4 sizes × 2 thread counts × 2 patterns, one repeat, plus the traced pass.
    assert_eq!(recs.len(), 4 * 4 * 2 * 2 * 2, "{}", recs.len());
    assert_eq!(doc["config"]["uring_depth"], 8);
    for r in recs {
        let what = format!(
            "{} {} {} ×{}",
            r["mode"], r["pattern"], r["size"], r["threads"]
        );
        assert_eq!(r["integrity"], "ok", "{what}");
        let mode = r["mode"].as_str().unwrap();
        if r["pattern"] == "stream" {
            let sent = u(&r["send_bytes"]);
            assert!(sent > 0, "{what}");
            assert_eq!(sent % u(&r["size"]), 0, "{what}: whole messages only");
        }
        if mode == "uring-send-zc" {
            let z = &r["zerocopy"];
            assert_eq!(r["uring"]["usage_reported"], true, "{what}");
            assert_eq!(r["uring"]["fixed_buffers"], true, "{what}");
            // Loopback: the kernel copies every SEND_ZC later, and says so per notification.
            let f = z["copied_fraction"].as_f64().unwrap();
            assert!(f > 0.99, "{what}: copied fraction {f}");
            assert_eq!(u(&z["ids"]), u(&z["notifications"]), "{what}");
            assert_eq!(
                u(&z["copied_bytes"]) + u(&z["zerocopy_bytes"]),
                u(&r["send_bytes"]),
                "{what}: every byte sent is in a notification"
            );
        } else {
            assert!(r["zerocopy"].is_null(), "{what}");
        }
        if mode == "uring-send" && r["pattern"] == "stream" {
            assert_eq!(u(&r["uring"]["depth"]), 8, "{what}");
        }
        if let Some(t) = r.get("trace").filter(|t| !t.is_null()) {
            assert_eq!(t["cross_check"]["ok"], true, "{what}: {}", t["cross_check"]);
        }
    }
    // Where the bytes went, per traced stream record, against the benchmark's own counts.
    let typed: Vec<copytrace::bench::results::Record> =
        serde_json::from_value(doc["records"].clone()).unwrap();
    assert_eq!(common::assert_byte_classes_add_up(&typed), 4 * 4 * 2);

    // The report compares every mode with two-copy: a figure, and Q1 and Q5 per mode.
    let out = tmp("quick-report");
    let o = copytrace()
        .arg("report")
        .arg(&json)
        .args(["--format", "md", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    ok(&o);
    assert!(out.join("fig1b-modes-vs-two-copy.png").is_file());
    let md = std::fs::read_to_string(out.join("analysis.md")).unwrap();
    let section = |q: &str| {
        let start = md
            .find(&format!("### {q}."))
            .unwrap_or_else(|| panic!("no {q}"));
        let rest = &md[start + 4..];
        rest[..rest.find("### ").unwrap_or(rest.len())].to_string()
    };
    let (q1, q5) = (section("Q1"), section("Q5"));
    assert!(q1.contains("Against two-copy, per mode:"), "{q1}");
    for m in ["sendfile", "uring-send", "uring-send-zc"] {
        assert!(q1.contains(&format!("{m} ")), "{m} in Q1: {q1}");
        assert!(q5.to_lowercase().contains(m), "{m} in Q5: {q5}");
    }
}

#[test]
#[ignore = "needs root: run with `cargo xtask test`"]
fn reusing_a_send_zc_buffer_before_its_notification_is_caught() {
    let _serial = serial();
    let json = tmp("reuse.json");
    let o = copytrace()
        .args([
            "bench",
            "--modes",
            "uring-send-zc",
            "--patterns",
            "stream",
            "--sizes",
            "64K",
            "--threads",
            "1",
            "--duration",
            "300ms",
            "--warmup",
            "0s",
            "--repeat",
            "1",
            "--no-trace",
            "--fault-zc-reuse-early",
            "--fault-server-read-delay",
            "100ms",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "stderr: {}", text(&o.stderr));
    let doc = load(&json);
    let i = doc["records"][0]["integrity"].as_str().unwrap().to_string();
    assert!(i.starts_with("corrupt: "), "{i}");
    assert!(i.contains("buffer was reused"), "{i}");
}

/// A benchmark run traced from outside: the trace's io_uring and sendfile rows must equal the
/// requests, calls and bytes the benchmark counted on its own side.
#[test]
#[ignore = "needs root: run with `cargo xtask test`"]
fn trace_counts_sendfile_and_io_uring_sends_exactly() {
    let _serial = serial();
    let dir = tmp("outside");
    std::fs::create_dir_all(&dir).unwrap();
    common::trace_new_modes_from_outside(&dir, None);
}

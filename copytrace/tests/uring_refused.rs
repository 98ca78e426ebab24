//! A kernel that refuses io_uring (`kernel.io_uring_disabled=2`): one line per skipped mode,
//! and the rest of the sweep runs.
//!
//! This test binary holds this one test only: it changes a machine-wide sysctl, and the test
//! harness runs test binaries one after another, so no other test sees the setting.
use std::process::Command;

use serde_json::Value;

const SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

/// The sysctl at `value` while it lives; the previous value back on drop (also on a failed
/// assertion).
struct Disabled(String);

impl Disabled {
    fn set(value: &str) -> Disabled {
        let old = std::fs::read_to_string(SYSCTL).expect("kernel.io_uring_disabled exists");
        std::fs::write(SYSCTL, value).expect("setting kernel.io_uring_disabled");
        Disabled(old.trim().to_string())
    }
}

impl Drop for Disabled {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, &self.0);
    }
}

#[test]
#[ignore = "needs root (writes kernel.io_uring_disabled): run with `cargo xtask test`"]
fn refused_io_uring_skips_its_modes_with_one_line_each() {
    let json = std::env::temp_dir().join(format!(
        "copytrace-uring-refused-{}.json",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&json);
    let guard = Disabled::set("2");
    let bench = |modes: &str| {
        Command::new(env!("CARGO_BIN_EXE_copytrace"))
            .args(["bench", "--no-trace", "--modes", modes])
            .args(["--patterns", "stream", "--sizes", "4K", "--threads", "1"])
            .args([
                "--duration",
                "100ms",
                "--warmup",
                "20ms",
                "--repeat",
                "1",
                "--json",
            ])
            .arg(&json)
            .output()
            .unwrap()
    };
    let o = bench("two-copy,uring-send,uring-send-zc");
    let only = bench("uring-send");
    drop(guard);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "stderr: {err}");
    let skipped: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("skipping mode"))
        .collect();
    assert_eq!(skipped.len(), 2, "stderr: {err}");
    for (line, mode) in skipped.iter().zip(["uring-send", "uring-send-zc"]) {
        assert!(
            line.starts_with(&format!(
                "copytrace: skipping mode {mode}: io_uring is refused here"
            )),
            "{line}"
        );
        assert!(line.contains("kernel.io_uring_disabled = 2"), "{line}");
    }
    let doc: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let recs = doc["records"].as_array().unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["mode"], "two-copy");
    assert_eq!(recs[0]["integrity"], "ok");
    assert_eq!(doc["config"]["modes"], serde_json::json!(["two-copy"]));
    // Nothing but refused modes: one error line, non-zero exit.
    let err = String::from_utf8_lossy(&only.stderr);
    assert!(!only.status.success());
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "stderr: {err}");
    assert!(
        lines[0].starts_with("copytrace: error: nothing to run: skipping mode uring-send"),
        "{err}"
    );
}

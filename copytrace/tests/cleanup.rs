//! Root-only: copytrace leaves no program loaded behind, however it ends.
//!
//! This is its own test binary so no other test's tracer is alive while it looks.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use copytrace::trace::{TraceOptions, Tracer};

#[path = "common/programs.rs"]
mod programs;
use programs::{left_loaded, our_names, ours_loaded};

#[test]
#[ignore = "needs root: run with `cargo xtask test`"]
fn nothing_is_left_loaded() {
    let names = our_names();
    assert!(names.iter().any(|n| n == "sys_enter_sendm"), "{names:?}");
    assert!(
        left_loaded(&names).is_empty(),
        "already loaded before the test"
    );

    // Library: drop detaches and unloads.
    let tracer = Tracer::start(&TraceOptions::default()).unwrap();
    assert!(
        !ours_loaded(&names).is_empty(),
        "the check must see programs while they are loaded"
    );
    drop(tracer);
    assert_eq!(left_loaded(&names), Vec::<String>::new(), "after drop");

    // CLI, normal exit.
    let st = Command::new(env!("CARGO_BIN_EXE_copytrace"))
        .args(["trace", "--", "true"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        left_loaded(&names),
        Vec::<String>::new(),
        "after normal exit"
    );

    // CLI, panicking after attach.
    let o = Command::new(env!("CARGO_BIN_EXE_copytrace"))
        .args(["trace", "--", "sleep", "5"])
        .env("COPYTRACE_TEST_PANIC_AFTER_ATTACH", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(101), "panics exit with 101");
    assert!(String::from_utf8_lossy(&o.stderr).contains("panic requested"));
    assert_eq!(left_loaded(&names), Vec::<String>::new(), "after a panic");

    // CLI, interrupted by SIGINT and by SIGTERM.
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let child = Command::new(env!("CARGO_BIN_EXE_copytrace"))
            .args(["trace", "-d", "60s"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while ours_loaded(&names).is_empty() {
            assert!(Instant::now() < deadline, "tracer never attached");
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "signal {sig}: {:?}", out.status);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("copytrace: traced all processes"),
            "signal {sig}: still prints its totals"
        );
        assert_eq!(
            left_loaded(&names),
            Vec::<String>::new(),
            "after signal {sig}"
        );
    }
}

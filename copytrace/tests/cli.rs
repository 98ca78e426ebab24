//! The `copytrace` binary as a user runs it.
use std::{
    os::unix::process::CommandExt as _,
    process::{Command, Output},
};

fn copytrace() -> Command {
    Command::new(env!("CARGO_BIN_EXE_copytrace"))
}

fn run(c: &mut Command) -> Output {
    c.output().expect("copytrace runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Exactly one non-empty line on stderr, starting with `copytrace: error:`.
fn assert_one_error_line(o: &Output, contains: &str) {
    assert!(!o.status.success(), "expected failure, got {:?}", o.status);
    let err = stderr(o);
    let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "stderr: {err}");
    assert!(lines[0].starts_with("copytrace: error: "), "stderr: {err}");
    assert!(lines[0].contains(contains), "stderr: {err}");
    assert!(!err.contains("panicked"), "stderr: {err}");
}

#[test]
#[ignore = "needs root (to drop to nobody): run with `cargo xtask test`"]
fn non_root_gets_one_clear_error() {
    for args in [&["probe"][..], &["trace", "--", "true"][..]] {
        let mut c = copytrace();
        c.args(args);
        // SAFETY: setgid/setuid between fork and exec are async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let o = run(&mut c);
        assert_one_error_line(&o, "must run as root");
        assert_eq!(o.status.code(), Some(1));
    }
}

#[test]
#[ignore = "needs root: run with `cargo xtask test`"]
fn nonexistent_pid_is_one_clear_error() {
    let o = run(copytrace().args(["trace", "-p", "8388608"]));
    assert_one_error_line(&o, "no process with pid 8388608");
}

#[test]
#[ignore = "needs root: run with `cargo xtask test`"]
fn missing_command_is_one_clear_error() {
    let o = run(copytrace().args(["trace", "--", "/nonexistent/copytrace-test-cmd"]));
    assert_one_error_line(&o, "cannot run /nonexistent/copytrace-test-cmd");
}

#[test]
#[ignore = "needs root: run with `cargo xtask test`"]
fn exporter_bad_input_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    let with_port = |a: &[&'static str]| {
        let mut v = a.to_vec();
        v.extend(["--listen", "127.0.0.1:0"]);
        v
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            with_port(&["--comm", "a-name-of-16-byte"]),
            "the kernel keeps names of 1 to 15 bytes",
        ),
        (
            with_port(&["--max-series", "10"]),
            "leaves no room for processes",
        ),
        (
            with_port(&["--interval", "0s"]),
            "--interval must be greater than zero",
        ),
        (
            with_port(&["--cgroup", "/nonexistent/cg"]),
            "cgroup /nonexistent/cg",
        ),
        (vec!["--listen", busy.as_str()], "cannot listen on"),
    ];
    for (args, says) in cases {
        let o = run(copytrace().arg("exporter").args(&args));
        assert_one_error_line(&o, says);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
    }
}

/// The acceptance example: a Python child sends 1,000,000 bytes; the table says so.
#[test]
#[ignore = "needs root: run with `cargo xtask test`"]
fn trace_command_reports_exact_bytes_of_a_python_sender() {
    let script = r#"
import socket, threading
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
def rx():
    c, _ = srv.accept()
    while c.recv(1 << 16): pass
t = threading.Thread(target=rx); t.start()
s = socket.create_connection(srv.getsockname())
s.sendall(b"x" * 1000000)
s.close(); t.join()
"#;
    let o = run(copytrace().args(["trace", "--", "python3", "-c", script]));
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let out = stdout(&o);
    let sent: u64 = out
        .lines()
        .filter(|l| l.starts_with("sendto ") || l.starts_with("sendmsg "))
        .map(|l| l.split_whitespace().nth(3).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(sent, 1_000_000, "stdout:\n{out}");
    let received: u64 = out
        .lines()
        .filter(|l| l.starts_with("recvfrom ") || l.starts_with("recvmsg "))
        .map(|l| l.split_whitespace().nth(3).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(received, 1_000_000, "stdout:\n{out}");
}

/// Every trace says what watching cost: sampled program statistics (the sysctl untouched),
/// a dispatch estimate calibrated on this kernel, and a share of the traced CPU time.
#[test]
#[ignore = "needs root: run with `cargo xtask test`"]
fn trace_reports_what_it_cost() {
    let sysctl = || std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap();
    let before = sysctl();
    // 64-byte sends for 1.5 s (at most 300,000): several statistics windows.
    let script = r#"
import socket, threading, time
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
def rx():
    c, _ = srv.accept()
    while c.recv(1 << 16): pass
t = threading.Thread(target=rx); t.start()
s = socket.create_connection(srv.getsockname())
end = time.time() + 1.5
for _ in range(300000):
    if time.time() > end: break
    s.send(b"x" * 64)
s.close(); t.join()
"#;
    let json = std::env::temp_dir().join(format!("copytrace-cost-{}.json", std::process::id()));
    let o = run(copytrace()
        .args(["trace", "--json"])
        .arg(&json)
        .args(["--", "python3", "-c", script]));
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    assert_eq!(
        sysctl(),
        before,
        "kernel.bpf_stats_enabled is never written"
    );
    let out = stdout(&o);
    let line = out
        .lines()
        .find(|l| l.starts_with("tracer cost: "))
        .expect("a cost line");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let c = &v["tracer_cost"];
    let f = c["sampled_fraction"]
        .as_f64()
        .expect("statistics were sampled");
    assert!(
        (0.05..0.2).contains(&f),
        "sampled {f} of the time (50 ms of every 500)"
    );
    let (events, run_ns) = (c["events"].as_u64().unwrap(), c["run_ns"].as_u64().unwrap());
    assert!(events > 0 && run_ns > 0, "{c}");
    let per = run_ns as f64 / events as f64;
    assert!((10.0..10_000.0).contains(&per), "{per} ns per event: {c}");
    let names: Vec<&str> = c["programs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["program"].as_str().unwrap())
        .collect();
    // The sends' own programs ran (on the raw tier the socket layer has none: a TCP send's
    // socket comes from tcp_sendmsg_locked).
    assert!(
        names.iter().any(|n| n.contains("sys_exit")) && names.iter().any(|n| n.contains("tcp")),
        "the system call and tcp_sendmsg programs ran: {names:?}"
    );
    // This kernel has raw and classic tracepoints: both calibrated, both positive.
    let tiers: Vec<&str> = c["dispatch"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["ns_per_event"].as_f64().unwrap() > 0.0)
        .map(|d| d["tier"].as_str().unwrap())
        .collect();
    assert_eq!(tiers, ["raw-tp", "tracepoint"], "{c}");
    let share = c["share_of_traced_cpu"].as_f64().expect("a share");
    assert!(share > 0.0 && share < 1.0, "{share}");
    assert!(line.contains("% of the traced threads' CPU time"), "{line}");
    let _ = std::fs::remove_file(&json);
}

/// The floor of `cargo xtask trace-overhead`: the same plan as a trace, on empty programs,
/// so nothing is counted and no cost is reported.
#[test]
#[ignore = "needs root: run with `cargo xtask test`"]
fn the_floor_attaches_the_same_hooks_and_counts_nothing() {
    let script = r#"
import socket
a, b = socket.socketpair()
for _ in range(100): a.send(b"x" * 64); b.recv(64)
"#;
    let dir = std::env::temp_dir();
    let plan = |floor: bool| {
        let json = dir.join(format!(
            "copytrace-floor-{floor}-{}.json",
            std::process::id()
        ));
        let mut c = copytrace();
        c.args(["trace", "--json"]).arg(&json);
        if floor {
            c.arg("--floor");
        }
        let o = run(c.args(["--", "python3", "-c", script]));
        assert!(o.status.success(), "stderr: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let _ = std::fs::remove_file(&json);
        v
    };
    let (real, floor) = (plan(false), plan(true));
    let tiers = |v: &serde_json::Value| -> Vec<(String, String)> {
        v["plan"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["path"].to_string(), d["tier"].to_string()))
            .collect()
    };
    assert_eq!(tiers(&floor), tiers(&real), "same hooks");
    let sends = |v: &serde_json::Value| -> u64 {
        v["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["name"] == "sendto")
            .map(|s| s["calls"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sends(&real), 100, "the real trace counts");
    assert_eq!(
        floor["syscalls"].as_array().unwrap().len(),
        0,
        "{}",
        floor["syscalls"]
    );
    assert_eq!(floor["counters"]["events"], 0);
    assert_eq!(floor["tracer_cost"]["note"], "the floor reports no cost");
}

#[test]
#[ignore = "needs root: run with `cargo xtask test`"]
fn trace_exits_with_the_commands_status() {
    let o = run(copytrace().args(["trace", "--", "sh", "-c", "exit 3"]));
    assert_eq!(o.status.code(), Some(3), "stderr: {}", stderr(&o));
    assert!(stdout(&o).contains("copytrace: traced command"));
}

#[test]
#[ignore = "needs root: run with `cargo xtask test`"]
fn probe_reports_each_feature_with_a_reason() {
    let o = run(copytrace().args(["probe", "--json"]));
    assert!(o.status.success(), "stderr: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let feature = |name: &str| {
        v["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("no feature {name} in {v}"))
            .clone()
    };
    // Cross-check against the kernel itself rather than hard-coding this machine's answers.
    let kprobe_pmu = std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists();
    let kp = feature("kprobe");
    assert_eq!(kp["status"] == "yes", kprobe_pmu, "{kp}");
    if !kprobe_pmu {
        assert!(
            kp["detail"]
                .as_str()
                .unwrap()
                .contains("/sys/bus/event_source/devices/kprobe/type missing"),
            "{kp}"
        );
    }
    for name in ["BTF", "tracefs", "tracepoint", "raw_tp"] {
        assert_eq!(feature(name)["status"], "yes", "{}", feature(name));
    }
    for f in v["features"].as_array().unwrap() {
        assert!(
            !f["detail"].as_str().unwrap().is_empty(),
            "feature without a reason: {f}"
        );
    }
    // The planner's decision per path agrees with the feature probes.
    let paths = v["paths"].as_array().unwrap();
    let tier = |p: &str| {
        paths
            .iter()
            .find(|d| d["path"] == p)
            .unwrap_or_else(|| panic!("no path {p}"))["tier"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let probes = feature("fentry")["status"] == "yes" || kprobe_pmu;
    // Raw tracepoints are preferred to classic ones where the kernel allows them (the
    // syscall path's raw tier decodes x86-64 system call numbers).
    let raw = feature("raw_tp")["status"] == "yes";
    let tracepoint_tier = if raw { "raw-tp" } else { "tracepoint" };
    for p in [
        "page pinning",
        "deferred copy",
        "user→kernel copy",
        "tcp_sendmsg",
    ] {
        let t = tier(p);
        if probes {
            assert!(t == "fentry" || t == "kprobe", "{p}: {t}");
        } else {
            assert!(
                [tracepoint_tier, "derived", "unavailable"].contains(&t.as_str()),
                "{p}: {t}"
            );
        }
    }
    let syscalls = if cfg!(target_arch = "x86_64") {
        tracepoint_tier
    } else {
        "tracepoint"
    };
    assert_eq!(tier("syscalls"), syscalls);
    for d in paths {
        if d["tier"] == "unavailable" || d["tier"] == "derived" {
            assert!(!d["note"].as_str().unwrap_or("").is_empty(), "{d}");
            assert!(!d["attempts"].as_array().unwrap().is_empty(), "{d}");
        }
    }
    // Each tracepoint's status is what tracefs says (sock:* exist from 6.3 on, for example).
    let tps = v["tracepoints"].as_array().unwrap();
    assert!(!tps.is_empty());
    for t in tps {
        let (cat, name) = t["name"].as_str().unwrap().split_once(':').unwrap();
        let exists =
            std::path::Path::new(&format!("/sys/kernel/tracing/events/{cat}/{name}")).exists();
        assert_eq!(t["status"] == "yes", exists, "{t}");
    }
    assert!(
        tps.iter()
            .any(|t| t["name"] == "syscalls:sys_enter_sendmsg" && t["status"] == "yes")
    );
}

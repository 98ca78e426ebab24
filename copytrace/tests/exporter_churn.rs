//! Root-only churn soak: 5,000 short-lived processes, each with a name of its own, send a
//! known number of bytes while `copytrace exporter --cgroup … --max-series N` runs (about
//! 100 s). The page never exceeds N series, both sides of the cap are seen (names with series
//! of their own, and folded ones), the exporter's memory stops growing after the first minute,
//! nothing is lost, exited threads are reaped, and the totals equal what the children sent.
//! Its own test binary, so nothing else runs next to it.
use std::{
    io::Read as _,
    net::TcpListener,
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

#[path = "common/exporter.rs"]
mod exporter;

use exporter::{Exporter, samples, sum};

const CHILDREN: u64 = 5000;
const BYTES_EACH: u64 = 8000;
const MAX_SERIES: usize = 400;

/// Joins the cgroup, then forks CHILDREN children about 20 ms apart; each names itself
/// churnN, sends BYTES_EACH bytes and exits. Exits 1 if any child failed.
const PARENT: &str = r#"
import ctypes, os, socket, sys, time
libc = ctypes.CDLL(None)
cgroup, port, n, each = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))
data = bytes(each)
start, failed = time.monotonic(), 0

def reap(flags):
    # Every exited child, each status counted; stops when none is left (or, with WNOHANG,
    # none has exited yet). A child can exit before the parent gets here: no child left is
    # the normal end, not an error.
    global failed
    while True:
        try:
            pid, st = os.waitpid(-1, flags)
        except ChildProcessError:
            return
        if pid == 0:
            return
        failed += st != 0

for i in range(n):
    pid = os.fork()
    if pid == 0:
        try:
            libc.prctl(15, ("churn%d" % i).encode(), 0, 0, 0)
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(data)
            s.close()
            os._exit(0)
        except BaseException:
            os._exit(1)
    reap(os.WNOHANG)
    delay = start + (i + 1) * 0.02 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
reap(0)
sys.exit(1 if failed else 0)
"#;

/// A cgroup v2 directory of this test, removed at the end.
struct Cgroup(PathBuf);

impl Cgroup {
    fn new() -> Cgroup {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let root = mounts
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
            })
            .expect("a cgroup v2 hierarchy is mounted");
        let dir = root.join(format!("copytrace-churn-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        Cgroup(dir)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Accepts connections and counts the bytes received (the ground truth).
fn receiver() -> (u16, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(AtomicU64::new(0));
    let g = got.clone();
    std::thread::spawn(move || {
        for c in l.incoming().map_while(Result::ok) {
            let g = g.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut c = c;
                if c.read_to_end(&mut buf).is_ok() {
                    g.fetch_add(buf.len() as u64, Ordering::SeqCst);
                }
            });
        }
    });
    (port, got)
}

fn series_on(page: &str) -> usize {
    page.lines().filter(|l| l.starts_with("copytrace_")).count()
}

#[test]
#[ignore = "needs root: run with `cargo xtask test`"]
fn churn_of_5000_processes_stays_bounded_and_exact() {
    let cg = Cgroup::new();
    let (port, received) = receiver();
    let max = MAX_SERIES.to_string();
    let exp = Exporter::start(&["--cgroup", cg.0.to_str().unwrap(), "--max-series", &max]);
    let mut parent = Command::new("python3")
        .args([
            "-c",
            PARENT,
            cg.0.to_str().unwrap(),
            &port.to_string(),
            &CHILDREN.to_string(),
            &BYTES_EACH.to_string(),
        ])
        .spawn()
        .expect("python3");
    let start = Instant::now();
    let (mut most, mut rss_at_minute) = (0, None);
    let status = loop {
        let page = exp.page();
        most = most.max(series_on(&page));
        if rss_at_minute.is_none() && start.elapsed() >= Duration::from_secs(60) {
            rss_at_minute = Some(exp.rss_kib());
        }
        if let Some(st) = parent.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(170),
            "bounded: ≤ 3 min"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(status.success(), "every child sent its bytes: {status:?}");
    let rss_end = exp.rss_kib();
    // Two collection intervals: the last children's rows are read, then reaped.
    std::thread::sleep(Duration::from_millis(2500));
    let page = exp.page();
    let s = samples(&page);
    most = most.max(series_on(&page));

    let sent = CHILDREN * BYTES_EACH;
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::SeqCst) < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        received.load(Ordering::SeqCst),
        sent,
        "the receiver's count"
    );
    let counted = sum(
        &s,
        "copytrace_syscall_bytes_total",
        &[("syscall", "sendto")],
    ) + sum(&s, "copytrace_syscall_bytes_total", &[("syscall", "write")]);
    assert_eq!(
        counted as u64, sent,
        "bytes over all series, folded ones included"
    );
    // Nothing lost, except off-CPU intervals whose switch back in the kernel's sched_switch
    // stream does not show: under this churn a child switches out twice with no switch in
    // between, seen as much by an independent bpftrace script on the classic tracepoint (10
    // in 9,454 switch-outs of the children, beside copytrace's 14). copytrace reports them
    // as lost; they are not bytes.
    let lost: Vec<_> = s
        .iter()
        .filter(|x| x.name == "copytrace_lost_events_total" && x.value > 0.0)
        .filter(|x| x.labels.get("reason").map(String::as_str) != Some("offcpu_switch_in_missed"))
        .map(|x| (&x.labels, x.value))
        .collect();
    assert!(lost.is_empty(), "nothing lost: {lost:?}");
    assert!(
        most <= MAX_SERIES,
        "{most} series on a page, max {MAX_SERIES}"
    );
    assert_eq!(sum(&s, "copytrace_series", &[]) as usize, series_on(&page));
    // Both sides of the cap.
    let own = s
        .iter()
        .filter(|x| {
            x.labels
                .get("process")
                .is_some_and(|p| p.starts_with("churn"))
        })
        .count();
    let folded = sum(
        &s,
        "copytrace_syscall_bytes_total",
        &[("process", "(other processes)")],
    );
    assert!(
        own > 0 && folded > 0.0,
        "own series {own}, folded bytes {folded}"
    );
    assert!(sum(&s, "copytrace_folded_threads_total", &[]) >= (CHILDREN - 100) as f64);
    // Every child's thread was reaped (and the parent, a python process in the cgroup,
    // made no socket calls).
    assert!(
        sum(&s, "copytrace_reaped_threads_total", &[]) >= CHILDREN as f64,
        "reaped {}",
        sum(&s, "copytrace_reaped_threads_total", &[])
    );
    let minute = rss_at_minute.expect("the soak ran past a minute");
    eprintln!(
        "churn: {:.0} s, most series {most}, RSS {minute} KiB at 1 min, {rss_end} KiB at the end",
        start.elapsed().as_secs_f64()
    );
    assert!(
        rss_end as f64 <= minute as f64 * 1.2,
        "RSS grew from {minute} to {rss_end} KiB after the first minute"
    );
    assert!(exp.stop().success());
}

//! Root-only: `copytrace exporter` scraped by a real Prometheus server (Debian's package,
//! listening on 127.0.0.1 only, data in a temporary directory): the byte counters Prometheus
//! stored equal what a child sent, exactly; promtool accepts the page; SIGTERM detaches.
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

#[path = "common/exporter.rs"]
mod exporter;
#[path = "common/programs.rs"]
mod programs;

use exporter::{Exporter, samples, sum};

/// Sends `n` bytes as thread `name` to a receiver thread named `rx`, over loopback; prints
/// what the receiver got.
const SENDER: &str = r#"
import ctypes, socket, sys, threading
libc = ctypes.CDLL(None)
name, rx_name, n = sys.argv[1].encode(), sys.argv[2].encode(), int(sys.argv[3])
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
got = [0]
def rx():
    libc.prctl(15, rx_name, 0, 0, 0)  # PR_SET_NAME
    c, _ = srv.accept()
    while True:
        b = c.recv(1 << 16)
        if not b: break
        got[0] += len(b)
t = threading.Thread(target=rx); t.start()
libc.prctl(15, name, 0, 0, 0)
s = socket.create_connection(srv.getsockname())
data = bytes(1 << 16)
left = n
while left:
    left -= s.send(data[:min(left, len(data))])
s.close(); t.join()
print(got[0])
"#;

fn send(name: &str, rx: &str, n: u64) {
    let out = Command::new("python3")
        .args(["-c", SENDER, name, rx, &n.to_string()])
        .output()
        .expect("python3");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), n.to_string());
}

/// A Prometheus server killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: Tmp,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Tmp(PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port nothing listens on now (Prometheus cannot be asked for port 0 and then tell).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = Tmp(std::env::temp_dir().join(format!("copytrace-prom-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).unwrap();
        let config = dir.0.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
                 scrape_configs:\n  - job_name: copytrace\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package `prometheus`, installed by cargo xtask test)");
        let p = Prometheus {
            child,
            url: format!("http://{listen}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while ureq::get(&format!("{}/-/ready", p.url)).call().is_err() {
            assert!(Instant::now() < deadline, "prometheus never became ready");
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// The instant vector of `q`: (labels as JSON, value).
    fn query(&self, q: &str) -> Vec<(serde_json::Value, f64)> {
        let text = ureq::get(&format!("{}/api/v1/query", self.url))
            .query("query", q)
            .call()
            .expect("query")
            .into_string()
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["status"], "success", "{body}");
        body["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let v = r["value"][1].as_str().unwrap().parse().unwrap();
                (r["metric"].clone(), v)
            })
            .collect()
    }

    /// The single value of `q`, once it equals `want` (scrapes are 1 s apart), or what it
    /// was at the deadline.
    fn value_when(&self, q: &str, want: f64) -> Option<f64> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.query(q).first().map(|r| r.1);
            if v == Some(want) || Instant::now() >= deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Every query of the Grafana dashboard in the repository runs on the real server, names
/// only metrics the exporter has, and the copied-bytes one has the sender.
fn dashboard_queries_work(prom: &Prometheus) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/grafana-dashboard.json"
    );
    let d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exprs: Vec<String> = d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(exprs.len(), 3, "the README's three queries");
    for e in &exprs {
        for name in e
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("copytrace_"))
        {
            assert!(
                !prom.query(&format!("count({name})")).is_empty(),
                "{name} (in {e}) is not a metric the exporter has"
            );
        }
        let mut r = prom.query(e);
        // A rate needs two scrapes of the series.
        let deadline = Instant::now() + Duration::from_secs(10);
        while e.contains("user_kernel_copy") && r.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
            r = prom.query(e);
        }
        if e.contains("user_kernel_copy") {
            assert!(
                r.iter().any(|(l, _)| l["process"] == "ctx-send"),
                "{e}: {r:?}"
            );
        }
    }
}

#[test]
#[ignore = "needs root: run with `cargo xtask test`"]
fn prometheus_stores_exactly_the_bytes_a_child_sent() {
    let names = programs::our_names();
    let exp = Exporter::start(&["--comm", "ctx-send", "--comm", "ctx-recv"]);
    let prom = Prometheus::start(&exp.addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    while prom.query("up{job=\"copytrace\"} == 1").is_empty() {
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped the exporter"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    let n: u64 = 3_000_000 + 17;
    send("ctx-send", "ctx-recv", n);
    // Another name, not asked for: nothing of it may appear.
    send("ctx-other", "ctx-other-rx", 123_456);

    let bytes =
        |process: &str| format!("sum(copytrace_syscall_bytes_total{{process=\"{process}\"}})");
    assert_eq!(
        prom.value_when(&bytes("ctx-send"), n as f64),
        Some(n as f64)
    );
    assert_eq!(
        prom.value_when(&bytes("ctx-recv"), n as f64),
        Some(n as f64)
    );
    // The sender's sends as a kernel path (user→kernel copy: measured or derived per tier).
    let copied = "sum(copytrace_path_bytes_total{process=\"ctx-send\",path=\"user_kernel_copy\"})";
    assert_eq!(prom.value_when(copied, n as f64), Some(n as f64));
    let calls = prom.query("sum(copytrace_syscall_calls_total{process=\"ctx-send\"})");
    assert!(calls[0].1 >= 1.0, "{calls:?}");
    for other in ["ctx-other", "ctx-other-rx"] {
        assert!(
            prom.query(&format!("{{process=\"{other}\"}}")).is_empty(),
            "{other} was not asked for"
        );
    }
    // Nothing lost but off-CPU intervals the kernel's sched_switch stream hid (README,
    // "Kernel paths and attach tiers").
    assert_eq!(
        prom.query("sum(copytrace_lost_events_total{reason!=\"offcpu_switch_in_missed\"})")[0].1,
        0.0,
        "no event lost"
    );
    // Every path is listed with its tier; unavailable ones never appear as counters.
    let paths = prom.query("copytrace_path_info");
    assert!(paths.len() >= 10, "{paths:?}");
    for (labels, _) in paths.iter().filter(|(l, _)| l["tier"] == "unavailable") {
        let path = labels["path"].as_str().unwrap();
        assert!(
            !labels["note"].as_str().unwrap().is_empty(),
            "{path} says why"
        );
        assert!(
            prom.query(&format!("copytrace_path_events_total{{path=\"{path}\"}}"))
                .is_empty(),
            "{path} is unavailable, not zero"
        );
    }
    assert_eq!(prom.query("copytrace_build_info").len(), 1);
    dashboard_queries_work(&prom);

    // promtool accepts the page in the classic format (it does not parse OpenMetrics), and
    // Prometheus, which asks for OpenMetrics, got that.
    let page = exp.page();
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    use std::io::Write as _;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {out:?}"
    );
    let om = ureq::get(&exp.url())
        .set("Accept", "application/openmetrics-text;version=1.0.0")
        .call()
        .unwrap();
    assert!(
        om.content_type().contains("openmetrics"),
        "{}",
        om.content_type()
    );
    assert!(om.into_string().unwrap().ends_with("# EOF\n"));
    // The page's own series count is what it holds.
    let s = samples(&page);
    assert_eq!(
        sum(&s, "copytrace_series", &[]) as usize,
        s.iter()
            .filter(|x| x.name.starts_with("copytrace_"))
            .count()
    );

    let st = exp.stop();
    assert!(st.success(), "SIGTERM exits 0: {st:?}");
    assert_eq!(
        programs::left_loaded(&names),
        Vec::<String>::new(),
        "SIGTERM detached everything"
    );
}

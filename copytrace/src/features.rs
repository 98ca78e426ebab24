//! `copytrace probe`: which kernel features copytrace can use here, and why not when not.
//!
//! Every answer comes from trying the thing (loading and attaching a trivial program, opening a
//! perf event), not from guessing from kernel config; the error the kernel gave is the reason.
use std::{fs, path::Path};

use aya::{
    Btf, Ebpf,
    programs::{BtfTracePoint, FEntry, KProbe, ProgramError, RawTracePoint},
};
use copytrace_common::Config;
use serde::{Deserialize, Serialize};

use crate::{
    error::{Result, chain},
    trace::{PathDecision, TraceOptions, Tracer, loader, planner, tracefs},
};

/// Tracepoints copytrace uses (category, name).
pub const TRACEPOINTS: &[(&str, &str)] = &[
    ("syscalls", "sys_enter_sendmsg"),
    ("syscalls", "sys_exit_sendmsg"),
    ("syscalls", "sys_enter_sendto"),
    ("syscalls", "sys_exit_sendto"),
    ("syscalls", "sys_enter_write"),
    ("syscalls", "sys_exit_write"),
    ("syscalls", "sys_enter_writev"),
    ("syscalls", "sys_exit_writev"),
    ("syscalls", "sys_enter_sendfile64"),
    ("syscalls", "sys_exit_sendfile64"),
    ("syscalls", "sys_enter_recvmsg"),
    ("syscalls", "sys_exit_recvmsg"),
    ("syscalls", "sys_enter_recvfrom"),
    ("syscalls", "sys_exit_recvfrom"),
    ("syscalls", "sys_enter_read"),
    ("syscalls", "sys_exit_read"),
    ("sock", "sock_send_length"),
    ("sock", "sock_recv_length"),
    ("tcp", "tcp_sendmsg_locked"),
    ("net", "net_dev_xmit"),
    ("sched", "sched_switch"),
    ("sched", "sched_process_fork"),
    ("sched", "sched_process_exit"),
];

/// The function the probe programs try to attach to: present on every kernel that can send TCP.
const PROBE_FUNCTION: &str = "tcp_sendmsg";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Yes,
    No,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Yes => "yes",
            Status::No => "no",
            Status::Unknown => "unknown",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    pub status: Status,
    /// What was found, or why not.
    pub detail: String,
}

impl Feature {
    fn new(name: impl Into<String>, status: Status, detail: impl Into<String>) -> Feature {
        Feature {
            name: name.into(),
            status,
            detail: detail.into(),
        }
    }

    fn from_result(name: &str, r: std::result::Result<String, String>) -> Feature {
        match r {
            Ok(d) => Feature::new(name, Status::Yes, d),
            Err(d) => Feature::new(name, Status::No, d),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeReport {
    pub kernel: String,
    pub features: Vec<Feature>,
    pub tracepoints: Vec<Feature>,
    /// The attach planner's choice per kernel path, with why better tiers failed.
    pub paths: Vec<PathDecision>,
}

impl ProbeReport {
    pub fn feature(&self, name: &str) -> Option<&Feature> {
        self.features.iter().find(|f| f.name == name)
    }
}

pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Run every probe. Needs root.
pub fn probe() -> Result<ProbeReport> {
    let (features, tracepoints) = probe_features()?;
    // The planner for real: attach every path (tracing nothing: no process has this tgid),
    // record the decisions, detach.
    let tracer = Tracer::start(&TraceOptions {
        pids: vec![u32::MAX],
        ..Default::default()
    })?;
    let paths = tracer.decisions().to_vec();
    drop(tracer);
    Ok(ProbeReport {
        kernel: kernel_release(),
        features,
        tracepoints,
        paths,
    })
}

/// The feature and tracepoint tables without the planner's per-path decisions.
pub fn probe_features() -> Result<(Vec<Feature>, Vec<Feature>)> {
    loader::require_root()?;
    let root = tracefs::ensure_mounted()?;
    let mut features = vec![Feature::new("root", Status::Yes, "euid 0")];

    let btf = Btf::from_sys_fs();
    features.push(match &btf {
        Ok(_) => Feature::new("BTF", Status::Yes, "/sys/kernel/btf/vmlinux parsed"),
        Err(e) => Feature::new("BTF", Status::No, format!("/sys/kernel/btf/vmlinux: {e}")),
    });
    features.push(Feature::new(
        "tracefs",
        Status::Yes,
        format!("mounted at {}", root.display()),
    ));
    features.push(lockdown());

    let mut ebpf = loader::load_object(&Config::ZERO)?;
    features.push(Feature::from_result("kprobe", probe_kprobe(&mut ebpf)));
    features.push(Feature::from_result(
        "fentry",
        match &btf {
            Ok(btf) => probe_fentry(&mut ebpf, btf),
            Err(_) => Err("needs kernel BTF".into()),
        },
    ));
    features.push(Feature::from_result(
        "tp_btf",
        match &btf {
            Ok(btf) => probe_tp_btf(&mut ebpf, btf),
            Err(_) => Err("needs kernel BTF".into()),
        },
    ));
    features.push(Feature::from_result("raw_tp", probe_raw_tp(&mut ebpf)));
    features.push(Feature::from_result(
        "tracepoint",
        if TRACEPOINTS
            .iter()
            .any(|(c, n)| tracefs::tracepoint_exists(&root, c, n))
        {
            Ok("perf_event tracepoints (see list below)".into())
        } else {
            Err(format!("no tracepoints under {}/events", root.display()))
        },
    ));
    features.push(filter_functions(&root));
    features.push(kallsyms());
    features.push(hardware_pmu_feature());
    features.push(software_events_feature());
    drop(ebpf);

    let tracepoints = TRACEPOINTS
        .iter()
        .map(|(c, n)| {
            let name = format!("{c}:{n}");
            if tracefs::tracepoint_exists(&root, c, n) {
                Feature::new(name, Status::Yes, "present")
            } else {
                Feature::new(
                    name,
                    Status::No,
                    format!("{}/events/{c}/{n} missing", root.display()),
                )
            }
        })
        .collect();
    Ok((features, tracepoints))
}

fn program_error(what: &str, e: &ProgramError) -> String {
    format!("{what}: {}", planner::program_error(e))
}

fn probe_kprobe(ebpf: &mut Ebpf) -> std::result::Result<String, String> {
    const PMU: &str = "/sys/bus/event_source/devices/kprobe/type";
    let pmu_missing = !Path::new(PMU).exists();
    let p: &mut KProbe = planner::program(ebpf, "probe_kprobe")?;
    p.load().map_err(|e| program_error("load", &e))?;
    match p.attach(PROBE_FUNCTION, 0) {
        Ok(link) => {
            p.detach(link).map_err(|e| program_error("detach", &e))?;
            Ok(format!("attached to {PROBE_FUNCTION}"))
        }
        Err(e) if pmu_missing => Err(format!(
            "{PMU} missing: kernel built without CONFIG_KPROBES (attach failed: {})",
            match &e {
                ProgramError::KProbeError(aya::programs::kprobe::KProbeError::FileError {
                    io_error,
                    ..
                }) => io_error.to_string(),
                e => chain(e),
            }
        )),
        Err(e) => Err(program_error(&format!("attach {PROBE_FUNCTION}"), &e)),
    }
}

fn probe_fentry(ebpf: &mut Ebpf, btf: &Btf) -> std::result::Result<String, String> {
    let p: &mut FEntry = planner::program(ebpf, "probe_fentry")?;
    p.load(PROBE_FUNCTION, btf)
        .map_err(|e| program_error(&format!("load for {PROBE_FUNCTION}"), &e))?;
    let link = p
        .attach()
        .map_err(|e| program_error(&format!("attach {PROBE_FUNCTION}"), &e))?;
    p.detach(link).map_err(|e| program_error("detach", &e))?;
    Ok(format!("loaded and attached to {PROBE_FUNCTION}"))
}

fn probe_tp_btf(ebpf: &mut Ebpf, btf: &Btf) -> std::result::Result<String, String> {
    let p: &mut BtfTracePoint = planner::program(ebpf, "probe_tp_btf")?;
    p.load("sched_process_exec", btf)
        .map_err(|e| program_error("load", &e))?;
    let link = p.attach().map_err(|e| program_error("attach", &e))?;
    p.detach(link).map_err(|e| program_error("detach", &e))?;
    Ok("loaded and attached to sched_process_exec".into())
}

fn probe_raw_tp(ebpf: &mut Ebpf) -> std::result::Result<String, String> {
    let p: &mut RawTracePoint = planner::program(ebpf, "probe_raw_tp")?;
    p.load().map_err(|e| program_error("load", &e))?;
    let link = p
        .attach("sched_process_exec")
        .map_err(|e| program_error("attach", &e))?;
    p.detach(link).map_err(|e| program_error("detach", &e))?;
    Ok("loaded and attached to sched_process_exec".into())
}

fn lockdown() -> Feature {
    const FILE: &str = "/sys/kernel/security/lockdown";
    if !Path::new(FILE).exists() {
        // securityfs may simply not be mounted; mounting it is harmless and tells the truth.
        let _ = mount("securityfs", "/sys/kernel/security");
    }
    match fs::read_to_string(FILE) {
        Ok(s) => {
            let mode = s
                .split_whitespace()
                .find(|w| w.starts_with('['))
                .map(|w| w.trim_matches(['[', ']']).to_string())
                .unwrap_or_else(|| s.trim().to_string());
            let status = if mode == "none" {
                Status::No
            } else {
                Status::Yes
            };
            Feature::new("lockdown", status, format!("mode {mode} ({})", s.trim()))
        }
        Err(e) => Feature::new("lockdown", Status::Unknown, format!("{FILE}: {e}")),
    }
}

fn mount(fstype: &str, target: &str) -> std::io::Result<()> {
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    // SAFETY: valid NUL-terminated strings.
    let rc = unsafe {
        libc::mount(
            c(fstype).as_ptr(),
            c(target).as_ptr(),
            c(fstype).as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn filter_functions(root: &Path) -> Feature {
    let path = root.join("available_filter_functions");
    match fs::read_to_string(&path) {
        Ok(s) => Feature::new(
            "available_filter_functions",
            Status::Yes,
            format!("{} traceable functions", s.lines().count()),
        ),
        Err(e) => Feature::new(
            "available_filter_functions",
            Status::No,
            format!(
                "{}: {e} (function names are checked in /proc/kallsyms instead)",
                path.display()
            ),
        ),
    }
}

fn kallsyms() -> Feature {
    match fs::read_to_string("/proc/kallsyms") {
        Ok(s) => {
            let hidden = s
                .lines()
                .next()
                .is_some_and(|l| l.starts_with("0000000000000000"));
            if hidden {
                Feature::new(
                    "kallsyms",
                    Status::No,
                    "addresses hidden (kptr_restrict); names still listed",
                )
            } else {
                Feature::new(
                    "kallsyms",
                    Status::Yes,
                    format!("{} symbols", s.lines().count()),
                )
            }
        }
        Err(e) => Feature::new("kallsyms", Status::No, format!("/proc/kallsyms: {e}")),
    }
}

/// Can we count CPU cycles on this machine?
pub fn hardware_pmu_feature() -> Feature {
    match crate::counters::hardware_available() {
        Ok(()) => Feature {
            name: "hardware PMU".into(),
            status: Status::Yes,
            detail: "cycles counter opened".into(),
        },
        Err(reason) => Feature {
            name: "hardware PMU".into(),
            status: Status::No,
            detail: reason,
        },
    }
}

/// The thread accounting the CPU-cost numbers come from (no perf event, no privilege).
pub fn software_events_feature() -> Feature {
    match crate::counters::thread::Usage::now() {
        Ok(u) => Feature {
            name: "thread accounting".into(),
            status: Status::Yes,
            detail: format!(
                "CLOCK_THREAD_CPUTIME_ID and getrusage(RUSAGE_THREAD); migrations {}",
                if u.migrations.is_some() {
                    "from /proc/thread-self/sched"
                } else {
                    "from a perf software event (/proc/thread-self/sched missing)"
                }
            ),
        },
        Err(e) => Feature {
            name: "thread accounting".into(),
            status: Status::No,
            detail: format!("clock_gettime/getrusage: {e}"),
        },
    }
}

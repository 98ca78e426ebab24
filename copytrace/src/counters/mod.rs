//! perf-event counters: software events always, hardware events when the PMU allows.
use perf_event::events::{Hardware, Software};

use crate::features::{Feature, Status};

/// Explain a perf_event_open failure for a hardware event.
pub fn hardware_unavailable_reason(e: &std::io::Error) -> String {
    let pmu = std::path::Path::new("/sys/bus/event_source/devices/cpu").exists();
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) if !pmu => format!(
            "perf_event_open(cycles): {e}; no hardware PMU is exposed \
             (/sys/bus/event_source/devices/cpu missing: a VM without a virtual PMU)"
        ),
        Some(libc::EACCES) | Some(libc::EPERM) => {
            format!("perf_event_open(cycles): {e}; check /proc/sys/kernel/perf_event_paranoid")
        }
        _ => format!("perf_event_open(cycles): {e}"),
    }
}

/// Can we count CPU cycles on this machine?
pub fn hardware_pmu_feature() -> Feature {
    let mut b = perf_event::Builder::new().kind(Hardware::CPU_CYCLES);
    b.include_kernel();
    match b.build() {
        Ok(_) => Feature {
            name: "hardware PMU".into(),
            status: Status::Yes,
            detail: "cycles counter opened".into(),
        },
        Err(e) => Feature {
            name: "hardware PMU".into(),
            status: Status::No,
            detail: hardware_unavailable_reason(&e),
        },
    }
}

/// Software events (task-clock, context switches, …) — needed for CPU-cost numbers.
pub fn software_events_feature() -> Feature {
    let mut b = perf_event::Builder::new().kind(Software::TASK_CLOCK);
    b.include_kernel();
    match b.build() {
        Ok(_) => Feature {
            name: "software perf events".into(),
            status: Status::Yes,
            detail: "task-clock counter opened (kernel included)".into(),
        },
        Err(e) => Feature {
            name: "software perf events".into(),
            status: Status::No,
            detail: format!("perf_event_open(task-clock): {e}"),
        },
    }
}

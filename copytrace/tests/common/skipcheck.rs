//! The programs that make the kernel skip runs on purpose (`copytrace-ebpf/src/skipcheck.rs`),
//! loaded for this test process only, and the calls that set them off.
#![allow(dead_code)] // each test binary uses its part

use aya::{
    Ebpf,
    programs::{KProbe, RawTracePoint, TracePoint},
};
use copytrace::trace::loader;
use copytrace_common::{Config, filter};

/// `getppid()` calls each case makes: each sets off one skipped run of the victim.
pub const CALLS: u64 = 7;

/// The object, with the filter set to this process (nothing attached yet).
pub fn object() -> Ebpf {
    let mut config = Config::ZERO;
    config.filter_mode = filter::PIDS;
    config.pids[0] = std::process::id();
    loader::load_object(&config).expect("the object loads")
}

pub fn attach_raw(ebpf: &mut Ebpf, program: &str, tracepoint: &str) {
    let p: &mut RawTracePoint = ebpf.program_mut(program).unwrap().try_into().unwrap();
    p.load().unwrap();
    p.attach(tracepoint).unwrap();
}

pub fn attach_tracepoint(ebpf: &mut Ebpf, program: &str, category: &str, name: &str) {
    let p: &mut TracePoint = ebpf.program_mut(program).unwrap().try_into().unwrap();
    p.load().unwrap();
    p.attach(category, name).unwrap();
}

pub fn attach_kprobe(ebpf: &mut Ebpf, program: &str, function: &str) {
    let p: &mut KProbe = ebpf.program_mut(program).unwrap().try_into().unwrap();
    p.load().unwrap();
    p.attach(function, 0)
        .unwrap_or_else(|e| panic!("kprobe on {function}: {e}"));
}

/// Make `CALLS` getppid() system calls (not through libc, which could answer from a cache).
pub fn getppid_calls() {
    for _ in 0..CALLS {
        // SAFETY: getppid has no arguments and no side effects.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
}

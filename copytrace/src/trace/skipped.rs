//! Program runs the kernel skipped: events that happened but are missing from the totals.
//!
//! Two guards drop a run without running the program, and both fire when an interrupt's
//! softirq does network work (a deferred copy on delivery, a zero-copy completion when an
//! skb is freed) in the middle of another probe's handler on the same CPU:
//! - kprobes drop a hit while another kprobe's handler runs on the CPU (the probe's `missed`,
//!   which the perf link reports);
//! - BPF skips a kprobe or classic-tracepoint program while any other such program runs on
//!   the CPU (`bpf_prog_active`), and a trampoline or raw-tracepoint program while the same
//!   program runs there (`recursion_misses` of the program).
//!
//! The first two hit the kprobe tier whenever anything else on the machine uses kprobes or
//! classic tracepoints; fentry and raw tracepoints only skip when the same program re-enters.
//! One more guard no kernel counts: a classic tracepoint hit inside a program run in the same
//! context (task, softirq, hardirq) is dropped by perf's recursion check before BPF sees it —
//! only a helper that fires a tracepoint does that, and none of copytrace's programs call one.
//! Kernels count kprobe skips from 6.7 on (the perf link's `kprobe.missed` came with them);
//! before that they are invisible, which [`note_uncounted`] says on every kprobe-tier path.
use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
    sync::OnceLock,
};

use aya::Ebpf;
use aya_obj::generated::{
    bpf_attr, bpf_cmd, bpf_link_info, bpf_link_type, bpf_perf_event_type, bpf_prog_info,
};

use crate::trace::{
    btf,
    planner::{PathDecision, Tier},
};

/// Runs each loaded program of `ebpf` lost, by program name, since it was loaded: the ones
/// BPF skipped, plus, for kprobes, the hits the kprobe itself dropped. Programs the kernel
/// will not describe count 0 (the snapshot must not fail for a statistic).
pub fn runs(ebpf: &Ebpf) -> BTreeMap<String, u64> {
    let ours: Vec<(&str, bpf_prog_info)> = ebpf
        .programs()
        .filter_map(|(name, p)| Some((name, prog_info(p.fd().ok()?.as_fd()).ok()?)))
        .collect();
    let probe_missed = kprobe_missed_by_program(&ours.iter().map(|(_, i)| i.id).collect());
    ours.into_iter()
        .map(|(name, info)| {
            let missed = probe_missed.get(&info.id).copied().unwrap_or(0);
            (name.to_string(), info.recursion_misses + missed)
        })
        .collect()
}

/// Whether this kernel counts kprobe runs it skips (6.7+: the perf link reports
/// `kprobe.missed`, and BPF counts the kprobe programs it skips under `bpf_prog_active`).
pub fn kprobe_skips_counted() -> bool {
    static COUNTED: OnceLock<bool> = OnceLock::new();
    *COUNTED.get_or_init(|| {
        btf::Btf::from_sys_fs().is_ok_and(|b| {
            b.member_path_offset("bpf_link_info", &["perf_event", "kprobe", "missed"])
                .is_some()
        })
    })
}

/// On a kernel that does not count skipped kprobe runs, say so on every kprobe-tier path:
/// its totals may miss events without any counter showing it.
pub fn note_uncounted(decisions: &mut [PathDecision]) {
    if kprobe_skips_counted() {
        return;
    }
    const WHY: &str = "this kernel (before 6.7) does not count the kprobe runs it skips \
         while another probe's program runs on the CPU: such events would be missing unseen";
    for d in decisions.iter_mut().filter(|d| d.tier == Tier::Kprobe) {
        d.note = Some(match d.note.take() {
            Some(n) => format!("{n}; {WHY}"),
            None => WHY.to_string(),
        });
    }
}

/// Hits dropped by each kprobe (and kretprobe) link of the programs `ours`, by program id.
/// Other links on the machine are not opened again.
fn kprobe_missed_by_program(ours: &BTreeSet<u32>) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    let links = aya::programs::loaded_links().filter_map(|l| l.ok());
    for link in links.filter(|l| ours.contains(&l.program_id())) {
        let Ok(info) = link_fd(link.id()).and_then(|fd| link_info(fd.as_fd())) else {
            continue;
        };
        if info.type_ != bpf_link_type::BPF_LINK_TYPE_PERF_EVENT as u32 {
            continue;
        }
        // SAFETY: a perf-event link's info fills the `perf_event` member of the union.
        let perf = unsafe { info.__bindgen_anon_1.perf_event };
        let kprobe = [
            bpf_perf_event_type::BPF_PERF_EVENT_KPROBE as u32,
            bpf_perf_event_type::BPF_PERF_EVENT_KRETPROBE as u32,
        ];
        if kprobe.contains(&perf.type_) {
            // SAFETY: the `kprobe` member is the one filled for these two types.
            let missed = unsafe { perf.__bindgen_anon_1.kprobe.missed };
            *out.entry(info.prog_id).or_insert(0) += missed;
        }
    }
    out
}

/// The `bpf(2)` system call, which aya does not expose for these two commands.
fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a zero-initialised bpf_attr prepared for `cmd`, of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_int,
            attr as *mut bpf_attr,
            std::mem::size_of::<bpf_attr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn zeroed_attr() -> bpf_attr {
    // SAFETY: bpf_attr is plain integers; all-zero is the kernel's "unset" for every field.
    unsafe { std::mem::zeroed() }
}

/// An fd for the link with this id.
fn link_fd(id: u32) -> io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_6.__bindgen_anon_1.link_id = id;
    let fd = bpf(bpf_cmd::BPF_LINK_GET_FD_BY_ID, &mut attr)?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `BPF_OBJ_GET_INFO_BY_FD` into a zeroed `T` (the kernel fills what it knows of it; its
/// pointer fields stay null, so nothing else is copied out).
fn info_by_fd<T: Copy>(fd: BorrowedFd<'_>) -> io::Result<T> {
    // SAFETY: the info structs are plain integers; zero is valid for each.
    let mut info: T = unsafe { std::mem::zeroed() };
    let mut attr = zeroed_attr();
    attr.info.bpf_fd = fd.as_raw_fd() as u32;
    attr.info.info_len = std::mem::size_of::<T>() as u32;
    attr.info.info = &mut info as *mut T as u64;
    bpf(bpf_cmd::BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info)
}

fn prog_info(fd: BorrowedFd<'_>) -> io::Result<bpf_prog_info> {
    info_by_fd(fd)
}

fn link_info(fd: BorrowedFd<'_>) -> io::Result<bpf_link_info> {
    info_by_fd(fd)
}

//! The attach planner: for each kernel path, try fentry/fexit → kprobe/kretprobe → raw
//! tracepoint → tracepoint, keep the first tier that loads and attaches, and remember why the
//! better ones did not. Paths that no tier can see are reported as such, with the reason.
//!
//! Raw tracepoints take the place of tp_btf: both skip building the trace record that makes a
//! classic tracepoint cost more per event, and both pass the tracepoint's own arguments. A
//! raw tracepoint program attaches to any tracepoint (tp_btf is bound to one at load), and
//! without CO-RE the programs read struct fields through BTF offsets either way.
use std::{collections::HashSet, fs, path::Path};

use aya::{
    Btf, Ebpf,
    programs::{FEntry, FExit, KProbe, ProgramError, RawTracePoint, TracePoint},
};
use serde::{Deserialize, Serialize};

use crate::{error::chain, trace::tracefs};

/// Attach mechanisms, best first.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    Fentry,
    Kprobe,
    TpBtf,
    /// A raw tracepoint (`BPF_PROG_TYPE_RAW_TRACEPOINT`): the tracepoint's arguments, no record.
    RawTp,
    Tracepoint,
    /// No probe on the path: computed from events of other paths.
    Derived,
    /// Not visible on this kernel.
    Unavailable,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Fentry => "fentry",
            Tier::Kprobe => "kprobe",
            Tier::TpBtf => "tp_btf",
            Tier::RawTp => "raw_tp",
            Tier::Tracepoint => "tracepoint",
            Tier::Derived => "derived",
            Tier::Unavailable => "unavailable",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum HookKind {
    FEntry,
    FExit,
    KProbe,
    KRetProbe,
    /// A classic tracepoint in this category (the name is the candidate's target).
    Tracepoint(&'static str),
    /// A raw tracepoint (its tracefs category, to check that it exists).
    RawTracepoint(&'static str),
}

impl HookKind {
    /// The tracefs category of a tracepoint hook.
    fn category(self) -> Option<&'static str> {
        match self {
            HookKind::Tracepoint(c) | HookKind::RawTracepoint(c) => Some(c),
            _ => None,
        }
    }
}

/// A raw tracepoint candidate: programs named `raw_<tracepoint>`.
macro_rules! raw {
    ($category:literal, $targets:expr) => {
        Candidate {
            tier: Tier::RawTp,
            targets: $targets,
            hooks: &[("", HookKind::RawTracepoint($category))],
        }
    };
}

/// One way of seeing a path: programs attached together to one target function (or to their
/// tracepoints).
struct Candidate {
    tier: Tier,
    /// Alternative function names (different kernels), or tracepoint names for that tier.
    targets: &'static [&'static str],
    hooks: &'static [(&'static str, HookKind)],
}

/// What to say when no candidate attaches.
enum Fallback {
    /// Computed from other paths' events (with what that means).
    Derived(&'static str),
    Unavailable(&'static str),
}

struct PathSpec {
    name: &'static str,
    candidates: &'static [Candidate],
    fallback: Fallback,
}

const SEND_SYSCALLS: &[&str] = &[
    "sys_enter_sendmsg",
    "sys_exit_sendmsg",
    "sys_enter_sendto",
    "sys_exit_sendto",
    "sys_enter_write",
    "sys_exit_write",
    "sys_enter_writev",
    "sys_exit_writev",
    "sys_enter_sendfile64",
    "sys_exit_sendfile64",
    "sys_enter_recvmsg",
    "sys_exit_recvmsg",
    "sys_enter_recvfrom",
    "sys_exit_recvfrom",
    "sys_enter_read",
    "sys_exit_read",
];

/// Path names, as reported.
pub mod names {
    pub const SYSCALLS: &str = "syscalls";
    pub const SOCKET_SEND: &str = "socket send";
    pub const SOCKET_RECV: &str = "socket receive";
    pub const TCP: &str = "tcp_sendmsg";
    pub const COPY: &str = "user→kernel copy";
    pub const ZEROCOPY: &str = "zero-copy attach";
    pub const PINNING: &str = "page pinning";
    pub const DEFERRED: &str = "deferred copy";
    pub const COMPLETIONS: &str = "zero-copy completions";
    pub const RECV_COPY: &str = "receive copy";
    pub const SCHED: &str = "scheduling";
    pub const URING: &str = "io_uring sends";
    pub const SENDPAGE: &str = "sendfile to sockets (sendpage)";
    pub const PROCESSES: &str = "process tracking";
}

/// The raw tier of the syscall path (`raw_syscalls:sys_enter/sys_exit`) runs one program for
/// every system call of every process and picks the tracked ones by number (x86-64); the
/// classic per-call tracepoints run only for the tracked calls but cost more per event (110
/// against 75 ns of dispatch on the CI VM). Measured both ways with `cargo xtask
/// trace-overhead` (3 rounds): a traced 64 B iperf3 client kept 0.764× of its untraced
/// throughput with raw, 0.743× with classic syscall tracepoints (bench 64 B: 0.497× against
/// 0.446×), though iperf3 makes as many untracked calls (select) as tracked ones. A machine
/// busy with unrelated system calls pays the raw tier's filter on each: the README says so.
#[cfg(target_arch = "x86_64")]
const SYSCALL_CANDIDATES: &[Candidate] = &[
    Candidate {
        tier: Tier::RawTp,
        targets: &["sys_enter", "sys_exit"],
        hooks: &[("", HookKind::RawTracepoint("raw_syscalls"))],
    },
    SYSCALL_TRACEPOINTS,
];
#[cfg(not(target_arch = "x86_64"))]
const SYSCALL_CANDIDATES: &[Candidate] = &[SYSCALL_TRACEPOINTS];

const SYSCALL_TRACEPOINTS: Candidate = Candidate {
    tier: Tier::Tracepoint,
    targets: SEND_SYSCALLS,
    hooks: &[("", HookKind::Tracepoint("syscalls"))],
};

/// The socket paths' raw tier: no program in the socket layer. A TCP send is marked by the
/// raw `tcp_sendmsg_locked` program with its `sk`, where the tcp_sendmsg path has that tier;
/// any other tracked call of a traced thread has the socket behind its descriptor looked up
/// by the raw `sys_enter` (receives) or `sys_exit` (sends) program, and the exit writes the
/// socket row from the call's return value, as the probe tiers do. A socket-layer tracepoint
/// costs one more dispatch for every socket call on the machine, traced or not. It needs the
/// raw tier of the system calls (checked after they are attached).
const SOCKETS_BY_FD: Candidate = Candidate {
    tier: Tier::RawTp,
    targets: &[SOCKETS_BY_FD_TARGET],
    hooks: &[],
};

/// How a socket path attached to the raw tier is reported.
pub const SOCKETS_BY_FD_TARGET: &str =
    "the call's descriptor, at raw_syscalls (a TCP send: tcp_sendmsg_locked's sk)";

const PIN_FUNCTIONS: &[&str] = &[
    "get_user_pages_fast",
    "internal_get_user_pages_fast",
    "gup_fast_fallback",
    "pin_user_pages_fast",
];

static PATHS: &[PathSpec] = &[
    PathSpec {
        name: names::SYSCALLS,
        // The syscall tracepoints are the stable ABI for this and also mark "inside a send call"
        // for the probe tiers of the other paths; no probe tier would see more.
        candidates: SYSCALL_CANDIDATES,
        fallback: Fallback::Unavailable("the syscalls:* tracepoints are missing"),
    },
    PathSpec {
        name: names::SOCKET_SEND,
        candidates: &[
            // sock_sendmsg() is inlined into the system calls; its LSM hook is not.
            Candidate {
                tier: Tier::Fentry,
                targets: &["security_socket_sendmsg"],
                hooks: &[("fe_sock_send", HookKind::FEntry)],
            },
            Candidate {
                tier: Tier::Kprobe,
                targets: &["security_socket_sendmsg"],
                hooks: &[("kp_sock_send", HookKind::KProbe)],
            },
            SOCKETS_BY_FD,
            Candidate {
                tier: Tier::Tracepoint,
                targets: &["sock_send_length"],
                hooks: &[("sock_send_length", HookKind::Tracepoint("sock"))],
            },
        ],
        fallback: Fallback::Unavailable(
            "no probe on security_socket_sendmsg and no sock:sock_send_length: write()/writev() on \
             sockets cannot be told from file I/O",
        ),
    },
    PathSpec {
        name: names::SOCKET_RECV,
        candidates: &[
            Candidate {
                tier: Tier::Fentry,
                targets: &["security_socket_recvmsg"],
                hooks: &[("fe_sock_recv", HookKind::FEntry)],
            },
            Candidate {
                tier: Tier::Kprobe,
                targets: &["security_socket_recvmsg"],
                hooks: &[("kp_sock_recv", HookKind::KProbe)],
            },
            SOCKETS_BY_FD,
            Candidate {
                tier: Tier::Tracepoint,
                targets: &["sock_recv_length"],
                hooks: &[("sock_recv_length", HookKind::Tracepoint("sock"))],
            },
        ],
        fallback: Fallback::Unavailable(
            "no probe on security_socket_recvmsg and no sock:sock_recv_length: read() on sockets cannot \
             be told from file I/O",
        ),
    },
    PathSpec {
        name: names::SENDPAGE,
        candidates: &[
            Candidate {
                tier: Tier::Fentry,
                targets: &["tcp_sendpage"],
                hooks: &[("fe_tcp_sendpage", HookKind::FEntry)],
            },
            Candidate {
                tier: Tier::Kprobe,
                targets: &["tcp_sendpage"],
                hooks: &[("kp_tcp_sendpage", HookKind::KProbe)],
            },
        ],
        fallback: Fallback::Unavailable(
            "no probe on tcp_sendpage: on 6.5 and later it is gone and sendfile passes \
             sock_sendmsg (the socket send path sees it); before 6.5 sendfile to sockets is not \
             counted without kprobes or fentry",
        ),
    },
    PathSpec {
        name: names::TCP,
        candidates: &[
            Candidate {
                tier: Tier::Fentry,
                targets: &["tcp_sendmsg"],
                hooks: &[
                    ("fe_tcp_sendmsg", HookKind::FEntry),
                    ("fx_tcp_sendmsg", HookKind::FExit),
                ],
            },
            Candidate {
                tier: Tier::Kprobe,
                targets: &["tcp_sendmsg"],
                hooks: &[
                    ("kp_tcp_sendmsg", HookKind::KProbe),
                    ("krp_tcp_sendmsg", HookKind::KRetProbe),
                ],
            },
            raw!("tcp", &["tcp_sendmsg_locked"]),
            Candidate {
                tier: Tier::Tracepoint,
                targets: &["tcp_sendmsg_locked"],
                hooks: &[("tcp_sendmsg_locked", HookKind::Tracepoint("tcp"))],
            },
        ],
        fallback: Fallback::Unavailable("no tcp_sendmsg probe and no tcp:tcp_sendmsg_locked"),
    },
    PathSpec {
        name: names::COPY,
        candidates: &[
            Candidate {
                tier: Tier::Fentry,
                targets: &["__check_object_size"],
                hooks: &[("fe_usercopy", HookKind::FEntry)],
            },
            Candidate {
                tier: Tier::Kprobe,
                targets: &["__check_object_size"],
                hooks: &[("kp_usercopy", HookKind::KProbe)],
            },
        ],
        fallback: Fallback::Derived(
            "bytes the socket accepted from send calls without MSG_ZEROCOPY (the copy helpers \
             cannot be probed here)",
        ),
    },
    PathSpec {
        name: names::ZEROCOPY,
        candidates: &[
            Candidate {
                tier: Tier::Fentry,
                targets: &["skb_zerocopy_iter_stream"],
                hooks: &[
                    ("fe_zc_iter", HookKind::FEntry),
                    ("fx_zc_iter", HookKind::FExit),
                ],
            },
            Candidate {
                tier: Tier::Kprobe,
                targets: &["skb_zerocopy_iter_stream"],
                hooks: &[
                    ("kp_zc_iter", HookKind::KProbe),
                    ("krp_zc_iter", HookKind::KRetProbe),
                ],
            },
        ],
        fallback: Fallback::Derived(
            "bytes of send calls that passed MSG_ZEROCOPY: zero-copy *requested*; whether the \
             kernel attached the pages is not visible here",
        ),
    },
    PathSpec {
        name: names::PINNING,
        candidates: &[
            Candidate {
                tier: Tier::Fentry,
                targets: PIN_FUNCTIONS,
                hooks: &[("fe_pin", HookKind::FEntry), ("fx_pin", HookKind::FExit)],
            },
            Candidate {
                tier: Tier::Kprobe,
                targets: PIN_FUNCTIONS,
                hooks: &[
                    ("kp_pin", HookKind::KProbe),
                    ("krp_pin", HookKind::KRetProbe),
                ],
            },
        ],
        fallback: Fallback::Unavailable(
            "page pinning has no tracepoint; it needs fentry or kprobes on get_user_pages_fast",
        ),
    },
    PathSpec {
        name: names::DEFERRED,
        candidates: &[
            Candidate {
                tier: Tier::Fentry,
                targets: &["skb_copy_ubufs"],
                hooks: &[
                    ("fe_ubufs", HookKind::FEntry),
                    ("fx_ubufs", HookKind::FExit),
                ],
            },
            Candidate {
                tier: Tier::Kprobe,
                targets: &["skb_copy_ubufs"],
                hooks: &[
                    ("kp_ubufs", HookKind::KProbe),
                    ("krp_ubufs", HookKind::KRetProbe),
                ],
            },
        ],
        fallback: Fallback::Unavailable(
            "skb_copy_ubufs has no tracepoint; `copytrace bench` reports the kernel's own \
             answer instead (the SO_EE_CODE_ZEROCOPY_COPIED fraction of completions)",
        ),
    },
    PathSpec {
        name: names::COMPLETIONS,
        candidates: &[
            Candidate {
                tier: Tier::Fentry,
                // Renamed msg_zerocopy_complete in 6.10; same arguments.
                targets: &["msg_zerocopy_callback", "msg_zerocopy_complete"],
                hooks: &[("fe_zc_done", HookKind::FEntry)],
            },
            Candidate {
                tier: Tier::Kprobe,
                targets: &["msg_zerocopy_callback", "msg_zerocopy_complete"],
                hooks: &[("kp_zc_done", HookKind::KProbe)],
            },
        ],
        fallback: Fallback::Unavailable(
            "msg_zerocopy_callback has no tracepoint; the benchmark counts completions itself",
        ),
    },
    PathSpec {
        name: names::RECV_COPY,
        candidates: &[
            Candidate {
                tier: Tier::Fentry,
                targets: &["skb_copy_datagram_iter"],
                hooks: &[
                    ("fe_recv_copy", HookKind::FEntry),
                    ("fx_recv_copy", HookKind::FExit),
                ],
            },
            Candidate {
                tier: Tier::Kprobe,
                targets: &["skb_copy_datagram_iter"],
                hooks: &[
                    ("kp_recv_copy", HookKind::KProbe),
                    ("krp_recv_copy", HookKind::KRetProbe),
                ],
            },
            // No tracepoint tier: skb:skb_copy_datagram_iovec fires for every copy of every
            // receiver on the machine, traced or not (see the kernel side's `receive`).
        ],
        fallback: Fallback::Derived(
            "bytes receive calls on sockets returned (one event per call): the copy helper \
             cannot be probed here, and its tracepoint would cost every untraced receiver",
        ),
    },
    PathSpec {
        name: names::URING,
        // Requests from submission to completion, attributed to the submitter; SEND_ZC's
        // notifications too. The request structure is not read, so no probe tier is needed.
        candidates: &[
            Candidate {
                tier: Tier::Tracepoint,
                targets: &[
                    "io_uring_submit_req",
                    "io_uring_complete",
                    "io_uring_cqe_overflow",
                ],
                hooks: &[("", HookKind::Tracepoint("io_uring"))],
            },
            // Before 6.3 the submission event had another name (same fields).
            Candidate {
                tier: Tier::Tracepoint,
                targets: &[
                    "io_uring_submit_sqe",
                    "io_uring_complete",
                    "io_uring_cqe_overflow",
                ],
                hooks: &[("", HookKind::Tracepoint("io_uring"))],
            },
        ],
        fallback: Fallback::Unavailable(
            "io_uring:io_uring_submit_req (or _sqe)/io_uring_complete are missing (no \
             io_uring, or a kernel before 6.0): io_uring sends are not attributed",
        ),
    },
    PathSpec {
        name: names::SCHED,
        candidates: &[
            raw!("sched", &["sched_switch"]),
            Candidate {
                tier: Tier::Tracepoint,
                targets: &["sched_switch"],
                hooks: &[("sched_switch", HookKind::Tracepoint("sched"))],
            },
        ],
        fallback: Fallback::Unavailable("sched:sched_switch is missing"),
    },
    PathSpec {
        name: names::PROCESSES,
        candidates: &[
            raw!("sched", &["sched_process_fork", "sched_process_exit"]),
            Candidate {
                tier: Tier::Tracepoint,
                targets: &["sched_process_fork", "sched_process_exit"],
                hooks: &[("", HookKind::Tracepoint("sched"))],
            },
        ],
        fallback: Fallback::Unavailable(
            "sched:sched_process_fork/exit are missing: children of a traced command are not \
             followed",
        ),
    },
];

/// One attempt that did not work.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attempt {
    pub tier: Tier,
    pub target: String,
    pub error: String,
}

/// What the planner decided for one path.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PathDecision {
    pub path: String,
    pub tier: Tier,
    /// The function or tracepoints used.
    pub target: Option<String>,
    /// Better tiers that failed, and why.
    pub attempts: Vec<Attempt>,
    /// For derived/unavailable paths: what the numbers mean or why there are none.
    pub note: Option<String>,
}

/// What the kernel allows, learned once: of the functions the planner may probe, which exist
/// and which ftrace can hook.
pub struct KernelSymbols {
    /// Probe targets listed in /proc/kallsyms as text symbols; `None` when it cannot be read
    /// (then we just try).
    kallsyms: Option<HashSet<&'static str>>,
    /// Probe targets listed in available_filter_functions; `None` when it cannot be read.
    traceable: Option<HashSet<&'static str>>,
}

/// Every function name a probe candidate may attach to, sorted (for binary search).
fn probe_targets() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = PATHS
        .iter()
        .flat_map(|p| p.candidates)
        .filter(|c| matches!(c.tier, Tier::Fentry | Tier::Kprobe))
        .flat_map(|c| c.targets.iter().copied())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The `targets` that `text` lists (each line's symbol, by `name_of`). Only those are kept:
/// the files list 100,000+ symbols, and under emulation (the guest test bed) building a set of
/// them all cost seconds per tracer.
fn listed(
    text: &str,
    targets: &[&'static str],
    name_of: impl Fn(&str) -> Option<&str>,
) -> HashSet<&'static str> {
    text.lines()
        .filter_map(name_of)
        .filter_map(|n| targets.binary_search(&n).ok().map(|i| targets[i]))
        .collect()
}

/// "ffffffff81000000 T name\t[module]": the name of a text symbol.
fn kallsyms_text_symbol(line: &str) -> Option<&str> {
    let (_, rest) = line.split_once(' ')?;
    let (ty, name) = rest.split_once(' ')?;
    matches!(ty, "t" | "T").then(|| name.split_once('\t').map_or(name, |n| n.0))
}

/// "name" or "name [module]": the function's name.
fn filter_function(line: &str) -> Option<&str> {
    line.split(' ').next()
}

impl KernelSymbols {
    pub fn read(tracefs_root: &Path) -> KernelSymbols {
        let targets = probe_targets();
        let kallsyms = fs::read_to_string("/proc/kallsyms")
            .ok()
            .map(|s| listed(&s, &targets, kallsyms_text_symbol));
        let traceable = fs::read_to_string(tracefs_root.join("available_filter_functions"))
            .ok()
            .map(|s| listed(&s, &targets, filter_function));
        KernelSymbols {
            kallsyms,
            traceable,
        }
    }

    /// Why `f` cannot be probed, if we can tell without trying.
    fn unprobeable(&self, f: &str) -> Option<String> {
        // A listing with none of the targets is not one we understand: then just try.
        if let Some(k) = &self.kallsyms
            && !k.is_empty()
            && !k.contains(f)
        {
            return Some(format!("{f} is not in /proc/kallsyms (inlined or absent)"));
        }
        if let Some(t) = &self.traceable
            && !t.contains(f)
        {
            return Some(format!(
                "{f} is not in available_filter_functions (notrace)"
            ));
        }
        None
    }
}

/// Options for the planner.
#[derive(Clone, Copy, Debug)]
pub struct PlanOptions {
    /// Best tier allowed (tests force `kprobe` on kernels where fentry would win).
    pub best_tier: Tier,
    /// Why the raw tracepoint programs cannot run here (they need struct offsets from BTF).
    pub raw_refused: Option<&'static str>,
    /// Attach empty programs to the chosen hooks instead (the cost floor).
    pub floor: bool,
    /// Why the socket paths cannot find sockets through the descriptor here (they need the
    /// raw system call tier and the file/socket offsets from BTF).
    pub sockets_by_fd_refused: Option<&'static str>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            best_tier: Tier::Fentry,
            raw_refused: None,
            floor: false,
            sockets_by_fd_refused: None,
        }
    }
}

/// A program error in words, recognising the two refusals this project meets most: fentry
/// refused by policy (EPERM with an empty verifier log) and a kernel without kprobes.
pub(crate) fn program_error(e: &ProgramError) -> String {
    if let ProgramError::LoadError {
        io_error,
        verifier_log,
    } = e
        && io_error.raw_os_error() == Some(libc::EPERM)
        && verifier_log.to_string().trim().is_empty()
    {
        return "BPF_PROG_LOAD: EPERM with an empty verifier log (refused by policy)".into();
    }
    if let ProgramError::KProbeError(aya::programs::kprobe::KProbeError::FileError {
        io_error, ..
    }) = e
        && !Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
    {
        return format!("kprobes unavailable (no kprobe PMU: CONFIG_KPROBES unset?): {io_error}");
    }
    chain(e)
}

/// One loaded and attached program (the links live in the programs until they are dropped).
pub struct Hooked {
    program: String,
}

/// The program `name` as its concrete type.
pub(crate) fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| format!("program {name} missing from the object"))?
        .try_into()
        .map_err(|e: ProgramError| e.to_string())
}

/// The empty program of the cost floor for a hook of `kind`: one program of each type,
/// loaded once and attached to every hook of that type.
fn floor_program(kind: HookKind) -> Result<&'static str, String> {
    match kind {
        HookKind::Tracepoint(_) => Ok("floor_tracepoint"),
        HookKind::RawTracepoint(_) => Ok("floor_raw_tp"),
        HookKind::KProbe => Ok("probe_kprobe"),
        HookKind::KRetProbe => Ok("floor_kretprobe"),
        HookKind::FEntry | HookKind::FExit => {
            Err("the cost floor has no fentry programs (one would be needed per function)".into())
        }
    }
}

/// Load `program_name` for `target` (unless a floor program is loaded already) and attach it.
fn attach_hook(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    program_name: &str,
    kind: HookKind,
    target: &str,
    floor: bool,
) -> Result<Hooked, String> {
    let e = |e: ProgramError| program_error(&e);
    let program_name = if floor {
        floor_program(kind)?
    } else {
        program_name
    };
    let loaded = ebpf.program(program_name).is_some_and(|p| p.fd().is_ok());
    match kind {
        _ if floor && loaded => {}
        HookKind::FEntry | HookKind::FExit => {
            let btf = btf.ok_or("no kernel BTF")?;
            if matches!(kind, HookKind::FEntry) {
                program::<FEntry>(ebpf, program_name)?
                    .load(target, btf)
                    .map_err(e)?;
            } else {
                program::<FExit>(ebpf, program_name)?
                    .load(target, btf)
                    .map_err(e)?;
            }
        }
        HookKind::KProbe | HookKind::KRetProbe => {
            program::<KProbe>(ebpf, program_name)?.load().map_err(e)?
        }
        HookKind::Tracepoint(_) => program::<TracePoint>(ebpf, program_name)?
            .load()
            .map_err(e)?,
        HookKind::RawTracepoint(_) => program::<RawTracePoint>(ebpf, program_name)?
            .load()
            .map_err(e)?,
    }
    match kind {
        HookKind::FEntry => {
            program::<FEntry>(ebpf, program_name)?.attach().map_err(e)?;
        }
        HookKind::FExit => {
            program::<FExit>(ebpf, program_name)?.attach().map_err(e)?;
        }
        HookKind::KProbe | HookKind::KRetProbe => {
            program::<KProbe>(ebpf, program_name)?
                .attach(target, 0)
                .map_err(e)?;
        }
        HookKind::Tracepoint(category) => {
            program::<TracePoint>(ebpf, program_name)?
                .attach(category, target)
                .map_err(e)?;
        }
        HookKind::RawTracepoint(_) => {
            program::<RawTracePoint>(ebpf, program_name)?
                .attach(target)
                .map_err(e)?;
        }
    }
    Ok(Hooked {
        program: program_name.to_string(),
    })
}

/// Detach and unload programs of a candidate that only partly attached.
fn roll_back(ebpf: &mut Ebpf, programs: &[&str]) {
    for name in programs {
        if let Some(p) = ebpf.program_mut(name) {
            let _ = match p {
                aya::programs::Program::FEntry(p) => p.unload(),
                aya::programs::Program::FExit(p) => p.unload(),
                aya::programs::Program::KProbe(p) => p.unload(),
                aya::programs::Program::TracePoint(p) => p.unload(),
                aya::programs::Program::RawTracePoint(p) => p.unload(),
                _ => Ok(()),
            };
        }
    }
}

/// Try one candidate with one target; on failure nothing stays attached.
fn try_candidate(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    c: &Candidate,
    target: &str,
    floor: bool,
) -> Result<Vec<Hooked>, String> {
    let mut done: Vec<Hooked> = Vec::new();
    for &(program, kind) in c.hooks {
        // Tracepoint candidates with an empty program name attach the program named like
        // each tracepoint (`raw_<name>` for raw tracepoints).
        let program = match (program.is_empty(), kind) {
            (true, HookKind::RawTracepoint(_)) => format!("raw_{target}"),
            (true, _) => target.to_string(),
            (false, _) => program.to_string(),
        };
        match attach_hook(ebpf, btf, &program, kind, target, floor) {
            Ok(h) => done.push(h),
            // A floor program serves other hooks too: it stays (the tracer drops it whole).
            Err(e) if floor => return Err(e),
            Err(e) => {
                let names: Vec<&str> = done.iter().map(|h| h.program.as_str()).collect();
                roll_back(ebpf, &names);
                // The failing program may be loaded but not attached: unload it too.
                roll_back(ebpf, &[&program]);
                return Err(e);
            }
        }
    }
    Ok(done)
}

/// Paths whose events start the counting (syscall exits, socket returns, process tracking):
/// attached last, once every other path is in place.
const BASE_PATHS: [&str; 4] = [
    names::SYSCALLS,
    names::SOCKET_SEND,
    names::SOCKET_RECV,
    names::PROCESSES,
];

/// Which paths [`attach_paths`] handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Everything except the base paths.
    Probes,
    /// Syscalls, socket layer, process tracking.
    Base,
}

/// Sort decisions into the canonical (reporting) order.
pub fn canonical_order(decisions: &mut [PathDecision]) {
    decisions.sort_by_key(|d| PATHS.iter().position(|p| p.name == d.path));
}

/// Attach every tracepoint of candidate `c` (all or none); `Ok` names them.
fn try_tracepoints(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    tracefs_root: &Path,
    c: &Candidate,
    opts: PlanOptions,
) -> Result<String, Attempt> {
    let category = c.hooks[0].1.category().expect("a tracepoint candidate");
    let attempt = |target: String, error: String| Attempt {
        tier: c.tier,
        target,
        error,
    };
    let all = || format!("{category}:{}", c.targets.join(","));
    if let (Tier::RawTp, Some(why)) = (c.tier, opts.raw_refused) {
        return Err(attempt(all(), why.to_string()));
    }
    let missing: Vec<_> = c
        .targets
        .iter()
        .filter(|t| !tracefs::tracepoint_exists(tracefs_root, category, t))
        .collect();
    if !missing.is_empty() {
        return Err(attempt(
            all(),
            format!("missing tracepoint(s): {missing:?}"),
        ));
    }
    let mut attached: Vec<Hooked> = Vec::new();
    for t in c.targets {
        let one = Candidate {
            tier: c.tier,
            targets: &[],
            hooks: c.hooks,
        };
        match try_candidate(ebpf, btf, &one, t, opts.floor) {
            Ok(h) => attached.extend(h),
            Err(e) => {
                if !opts.floor {
                    let progs: Vec<&str> = attached.iter().map(|h| h.program.as_str()).collect();
                    roll_back(ebpf, &progs);
                }
                return Err(attempt(format!("{category}:{t}"), e));
            }
        }
    }
    Ok(if c.targets.len() > 4 {
        format!("{} {category}:* tracepoints", c.targets.len())
    } else {
        c.targets
            .iter()
            .map(|t| format!("{category}:{t}"))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Attach the function probes of candidate `c` to the first of its targets this kernel has.
fn try_functions(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    syms: &KernelSymbols,
    c: &Candidate,
    floor: bool,
) -> Result<String, Attempt> {
    let mut fn_errors = Vec::new();
    let Some(target) = c.targets.iter().find(|f| match syms.unprobeable(f) {
        None => true,
        Some(why) => {
            fn_errors.push(why);
            false
        }
    }) else {
        return Err(Attempt {
            tier: c.tier,
            target: c.targets.join("|"),
            error: fn_errors.join("; "),
        });
    };
    try_candidate(ebpf, btf, c, target, floor)
        .map(|_| target.to_string())
        .map_err(|error| Attempt {
            tier: c.tier,
            target: target.to_string(),
            error,
        })
}

/// The decision for a path none of whose candidates attached.
fn fallback(spec: &PathSpec, attempts: Vec<Attempt>) -> PathDecision {
    let (tier, note) = match spec.fallback {
        Fallback::Derived(n) => (Tier::Derived, n),
        Fallback::Unavailable(n) => (Tier::Unavailable, n),
    };
    PathDecision {
        path: spec.name.into(),
        tier,
        target: None,
        attempts,
        note: Some(note.into()),
    }
}

/// The socket paths' raw tier (no hooks of its own): usable when `opts` allows it.
fn try_sockets_by_fd(opts: PlanOptions) -> Result<String, Attempt> {
    match opts.sockets_by_fd_refused {
        None => Ok(SOCKETS_BY_FD_TARGET.to_string()),
        Some(why) => Err(Attempt {
            tier: Tier::RawTp,
            target: SOCKETS_BY_FD_TARGET.to_string(),
            error: why.to_string(),
        }),
    }
}

/// Attach `spec` at its best tier that works.
fn plan_path(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    tracefs_root: &Path,
    syms: &KernelSymbols,
    spec: &PathSpec,
    opts: PlanOptions,
) -> PathDecision {
    let mut attempts = Vec::new();
    for c in spec.candidates.iter().filter(|c| c.tier >= opts.best_tier) {
        let tried = match c.hooks.first() {
            None => try_sockets_by_fd(opts),
            Some((_, kind)) if kind.category().is_some() => {
                try_tracepoints(ebpf, btf, tracefs_root, c, opts)
            }
            Some(_) => try_functions(ebpf, btf, syms, c, opts.floor),
        };
        match tried {
            Ok(target) => {
                return PathDecision {
                    path: spec.name.into(),
                    tier: c.tier,
                    target: Some(target),
                    attempts,
                    note: None,
                };
            }
            Err(a) => attempts.push(a),
        }
    }
    fallback(spec, attempts)
}

/// Attach the paths of `phase`, each at its best tier.
pub fn attach_paths(
    ebpf: &mut Ebpf,
    btf: Option<&Btf>,
    tracefs_root: &Path,
    syms: &KernelSymbols,
    opts: PlanOptions,
    phase: Phase,
) -> Vec<PathDecision> {
    // The syscall path goes last of all: once it counts, everything it relies on (socket
    // marks, the other paths) is attached.
    let mut specs: Vec<&PathSpec> = PATHS
        .iter()
        .filter(|s| BASE_PATHS.contains(&s.name) == (phase == Phase::Base))
        .collect();
    specs.sort_by_key(|s| s.name == names::SYSCALLS);
    let mut out: Vec<PathDecision> = specs
        .iter()
        .map(|spec| plan_path(ebpf, btf, tracefs_root, syms, spec, opts))
        .collect();
    // Sockets found through the descriptor need the raw sys_enter program: where the system
    // calls ended up on another tier, plan those paths again without it.
    let raw_syscalls = out
        .iter()
        .any(|d| d.path == names::SYSCALLS && d.tier == Tier::RawTp);
    if phase == Phase::Base && !raw_syscalls {
        let refused = PlanOptions {
            sockets_by_fd_refused: Some("the system calls are not traced on their raw tier"),
            ..opts
        };
        for (d, spec) in out.iter_mut().zip(&specs) {
            if d.target.as_deref() == Some(SOCKETS_BY_FD_TARGET) {
                *d = plan_path(ebpf, btf, tracefs_root, syms, spec, refused);
            }
        }
    }
    out
}

/// Whether the paths of `decisions` have the socket paths find sockets through the
/// descriptor (the raw `sys_enter` program must then do it).
pub fn sockets_by_fd(decisions: &[PathDecision]) -> bool {
    decisions
        .iter()
        .any(|d| d.target.as_deref() == Some(SOCKETS_BY_FD_TARGET))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only listed targets are kept: text symbols of the kernel and of modules; data symbols
    /// and other functions are not.
    #[test]
    fn symbol_listings_keep_only_the_probe_targets() {
        let targets = probe_targets();
        assert!(targets.contains(&"tcp_sendmsg") && targets.contains(&"skb_copy_ubufs"));
        let kallsyms = "ffffffff81000000 T tcp_sendmsg\n\
                        ffffffff81000100 t skb_copy_ubufs\t[e1000]\n\
                        ffffffff81000200 D tcp_sendpage\n\
                        ffffffff81000300 T vfs_read\n";
        let got = listed(kallsyms, &targets, kallsyms_text_symbol);
        assert_eq!(
            got,
            HashSet::from(["tcp_sendmsg", "skb_copy_ubufs"]),
            "a data symbol named like a target is not a function"
        );
        let filter = "tcp_sendmsg\nskb_copy_ubufs [e1000]\nvfs_read\n";
        let got = listed(filter, &targets, filter_function);
        assert_eq!(got, HashSet::from(["tcp_sendmsg", "skb_copy_ubufs"]));
    }
}

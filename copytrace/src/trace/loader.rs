//! Loading the eBPF object, attaching its programs and feeding it the processes to trace.
//!
//! Everything the kernel side needs to know about this kernel (tracepoint field offsets) and
//! about this run (filter, own pid) is written into the `CONFIG` global before load.
use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData},
    programs::TracePoint,
};
use copytrace_common::{Config, TpOffsets, filter, syscall};
use log::debug;

use crate::{
    error::{Error, Result},
    trace::{
        snapshot::Snapshot,
        tracefs::{self, Format},
    },
};

/// The eBPF object built by build.rs.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/copytrace"));

/// Which processes to trace.
#[derive(Clone, Debug, Default)]
pub struct TraceOptions {
    /// Thread-group ids to trace; empty means every process except copytrace.
    pub pids: Vec<u32>,
    /// Also trace processes forked by traced ones.
    pub follow_children: bool,
    /// Only count tasks in this cgroup v2 id (0 = any).
    pub cgroup_id: u64,
    /// Trace copytrace's own process too (tests that are their own ground truth use this).
    pub include_self: bool,
}

/// A tracepoint program and where it attaches.
struct TracepointProgram {
    program: String,
    category: &'static str,
    name: String,
    /// Without it the trace is meaningless: fail instead of reporting a gap.
    required: bool,
}

fn tracepoint_programs() -> Vec<TracepointProgram> {
    let mut v = Vec::new();
    for name in syscall::NAMES {
        for dir in ["enter", "exit"] {
            let tp = format!("sys_{dir}_{name}");
            v.push(TracepointProgram {
                program: tp.clone(),
                category: "syscalls",
                name: tp,
                required: true,
            });
        }
    }
    for (name, required) in [
        ("sock_send_length", false),
        ("sock_recv_length", false),
        ("sched_process_fork", false),
        ("sched_process_exit", false),
    ] {
        v.push(TracepointProgram {
            program: name.to_string(),
            category: if name.starts_with("sock") {
                "sock"
            } else {
                "sched"
            },
            name: name.to_string(),
            required,
        });
    }
    v
}

/// Read every offset the programs use from this kernel's format files.
///
/// Offsets of tracepoints that do not exist are left at 0: their programs are not attached,
/// so the offsets are never used.
pub fn read_offsets(root: &Path) -> Result<TpOffsets> {
    let exit = Format::read(root, "syscalls", "sys_exit_sendmsg")?;
    let sys_exit_ret = exit.offset("ret")?;
    for name in syscall::NAMES {
        let f = Format::read(root, "syscalls", &format!("sys_exit_{name}"))?;
        same_offset(&f, "ret", sys_exit_ret)?;
    }
    let mut o = TpOffsets {
        sys_exit_ret,
        sendmsg_flags: Format::read(root, "syscalls", "sys_enter_sendmsg")?.offset("flags")?,
        sendto_flags: Format::read(root, "syscalls", "sys_enter_sendto")?.offset("flags")?,
        ..TpOffsets::ZERO
    };
    if tracefs::tracepoint_exists(root, "sock", "sock_send_length") {
        let f = Format::read(root, "sock", "sock_send_length")?;
        o.sock_len_family = f.offset("family")?;
        o.sock_len_protocol = f.offset("protocol")?;
        o.sock_len_ret = f.offset("ret")?;
        if tracefs::tracepoint_exists(root, "sock", "sock_recv_length") {
            // The programs share one reader for both events; make sure that is valid here.
            let r = Format::read(root, "sock", "sock_recv_length")?;
            same_offset(&r, "family", o.sock_len_family)?;
            same_offset(&r, "protocol", o.sock_len_protocol)?;
            same_offset(&r, "ret", o.sock_len_ret)?;
        }
    }
    if tracefs::tracepoint_exists(root, "sched", "sched_process_fork") {
        o.fork_child_pid =
            Format::read(root, "sched", "sched_process_fork")?.offset("child_pid")?;
    }
    if tracefs::tracepoint_exists(root, "sched", "sched_process_exit") {
        o.exit_pid = Format::read(root, "sched", "sched_process_exit")?.offset("pid")?;
    }
    Ok(o)
}

fn same_offset(f: &Format, field: &str, want: u32) -> Result<()> {
    let got = f.offset(field)?;
    if got != want {
        return Err(Error::InconsistentField {
            tracepoint: f.tracepoint.clone(),
            field: field.to_string(),
            got,
            want,
        });
    }
    Ok(())
}

/// Outcome of attaching one program.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Attachment {
    pub program: String,
    /// `category:name` for tracepoints, the function for probes.
    pub target: String,
    /// Program type used ("tracepoint", "kprobe", …).
    pub kind: &'static str,
    /// Why it is not attached, if it is not.
    pub error: Option<String>,
}

/// Raise RLIMIT_MEMLOCK for kernels that still charge BPF maps to it (< 5.11); harmless after.
fn raise_memlock() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        debug!(
            "setrlimit(RLIMIT_MEMLOCK): {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Fail early with a clear message instead of a wall of EPERMs.
pub fn require_root() -> Result<()> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::NotRoot);
    }
    Ok(())
}

/// Load the object with `config` (not attached to anything yet).
pub fn load_object(config: &Config) -> Result<Ebpf> {
    require_root()?;
    raise_memlock();
    Ok(EbpfLoader::new()
        .override_global("CONFIG", config, true)
        .load(EBPF_OBJECT)?)
}

/// A running trace. Dropping it detaches and unloads every program.
pub struct Tracer {
    ebpf: Ebpf,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    attachments: Vec<Attachment>,
}

impl Tracer {
    /// Load the programs and attach them. Processes in `opts.pids` are traced from the moment
    /// this returns.
    pub fn start(opts: &TraceOptions) -> Result<Tracer> {
        require_root()?;
        let root = tracefs::ensure_mounted()?;
        let config = Config {
            filter_mode: if opts.pids.is_empty() {
                filter::ALL
            } else {
                filter::PIDS
            },
            follow_children: opts.follow_children as u32,
            cgroup_id: opts.cgroup_id,
            // 0 is never the tgid of a task that makes system calls.
            self_tgid: if opts.include_self {
                0
            } else {
                std::process::id()
            },
            offsets: read_offsets(&root)?,
            ..Config::ZERO
        };
        let mut ebpf = load_object(&config)?;
        // aya-log needs the AYA_LOGS map; a failure here only costs us the log lines.
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                log::warn!("eBPF logging unavailable: {e}");
                None
            }
        };
        let mut tracer = Tracer {
            ebpf,
            logger,
            attachments: Vec::new(),
        };
        for tgid in &opts.pids {
            tracer.add_pid(*tgid)?;
        }
        for tp in tracepoint_programs() {
            let result = if tracefs::tracepoint_exists(&root, tp.category, &tp.name) {
                tracer.attach_tracepoint(&tp.program, tp.category, &tp.name)
            } else {
                Err(Error::MissingTracepoint(format!(
                    "{}:{}",
                    tp.category, tp.name
                )))
            };
            let error = match result {
                Ok(()) => None,
                Err(e) if tp.required => return Err(e),
                Err(e) => Some(crate::error::chain(&e)),
            };
            tracer.attachments.push(Attachment {
                program: tp.program,
                target: format!("{}:{}", tp.category, tp.name),
                kind: "tracepoint",
                error,
            });
        }
        Ok(tracer)
    }

    fn attach_tracepoint(&mut self, program: &str, category: &str, name: &str) -> Result<()> {
        let prog: &mut TracePoint = self
            .ebpf
            .program_mut(program)
            .ok_or_else(|| Error::Missing {
                kind: "program",
                name: program.to_string(),
            })?
            .try_into()
            .map_err(|source| Error::Program {
                program: program.to_string(),
                source,
            })?;
        let wrap = |source| Error::Program {
            program: program.to_string(),
            source,
        };
        prog.load().map_err(wrap)?;
        prog.attach(category, name).map_err(wrap)?;
        debug!("attached {program} to {category}:{name}");
        Ok(())
    }

    /// Start tracing process `tgid` (all its threads, including ones created later).
    pub fn add_pid(&mut self, tgid: u32) -> Result<()> {
        let mut pids: HashMap<&mut MapData, u32, u32> = map_mut(&mut self.ebpf, "PIDS")?;
        pids.insert(tgid, 1, 0).map_err(|source| Error::Map {
            map: "PIDS".into(),
            source,
        })
    }

    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Read the kernel-side totals so far.
    pub fn snapshot(&self) -> Result<Snapshot> {
        Snapshot::read(&self.ebpf)
    }

    /// Print pending aya-log records through the `log` crate.
    pub fn flush_logs(&mut self) {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
    }
}

pub(crate) fn map_mut<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<T>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.map_mut(name).ok_or_else(|| Error::Missing {
        kind: "map",
        name: name.to_string(),
    })?;
    T::try_from(map).map_err(|source| Error::Map {
        map: name.to_string(),
        source,
    })
}

pub(crate) fn map_ref<'a, T>(ebpf: &'a Ebpf, name: &str) -> Result<T>
where
    T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.map(name).ok_or_else(|| Error::Missing {
        kind: "map",
        name: name.to_string(),
    })?;
    T::try_from(map).map_err(|source| Error::Map {
        map: name.to_string(),
        source,
    })
}

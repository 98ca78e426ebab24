//! The library's error type. The CLI turns any of these into one line on stderr.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "copytrace must run as root (it loads eBPF programs and reads tracefs); try: sudo copytrace …"
    )]
    NotRoot,

    #[error("tracefs is not mounted and could not be mounted at {path}: {source}")]
    TracefsMount {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("tracepoint {0} does not exist on this kernel")]
    MissingTracepoint(String),

    #[error("tracepoint {tracepoint}: no field `{field}` in its format file")]
    MissingField { tracepoint: String, field: String },

    #[error(
        "tracepoint {tracepoint}: field `{field}` is at offset {got}, expected {want} like its siblings"
    )]
    InconsistentField {
        tracepoint: String,
        field: String,
        got: u32,
        want: u32,
    },

    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),

    #[error("eBPF program {program}: {source}")]
    Program {
        program: String,
        source: aya::programs::ProgramError,
    },

    #[error("eBPF map {map}: {source}")]
    Map {
        map: String,
        source: aya::maps::MapError,
    },

    #[error("the eBPF object has no {kind} named {name} (build mismatch?)")]
    Missing { kind: &'static str, name: String },

    #[error("attaching eBPF programs: {0}")]
    Attach(String),

    /// Options that cannot work together or cannot match anything.
    #[error("{0}")]
    Usage(String),

    #[error("no process with pid {0}")]
    NoSuchProcess(i32),

    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Render an error and its whole `source()` chain on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let c_s = c.to_string();
        if !s.contains(&c_s) {
            s.push_str(": ");
            s.push_str(&c_s);
        }
        cur = c.source();
    }
    s
}

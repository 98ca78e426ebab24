//! The tracer: eBPF programs on the send/receive paths, aggregated in the kernel.
pub mod loader;
pub mod process;
pub mod render;
pub mod snapshot;
pub mod tracefs;

pub use loader::{Attachment, TraceOptions, Tracer};
pub use snapshot::{Counters, Snapshot, Summary};

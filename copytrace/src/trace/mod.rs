//! The tracer: eBPF programs on the send/receive paths, aggregated in the kernel.
pub mod breakdown;
pub mod btf;
pub mod cost;
pub mod loader;
pub mod maps;
pub mod planner;
pub mod process;
pub mod render;
pub mod skipped;
pub mod snapshot;
pub mod tracefs;

pub use breakdown::{Breakdown, PathStat};
pub use cost::TracerCost;
pub use loader::{TraceOptions, Tracer};
pub use planner::{PathDecision, Tier};
pub use snapshot::{Counters, Snapshot, Summary};

//! copytrace: where did my bytes get copied on their way to the network, and what did that cost?
//!
//! The library behind the `copytrace` command: eBPF tracing of the kernel send/receive paths
//! ([`trace`]), kernel feature probing ([`features`]) and perf counters ([`counters`]).
pub mod bench;
pub mod counters;
pub mod error;
pub mod export;
pub mod exporter;
pub mod features;
pub mod files;
pub mod report;
pub mod table;
pub mod trace;

pub use error::{Error, Result};

pub mod bench;
pub mod exporter;
pub mod probe;
pub mod report;
pub mod serve;
pub mod trace;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

/// Make sure an output file can be written before spending minutes producing it.
pub fn check_writable(path: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let probe = path.with_extension("copytrace-probe");
    std::fs::write(&probe, b"").with_context(|| format!("cannot write {}", path.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// An error and its causes on one line (no backtrace, no debug formatting).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

/// A flag set by SIGINT/SIGTERM, so long-running commands stop cleanly and still print (and
/// detach their programs) instead of dying mid-way.
pub fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    ctrlc::set_handler(move || f.store(true, Ordering::SeqCst))?;
    Ok(flag)
}

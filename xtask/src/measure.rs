//! Pieces the measurement commands (bench-peers, trace-overhead) share.
use std::{
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::Context as _;

/// A background process for one measurement (a reference server, a tracer); killed on drop.
pub struct Background(pub Child);

impl Background {
    /// Start `program` with its output discarded, and give it `settle` to get ready.
    pub fn start(c: &mut Command, settle: Duration) -> anyhow::Result<Background> {
        let program = c.get_program().to_string_lossy().into_owned();
        let child = c
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        thread::sleep(settle);
        Ok(Background(child))
    }

    /// Ask it to stop (SIGINT, as Ctrl-C would) and wait for it.
    pub fn interrupt(mut self) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let _ = self.0.wait();
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The median (the mean of the middle two for an even count); NaN for no values.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Values as a comma-separated list, 3 decimals.
pub fn list(v: &[f64]) -> String {
    v.iter()
        .map(|r| format!("{r:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}

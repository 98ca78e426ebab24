//! Pieces the measurement commands (bench-peers, trace-overhead) share.
use std::{
    io::{BufRead as _, BufReader, Read},
    process::{Child, Command, Stdio},
    sync::mpsc,
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

    /// Start `program` and wait, at most `timeout`, for a line of its output (standard error
    /// when `on_stderr`, else standard output) that contains `marker`: the line it prints once
    /// it is ready. Returns that line; the rest of the output is read and discarded, so the
    /// program never blocks on a full pipe.
    pub fn start_ready(
        c: &mut Command,
        on_stderr: bool,
        marker: &str,
        timeout: Duration,
    ) -> anyhow::Result<(Background, String)> {
        let program = c.get_program().to_string_lossy().into_owned();
        if on_stderr {
            c.stdout(Stdio::null()).stderr(Stdio::piped());
        } else {
            c.stdout(Stdio::piped()).stderr(Stdio::null());
        }
        let mut child = c.spawn().with_context(|| format!("starting {program}"))?;
        let pipe: Option<Box<dyn Read + Send>> = if on_stderr {
            child.stderr.take().map(|e| Box::new(e) as _)
        } else {
            child.stdout.take().map(|o| Box::new(o) as _)
        };
        // Killed on drop from here on, also when the pipe is missing.
        let bg = Background(child);
        let pipe = pipe.context("the piped stream")?;
        let (tx, rx) = mpsc::channel();
        let marker_owned = marker.to_string();
        thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if line.contains(&marker_owned)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line);
                }
            }
        });
        match rx.recv_timeout(timeout) {
            Ok(line) => Ok((bg, line)),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("{program} ended before it printed \"{marker}\"")
            }
            Err(mpsc::RecvTimeoutError::Timeout) => anyhow::bail!(
                "{program} did not print \"{marker}\" within {} s",
                timeout.as_secs()
            ),
        }
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

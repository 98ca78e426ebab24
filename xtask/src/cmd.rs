//! Running commands with a clear echo of what is run.
use std::{
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
};

use anyhow::{Context as _, bail};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

pub fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn describe(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run `c`, echoing it, and return its status.
pub fn status(c: &mut Command) -> anyhow::Result<ExitStatus> {
    eprintln!("xtask: $ {}", describe(c));
    c.status()
        .with_context(|| format!("running {}", describe(c)))
}

/// Run `c` and fail unless it succeeds.
pub fn run(c: &mut Command) -> anyhow::Result<()> {
    let s = status(c)?;
    if !s.success() {
        bail!("`{}` failed ({s})", describe(c));
    }
    Ok(())
}

/// Run `c` quietly and return its stdout, failing unless it succeeds.
pub fn output(c: &mut Command) -> anyhow::Result<String> {
    let o = c
        .output()
        .with_context(|| format!("running {}", describe(c)))?;
    if !o.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe(c),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

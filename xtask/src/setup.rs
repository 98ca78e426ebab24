//! Provisioning for the eBPF build, idempotent and project-local.
//!
//! * `rust-src` for the stable toolchain (the eBPF crate is built with `-Z build-std=core`).
//! * bpf-linker 0.13.0 linked against *rustc's own* libLLVM: Debian has no LLVM that matches
//!   rustc's, and a linker for another LLVM major rejects rustc's bitcode. bpf-linker's build
//!   looks for `$LLVM_PREFIX/lib/libLLVM.so`, so we give it a prefix whose lib/ holds symlinks to
//!   the libLLVM in rustc's sysroot. It goes to `target/tools`, nothing outside the project.
use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::cmd;

pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// What later steps need: the PATH with the project tools first.
pub struct BuildEnv {
    pub path: OsString,
}

impl BuildEnv {
    /// A `Command` with the tools on PATH.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("PATH", &self.path);
        c
    }
}

pub fn tools_dir() -> PathBuf {
    cmd::target_dir().join("tools")
}

pub fn run() -> anyhow::Result<BuildEnv> {
    ensure_rust_src()?;
    ensure_bpf_linker()?;
    let mut paths = vec![tools_dir().join("bin")];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    Ok(BuildEnv {
        path: std::env::join_paths(paths)?,
    })
}

fn stable_sysroot() -> anyhow::Result<PathBuf> {
    let s =
        cmd::output(Command::new("rustup").args(["run", "stable", "rustc", "--print", "sysroot"]))
            .context("rustup is required (the eBPF build runs `rustup run stable cargo`)")?;
    Ok(PathBuf::from(s.trim()))
}

fn ensure_rust_src() -> anyhow::Result<()> {
    let sysroot = stable_sysroot()?;
    if sysroot.join("lib/rustlib/src/rust/library/core").is_dir() {
        eprintln!("xtask: setup: rust-src (stable) already installed");
        return Ok(());
    }
    eprintln!("xtask: setup: installing rust-src for the stable toolchain");
    cmd::run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "stable"]))
}

/// rustc's libLLVM, e.g. `libLLVM.so.22.1-rust-1.95.0-stable`, and its LLVM major version.
fn rustc_libllvm(sysroot: &Path) -> anyhow::Result<(PathBuf, u32)> {
    let lib = sysroot.join("lib");
    let found = fs::read_dir(&lib)
        .with_context(|| format!("reading {}", lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.") && n.contains("-rust-"))
        })
        .with_context(|| format!("no libLLVM.so.*-rust-* in {}", lib.display()))?;
    let name = found.file_name().unwrap().to_string_lossy().into_owned();
    let major = name
        .trim_start_matches("libLLVM.so.")
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("cannot read the LLVM version from {name}"))?;
    Ok((found, major))
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    let sysroot = stable_sysroot()?;
    let (libllvm, major) = rustc_libllvm(&sysroot)?;
    let libname = libllvm.file_name().unwrap().to_string_lossy().into_owned();
    let tools = tools_dir();
    let bin = tools.join("bin/bpf-linker");
    let stamp = tools.join("bpf-linker.stamp");
    let want = format!("bpf-linker {BPF_LINKER_VERSION} against {libname}\n");
    let works = || {
        Command::new(&bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if fs::read_to_string(&stamp).is_ok_and(|s| s == want) && works() {
        eprintln!(
            "xtask: setup: bpf-linker {BPF_LINKER_VERSION} (LLVM {major}, rustc's libLLVM) already installed"
        );
        return Ok(());
    }
    if !matches!(major, 20..=22) {
        bail!("rustc uses LLVM {major}; bpf-linker {BPF_LINKER_VERSION} supports LLVM 20-22");
    }

    eprintln!(
        "xtask: setup: building bpf-linker {BPF_LINKER_VERSION} against rustc's {libname} \
         into {} (about a minute)",
        tools.display()
    );
    let prefix = tools.join(format!("llvm-{major}"));
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)?;
    for link in [prefix_lib.join("libLLVM.so"), prefix_lib.join(&libname)] {
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("symlinking {}", link.display()))?;
    }
    cmd::run(
        Command::new("cargo")
            .args([
                "install",
                "--locked",
                "--force",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--no-default-features",
                "--features",
                &format!("llvm-{major}"),
                "--root",
            ])
            .arg(&tools)
            .env("LLVM_PREFIX", &prefix)
            // Do not inherit the outer cargo's target dir: bpf-linker builds in its own.
            .env_remove("CARGO_TARGET_DIR"),
    )?;
    if !works() {
        bail!("{} was installed but does not run", bin.display());
    }
    fs::write(&stamp, want)?;
    eprintln!("xtask: setup: bpf-linker installed at {}", bin.display());
    Ok(())
}

//! Builds `copytrace-ebpf` for bpfel-unknown-none with aya-build and lets `main` embed it.
//!
//! Stable rustc ships no `core` for the BPF target, so the inner cargo needs `-Z build-std=core`,
//! which aya-build only passes when `RUSTC_BOOTSTRAP=1`. We set it for this build script's
//! children only; the user-space crates keep plain stable semantics.
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, anyhow, bail};
use aya_build::Toolchain;

/// Where `cargo xtask setup` installs bpf-linker (kept in sync with xtask/src/setup.rs).
fn project_tools_bin(workspace_root: &Path) -> PathBuf {
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root.join("target"));
    target.join("tools").join("bin")
}

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let workspace_root = manifest_dir
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent", manifest_dir.display()))?;

    // Put the project-local bpf-linker first on PATH, so plain `cargo build` works after
    // `cargo xtask setup` without touching the user's environment.
    let tools = project_tools_bin(workspace_root);
    if tools.join("bpf-linker").exists() {
        println!(
            "cargo:rerun-if-changed={}",
            tools.join("bpf-linker").display()
        );
        let mut paths = vec![tools.clone()];
        paths.extend(env::split_paths(&env::var_os("PATH").unwrap_or_default()));
        // SAFETY: build scripts are single-threaded.
        unsafe { env::set_var("PATH", env::join_paths(paths)?) };
    } else if which_bpf_linker().is_none() {
        bail!(
            "bpf-linker not found (looked in {} and PATH): run `cargo xtask setup` once",
            tools.display()
        );
    }

    let sysroot = Command::new("rustup")
        .args(["run", "stable", "rustc", "--print", "sysroot"])
        .output()
        .context("running `rustup run stable rustc --print sysroot`")?;
    let sysroot = PathBuf::from(String::from_utf8(sysroot.stdout)?.trim());
    if !sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        bail!("rust-src is not installed for the stable toolchain: run `cargo xtask setup` once");
    }

    println!("cargo:rerun-if-env-changed=RUSTC_BOOTSTRAP");
    if env::var_os("RUSTC_BOOTSTRAP").is_none() {
        // SAFETY: build scripts are single-threaded.
        unsafe { env::set_var("RUSTC_BOOTSTRAP", "1") };
    }

    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "copytrace-ebpf")
        .ok_or_else(|| anyhow!("copytrace-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::Custom("stable"),
    )
}

fn which_bpf_linker() -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|p| p.join("bpf-linker"))
        .find(|p| p.is_file())
}

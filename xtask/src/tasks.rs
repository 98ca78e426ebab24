//! build / run / test.
use std::process::{ExitCode, ExitStatus};

use crate::{cmd, packages, setup::BuildEnv};

pub fn build(env: &BuildEnv) -> anyhow::Result<()> {
    cmd::run(
        env.command("cargo")
            .args(["build", "--release", "--package", "copytrace"])
            .current_dir(cmd::workspace_root()),
    )
}

/// A command that runs as root: directly when we are root, else through sudo (keeping PATH so
/// the same tools are found).
pub fn as_root(env: &BuildEnv, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    if cmd::is_root() {
        env.command(program)
    } else {
        let mut c = env.command("sudo");
        c.arg("--preserve-env=PATH,COPYTRACE_LOG").arg(program);
        c
    }
}

/// Run `copytrace bench <args> --json target/<name>.json` (release build, as root) and return
/// the parsed result document.
pub fn bench_json(env: &BuildEnv, name: &str, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context as _;
    let json = cmd::target_dir().join(format!("{name}.json"));
    let bin = cmd::target_dir().join("release/copytrace");
    cmd::run(
        as_root(env, &bin)
            .arg("bench")
            .args(args)
            .arg("--json")
            .arg(&json),
    )?;
    let bytes = std::fs::read(&json).with_context(|| format!("reading {}", json.display()))?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// `bench` arguments for one cell (`sizes` may list several), one connection, one repeat of
/// `duration` after a 500 ms warm-up: what the xtask measurements run.
pub fn one_cell<'a>(
    mode: &'a str,
    pattern: &'a str,
    sizes: &'a str,
    duration: &'a str,
) -> Vec<&'a str> {
    vec![
        "--modes",
        mode,
        "--patterns",
        pattern,
        "--sizes",
        sizes,
        "--threads",
        "1",
        "--repeat",
        "1",
        "--warmup",
        "500ms",
        "--duration",
        duration,
    ]
}

pub fn exit_code(status: ExitStatus) -> ExitCode {
    ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8)
}

/// What `cargo xtask run` does without arguments: a quick traced sweep, then its report.
pub fn run(env: &BuildEnv, args: &[String]) -> anyhow::Result<ExitCode> {
    packages::ensure("run", packages::RUN)?;
    build(env)?;
    let bin = cmd::target_dir().join("release/copytrace");
    if !args.is_empty() {
        return Ok(exit_code(cmd::status(as_root(env, &bin).args(args))?));
    }
    let dir = cmd::target_dir().join("copytrace-demo");
    std::fs::create_dir_all(&dir)?;
    let json = dir.join("results.json");
    let bench = cmd::status(
        as_root(env, &bin)
            .args(["bench", "--quick", "--trace", "--json"])
            .arg(&json),
    )?;
    if !bench.success() {
        return Ok(exit_code(bench));
    }
    let report = cmd::status(
        env.command(&bin)
            .arg("report")
            .arg(&json)
            .arg("--out")
            .arg(dir.join("report")),
    )?;
    if report.success() {
        println!(
            "\nreport: {}",
            dir.join("report").join("index.html").display()
        );
    }
    Ok(exit_code(report))
}

pub fn test(env: &BuildEnv, args: &[String]) -> anyhow::Result<ExitCode> {
    packages::ensure("test", packages::TEST)?;
    let root = cmd::workspace_root();
    cmd::run(
        env.command("cargo")
            .args(["fmt", "--all", "--check"])
            .current_dir(&root),
    )?;
    cmd::run(
        env.command("cargo")
            .args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])
            .current_dir(&root),
    )?;
    // Build as the invoking user first, so a sudo run below only executes.
    cmd::run(
        env.command("cargo")
            .args(["test", "--workspace", "--no-run"])
            .current_dir(&root),
    )?;
    // Root-only tests are #[ignore]d for plain `cargo test`; here they run for real. Tests named
    // guest_* need a kernel with kprobes/fentry: `cargo xtask vm-test` runs them in one.
    let status = cmd::status(
        as_root(env, "cargo")
            .args([
                "test",
                "--workspace",
                "--",
                "--include-ignored",
                "--skip",
                "guest_",
            ])
            .args(args)
            .current_dir(&root),
    )?;
    Ok(exit_code(status))
}

//! Debian packages the xtask commands need, installed when missing.
//!
//! Every command declares what it needs and calls [`ensure`] before doing anything else, so a
//! fresh Debian machine (or CI's clean clone) needs nothing but the README's commands. A second
//! run finds everything and says so.
use std::process::Command;

use anyhow::bail;

use crate::cmd;

/// A package and why it is needed (printed when it is installed).
pub type Need = (&'static str, &'static str);

/// What `cargo xtask test` needs for its tests.
pub const TEST: &[Need] = &[
    ("python3", "traced test senders"),
    ("iproute2", "the netns topology"),
    ("fonts-dejavu-core", "text in PNG figures"),
    ("chromium", "the report page screenshot test"),
    (
        "ethtool",
        "turning an interface's offloads off in the nics topology test",
    ),
    (
        "prometheus",
        "the real Prometheus server and promtool the exporter tests scrape with",
    ),
];

/// What `cargo xtask run` needs: the report's PNG figures have text.
pub const RUN: &[Need] = &[("fonts-dejavu-core", "text in PNG figures")];

/// What `cargo xtask vm-test` needs to build and boot the guest.
pub const VM: &[Need] = &[
    ("qemu-system-x86", "the guest"),
    ("busybox-static", "the guest's initramfs"),
    ("cpio", "packing the initramfs"),
    ("zstd", "decompressing Debian's 6.12 kernel image"),
    ("kmod", "resolving module dependencies"),
    ("xz-utils", "unpacking kernel modules"),
    (
        "python3",
        "traced test senders in the guest (it shares this machine's /usr)",
    ),
];

/// The peers `cargo xtask bench-peers` measures copytrace against.
pub const PEERS: &[Need] = &[
    ("iperf3", "the throughput reference"),
    ("sockperf", "the latency reference"),
];

/// What `cargo xtask trace-overhead` runs and reads.
pub const OVERHEAD: &[Need] = &[
    ("iperf3", "the traced workload"),
    ("bpftrace", "the peer tracer"),
    ("bpftool", "the programs' run time (bpf_stats)"),
];

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Refresh the package lists (`apt-get update`): a fresh machine's may be stale or empty.
pub fn update_index() -> anyhow::Result<()> {
    eprintln!("xtask: updating the package lists (apt-get update)");
    cmd::run(Command::new("apt-get").args(["update", "-q"]))
}

/// Install whichever of `needs` are missing (as root; one clear error otherwise).
pub fn ensure(who: &str, needs: &[Need]) -> anyhow::Result<()> {
    let names = |v: &[&Need]| v.iter().map(|n| n.0).collect::<Vec<_>>().join(" ");
    let missing: Vec<&Need> = needs.iter().filter(|n| !installed(n.0)).collect();
    if missing.is_empty() {
        eprintln!(
            "xtask: {who}: Debian packages already installed: {}",
            names(&needs.iter().collect::<Vec<_>>())
        );
        return Ok(());
    }
    if !cmd::is_root() {
        bail!(
            "missing Debian packages ({}): run as root, or `sudo apt-get install -y {}` first",
            missing
                .iter()
                .map(|(p, why)| format!("{p}: {why}"))
                .collect::<Vec<_>>()
                .join("; "),
            names(&missing)
        );
    }
    eprintln!(
        "xtask: {who}: installing Debian packages: {}",
        names(&missing)
    );
    let install = |update: bool| -> anyhow::Result<()> {
        if update {
            update_index()?;
        }
        cmd::run(
            Command::new("apt-get")
                .args(["install", "-y", "-q"])
                .args(missing.iter().map(|n| n.0))
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    // A fresh machine's package lists may be stale or empty: update once if the first try fails.
    install(false).or_else(|_| install(true))?;
    let still: Vec<&Need> = missing.into_iter().filter(|n| !installed(n.0)).collect();
    if !still.is_empty() {
        bail!("apt-get did not install {}", names(&still));
    }
    Ok(())
}

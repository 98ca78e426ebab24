//! `cargo xtask vm-test`: the kprobe/fentry tier, proven on a stock distribution kernel.
//!
//! This machine's kernel has no kprobes and refuses fentry, so half of the tracer cannot be
//! exercised here directly. A stock Debian kernel (kprobes, fentry, BTF) boots under QEMU TCG in
//! seconds from its uncompressed vmlinux, with a tiny initramfs (busybox + virtio/9p modules)
//! and two 9p shares: the workspace (mounted at the same absolute path, so the test binaries
//! built here run unchanged, `CARGO_BIN_EXE_*` paths included) and the host's /usr (libc,
//! python3). The guest runs the root integration tests and `copytrace probe`, writes results to
//! the share and powers off; this command exits with the guest tests' status.
//!
//! Everything downloaded or built is cached under `target/vm/`.
use std::{
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{cmd, packages, setup::BuildEnv};

/// Sends exactly 1,000,000 bytes over loopback (no single quotes: it goes into sh '…').
const GUEST_SENDER: &str = "import socket, threading
srv = socket.socket(); srv.bind((\"127.0.0.1\", 0)); srv.listen(1)
def rx():
    c, _ = srv.accept()
    while c.recv(1 << 16): pass
t = threading.Thread(target=rx); t.start()
s = socket.create_connection(srv.getsockname())
s.sendall(b\"x\" * 1000000)
s.close(); t.join()
";

/// Modules the guest needs for the 9p shares and its two NICs (dependencies are resolved with
/// modprobe).
const MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p", "e1000"];

/// Test binaries (integration test targets of the copytrace package) run in the guest, with a
/// name filter each. `guest_tier` holds the tests that only make sense with probes available.
const GUEST_TESTS: &[(&str, &str)] = &[
    ("guest_tier", "--nocapture"),
    ("trace_exact", ""),
    ("cli", "probe_reports_each_feature_with_a_reason"),
];

pub struct VmArgs {
    pub kernel: String,
    pub timeout: Duration,
}

fn vm_dir() -> PathBuf {
    cmd::target_dir().join("vm")
}

/// The Debian kernel package for `spec` (`debian-6.1`: what linux-image-amd64 depends on).
fn kernel_package(spec: &str) -> anyhow::Result<String> {
    let want = match spec {
        "debian-6.1" => "linux-image-6.1.",
        "debian-6.12" => return newest_612(),
        other => bail!("unknown kernel `{other}` (known: debian-6.1, debian-6.12)"),
    };
    let out = cmd::output(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    let pkg = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .context("linux-image-amd64 depends on no linux-image-* package")?
        .to_string();
    if !pkg.starts_with(want) {
        bail!("linux-image-amd64 points at {pkg}, not a {spec} kernel");
    }
    Ok(pkg)
}

struct Kernel {
    version: String,
    /// dpkg-deb -x of the package (lib/modules/<version>/…).
    tree: PathBuf,
    vmlinux: PathBuf,
}

/// The newest `linux-image-6.12.N+deb12-amd64` the package index offers (bookworm's
/// backported 6.12: kprobes, fentry, BTF and the `sock:*` tracepoints of 6.3+).
fn newest_612() -> anyhow::Result<String> {
    let out = cmd::output(Command::new("apt-cache").args(["pkgnames", "linux-image-6.12."]))?;
    let patch = |p: &str| -> Option<u32> {
        p.strip_prefix("linux-image-6.12.")?
            .strip_suffix("+deb12-amd64")?
            .parse()
            .ok()
    };
    out.lines()
        .filter_map(|p| Some((patch(p.trim())?, p.trim().to_string())))
        .max()
        .map(|(_, p)| p)
        .context("the package index offers no linux-image-6.12.*+deb12-amd64 (apt-get update?)")
}

fn prepare_kernel(spec: &str) -> anyhow::Result<Kernel> {
    // Stale package lists (a fresh machine's) may not offer the kernel yet: update once.
    let pkg = match kernel_package(spec) {
        Ok(p) => p,
        Err(_) => {
            packages::update_index()?;
            kernel_package(spec)?
        }
    };
    let version = pkg.trim_start_matches("linux-image-").to_string();
    let dir = vm_dir().join(&pkg);
    fs::create_dir_all(&dir)?;
    let deb = fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"));
    let deb = match deb {
        Some(d) => {
            eprintln!("xtask: vm-test: cached {}", d.display());
            d
        }
        None => {
            eprintln!("xtask: vm-test: downloading {pkg}");
            let get = || {
                cmd::run(
                    Command::new("apt-get")
                        .args(["download", &pkg])
                        .current_dir(&dir),
                )
            };
            if get().is_err() {
                cmd::run(Command::new("apt-get").args(["update", "-q"]))?;
                get()?;
            }
            fs::read_dir(&dir)?
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "deb"))
                .context("apt-get download left no .deb")?
        }
    };
    let tree = dir.join("kernel");
    let modules = tree.join("lib/modules").join(&version);
    if !modules.join("modules.dep").exists() {
        eprintln!("xtask: vm-test: extracting {}", deb.display());
        let _ = fs::remove_dir_all(&tree);
        cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
        // The .deb ships no modules.dep.
        cmd::run(Command::new("depmod").arg("-b").arg(&tree).arg(&version))?;
    }
    let vmlinux = dir.join("vmlinux");
    if !vmlinux.exists() {
        let vmlinuz = tree.join("boot").join(format!("vmlinuz-{version}"));
        extract_vmlinux(&vmlinuz, &vmlinux)?;
    }
    Ok(Kernel {
        version,
        tree,
        vmlinux,
    })
}

/// The uncompressed ELF vmlinux (PVH entry, BTF) from a bzImage: QEMU boots it directly,
/// skipping a decompressor that is slow under emulation.
fn extract_vmlinux(vmlinuz: &Path, out: &Path) -> anyhow::Result<()> {
    eprintln!("xtask: vm-test: decompressing {}", vmlinuz.display());
    let data = fs::read(vmlinuz).with_context(|| format!("reading {}", vmlinuz.display()))?;
    // Debian's 6.1 compresses the kernel with xz, its 6.12 with zstd.
    let find = |magic: &[u8]| data.windows(magic.len()).position(|w| w == magic);
    let (at, tool, args): (usize, &str, &[&str]) =
        match (find(b"\xfd7zXZ\x00"), find(b"\x28\xb5\x2f\xfd")) {
            (Some(at), _) => (at, "xz", &["-dc", "--single-stream"]),
            (None, Some(at)) => (at, "zstd", &["-dc"]),
            (None, None) => bail!("no xz or zstd stream in the kernel image"),
        };
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {tool}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let payload = data[at..].to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&payload));
    let output = child.wait_with_output()?;
    let _ = writer.join();
    // zstd complains about the bytes that follow the compressed kernel in the image; what
    // counts is a whole ELF file on its output.
    let elf = &output.stdout;
    // A whole ELF64: its section header table (e_shoff, e_shentsize × e_shnum) is inside.
    let le = |at: usize, n: usize| {
        elf.get(at..at + n)
            .map(|b| b.iter().rev().fold(0u64, |v, &x| v << 8 | x as u64))
    };
    let whole = match (le(0x28, 8), le(0x3a, 2), le(0x3c, 2)) {
        (Some(off), Some(size), Some(n)) => off + size * n <= elf.len() as u64,
        _ => false,
    };
    if !elf.starts_with(b"\x7fELF") || !whole || (tool == "xz" && !output.status.success()) {
        bail!(
            "{tool} did not yield a whole ELF vmlinux ({})",
            output.status
        );
    }
    let tmp = out.with_extension("partial");
    fs::write(&tmp, &output.stdout)?;
    fs::rename(&tmp, out)?;
    Ok(())
}

/// /init of the guest: mounts, 9p shares, run the command line's script, power off.
const INIT: &str = r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
ulimit -l unlimited
ip link set lo up
hostname copytrace-guest
WS=; CMD=
for a in $(cat /proc/cmdline); do
  case "$a" in
    ct.ws=*) WS=${a#ct.ws=};;
    ct.cmd=*) CMD=${a#ct.cmd=};;
  esac
done
modprobe virtio_pci && modprobe 9pnet_virtio && modprobe 9p && modprobe e1000 || echo "COPYTRACE-VM: module load failed"
mkdir -p "$WS"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=none ws "$WS" || echo "COPYTRACE-VM: workspace mount failed"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=loose,ro hostusr /usr || echo "COPYTRACE-VM: /usr mount failed"
echo "COPYTRACE-VM: kernel $(uname -r), up $(cut -d' ' -f1 /proc/uptime) s"
if [ -f "$CMD" ]; then sh "$CMD"; RC=$?; else echo "COPYTRACE-VM: no script $CMD"; RC=127; fi
echo "COPYTRACE-VM: done rc=$RC at $(cut -d' ' -f1 /proc/uptime) s"
sync
poweroff -f
"#;

fn build_initramfs(k: &Kernel) -> anyhow::Result<PathBuf> {
    let dir = vm_dir().join(format!("initramfs-{}", k.version));
    let image = vm_dir().join(format!("initramfs-{}.cpio.gz", k.version));
    let stamp = vm_dir().join(format!("initramfs-{}.stamp", k.version));
    let want = format!("{} (uncompressed)\n{}", MODULES.join(" "), INIT);
    if image.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        eprintln!("xtask: vm-test: cached {}", image.display());
        return Ok(image);
    }
    eprintln!("xtask: vm-test: building {}", image.display());
    let _ = fs::remove_dir_all(&dir);
    for d in [
        "bin", "dev", "proc", "sys", "tmp", "run", "etc", "root", "usr", "mnt",
    ] {
        fs::create_dir_all(dir.join(d))?;
    }
    let modroot = dir.join("lib/modules").join(&k.version);
    fs::create_dir_all(&modroot)?;
    std::os::unix::fs::symlink("bin", dir.join("sbin"))?;
    std::os::unix::fs::symlink("usr/lib64", dir.join("lib64"))?;
    // Resolves once the host's /usr is mounted: host binaries then run unchanged.
    std::os::unix::fs::symlink(
        "/usr/lib/x86_64-linux-gnu",
        dir.join("lib/x86_64-linux-gnu"),
    )?;
    let busybox = which_busybox()?;
    fs::copy(&busybox, dir.join("bin/busybox"))?;
    let applets = cmd::output(Command::new(dir.join("bin/busybox")).arg("--list"))?;
    for a in applets.lines().filter(|a| *a != "busybox") {
        let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(a));
    }
    let kmods = k.tree.join("lib/modules").join(&k.version);
    for m in MODULES {
        let deps = cmd::output(Command::new("modprobe").arg("-d").arg(&k.tree).args([
            "-S",
            &k.version,
            "--show-depends",
            m,
        ]))?;
        for ko in deps
            .lines()
            .filter_map(|l| l.strip_prefix("insmod "))
            .map(|l| l.trim())
        {
            let rel = Path::new(ko)
                .strip_prefix(&kmods)
                .with_context(|| format!("module {ko} outside the kernel tree"))?;
            let to = modroot.join(rel);
            fs::create_dir_all(to.parent().expect("file"))?;
            // Uncompressed: Debian's 6.12 cannot load xz-compressed modules from busybox's
            // insmod ("Invalid ELF header magic"); 6.1 could.
            match ko.strip_suffix(".xz") {
                Some(_) => {
                    let plain = fs::File::create(to.with_extension(""))?;
                    cmd::run(Command::new("xz").args(["-dc", ko]).stdout(plain))?;
                }
                None => {
                    fs::copy(ko, &to)?;
                }
            }
        }
    }
    for f in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        fs::copy(kmods.join(f), modroot.join(f))?;
    }
    cmd::run(Command::new("depmod").arg("-b").arg(&dir).arg(&k.version))?;
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    fs::write(
        dir.join("etc/hosts"),
        "127.0.0.1 localhost\n::1 localhost\n",
    )?;
    let init = dir.join("init");
    fs::write(&init, INIT)?;
    fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let tmp = image.with_extension("partial");
    cmd::run(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "find . -print0 | cpio --null -o -H newc --quiet | gzip -1 > '{}'",
                tmp.display()
            ))
            .current_dir(&dir),
    )?;
    fs::rename(&tmp, &image)?;
    fs::write(&stamp, want)?;
    Ok(image)
}

fn which_busybox() -> anyhow::Result<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("busybox not found (package busybox-static)")
}

/// Build the test binaries on the host and return (target name, executable) pairs.
///
/// The same build as `cargo xtask test`'s (`--workspace`): selecting one package would resolve
/// features differently and rebuild everything, the eBPF objects included (45 s in CI).
fn build_tests(env: &BuildEnv) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let out = cmd::output(
        env.command("cargo")
            .args(["test", "--workspace", "--no-run", "--message-format=json"])
            .current_dir(cmd::workspace_root())
            .stderr(Stdio::inherit()),
    )?;
    let mut bins = Vec::new();
    for line in out.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-artifact" || !v["profile"]["test"].as_bool().unwrap_or(false) {
            continue;
        }
        if let (Some(name), Some(exe)) = (v["target"]["name"].as_str(), v["executable"].as_str()) {
            bins.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    Ok(bins)
}

fn guest_script(
    out: &Path,
    bins: &[(String, PathBuf)],
    copytrace: &Path,
) -> anyhow::Result<String> {
    let ws = cmd::workspace_root();
    let mut s =
        String::from("#!/bin/sh\n# Written by cargo xtask vm-test; runs inside the guest.\n");
    s.push_str(&format!(
        "cd '{}'\nOUT='{}'\nexport RUST_BACKTRACE=1 COPYTRACE_GUEST=1 HOME=/tmp\n\
         # iproute2's ip (the host's, over the /usr share) before busybox's: netns support.\n\
         export PATH=/usr/bin:$PATH\nmkdir -p /run/netns\nRC=0\n",
        ws.display(),
        out.display()
    ));
    // The tests' scratch directory (CARGO_TARGET_TMPDIR, compiled in) is the guest's own: two
    // guests booted at once would otherwise write the same files. The bind mount is private
    // to this guest; the host finds the files under the guest's results.
    let scratch = cmd::target_dir().join("tmp");
    s.push_str(&format!(
        "mkdir -p \"$OUT/tmp\" '{0}'\nmount --bind \"$OUT/tmp\" '{0}' || RC=1\n",
        scratch.display()
    ));
    s.push_str(&format!(
        "'{}' probe --json > \"$OUT/probe-guest.json\" 2> \"$OUT/probe-guest.err\" || RC=1\n",
        copytrace.display()
    ));
    s.push_str(&format!(
        "'{}' probe > \"$OUT/probe-guest.txt\" 2>&1 || RC=1\n",
        copytrace.display()
    ));
    for (name, filter) in GUEST_TESTS {
        let (_, exe) = bins
            .iter()
            .find(|(n, _)| n == name)
            .with_context(|| format!("test target {name} was not built"))?;
        s.push_str(&format!(
            "echo \"COPYTRACE-VM: test {name}\"; T0=$(cut -d. -f1 /proc/uptime)\n'{}' --include-ignored --test-threads=1 {filter} > \"$OUT/{name}.log\" 2>&1\nR=$?; echo \"$R\" > \"$OUT/{name}.rc\"; [ $R -eq 0 ] || RC=1\ntail -n 3 \"$OUT/{name}.log\"\necho \"COPYTRACE-VM: test {name} took $(( $(cut -d. -f1 /proc/uptime) - T0 )) s\"\n",
            exe.display()
        ));
    }
    // copytrace itself on a traced command, for the artifacts and the check below.
    s.push_str(&format!(
        "'{}' trace --json \"$OUT/trace-guest.json\" -- /usr/bin/python3 -c '{}' > \"$OUT/trace-guest.txt\" 2>&1 || RC=1\n",
        copytrace.display(),
        GUEST_SENDER
    ));
    s.push_str("echo $RC > \"$OUT/rc\"\nexit $RC\n");
    Ok(s)
}

/// How a boot ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Boot {
    /// The guest powered off by itself.
    Finished,
    /// No progress before the timeout.
    Hung,
    /// The guest kernel reported a soft lockup or an RCU stall (seen under multi-threaded TCG
    /// while programs were being attached: a vCPU stopped taking interrupts while another
    /// waited for it). The guest will not recover; the boot is retried once.
    Wedged,
}

/// Kernel messages that mean the guest is wedged.
const WEDGED: [&str; 2] = ["soft lockup - CPU#", "self-detected stall on CPU"];

fn boot(
    label: &str,
    k: &Kernel,
    initramfs: &Path,
    script: &Path,
    log: &Path,
    timeout: Duration,
) -> anyhow::Result<Boot> {
    let ws = cmd::workspace_root();
    let mut qemu = Command::new("qemu-system-x86_64");
    // One host thread runs both vCPUs. Multi-threaded TCG wedged the guest (soft lockup, RCU
    // stall) in 2 of 8 runs while programs were being attached; on a 2-core host it was no
    // faster for these tests (83 s vs 85 s in the guest).
    qemu.args([
        "-accel",
        "tcg,thread=single",
        "-cpu",
        "max",
        "-m",
        "2G",
        "-smp",
        "2",
        "-nographic",
        "-no-reboot",
        "-nic",
        "none",
    ])
    // Two e1000 NICs joined by a QEMU hub that leads nowhere else: the guest's "wire" (no host
    // interface, no other address). e1000's device model does scatter-gather, checksum and TSO
    // itself, so the guest's TCP transmits MSG_ZEROCOPY data straight from the pinned pages
    // (completions without SO_EE_CODE_ZEROCOPY_COPIED).
    .args([
        "-netdev",
        "hubport,id=wire0,hubid=0",
        "-device",
        "e1000,netdev=wire0",
    ])
    .args([
        "-netdev",
        "hubport,id=wire1,hubid=0",
        "-device",
        "e1000,netdev=wire1",
    ])
    .arg("-kernel")
    .arg(&k.vmlinux)
    .arg("-initrd")
    .arg(initramfs)
    .arg("-virtfs")
    .arg(format!(
        "local,path={},mount_tag=ws,security_model=none,id=ws",
        ws.display()
    ))
    .arg("-virtfs")
    .arg("local,path=/usr,mount_tag=hostusr,security_model=none,readonly=on,id=hostusr")
    .arg("-append")
    .arg(format!(
        "console=ttyS0 quiet panic=-1 ct.ws={} ct.cmd={}",
        ws.display(),
        script.display()
    ))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    eprintln!(
        "xtask: vm-test: {label}: booting {} under QEMU TCG (timeout {timeout:?})",
        k.vmlinux.display()
    );
    let started = Instant::now();
    let mut child = qemu.spawn().context("starting qemu-system-x86_64")?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    let mut logf = fs::File::create(log)?;
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                println!("{label}| {line}");
                writeln!(logf, "{line}")?;
                if WEDGED.iter().any(|w| line.contains(w)) {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = reader.join();
                    eprintln!(
                        "xtask: vm-test: {label}: the guest kernel is wedged ({line}); killed"
                    );
                    return Ok(Boot::Wedged);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            eprintln!("xtask: vm-test: {label}: guest hung: killed after {timeout:?}");
            return Ok(Boot::Hung);
        }
    }
    let status = child.wait()?;
    let _ = reader.join();
    eprintln!(
        "xtask: vm-test: {label}: guest finished in {:.1} s ({status})",
        started.elapsed().as_secs_f64()
    );
    Ok(Boot::Finished)
}

/// The host's and the guest's planner decisions must cover the same paths and differ only in
/// tiers (and whatever follows from them); the comparison goes to `report`.
fn compare_probes(host: &Path, guest: &Path, report: &mut String) -> anyhow::Result<bool> {
    let load = |p: &Path| -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_slice(
            &fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        )?)
    };
    let (h, g) = (load(host)?, load(guest)?);
    let paths = |v: &serde_json::Value| -> Vec<(String, String)> {
        v["paths"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|d| {
                        (
                            d["path"].as_str().unwrap_or("").to_string(),
                            d["tier"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (hp, gp) = (paths(&h), paths(&g));
    let _ = writeln!(
        report,
        "vm-test: planner tiers, host kernel {} vs guest kernel {}",
        h["kernel"], g["kernel"]
    );
    let _ = writeln!(report, "  {:<24} {:<12} {:<12}", "path", "host", "guest");
    let mut differ = 0;
    for ((hn, ht), (_, gt)) in hp.iter().zip(&gp) {
        let mark = if ht != gt {
            differ += 1;
            "  <- tier differs"
        } else {
            ""
        };
        let _ = writeln!(report, "  {hn:<24} {ht:<12} {gt:<12}{mark}");
    }
    let same_paths = hp.iter().map(|p| &p.0).eq(gp.iter().map(|p| &p.0));
    if !same_paths {
        let _ = writeln!(
            report,
            "xtask: vm-test: host and guest report different path lists"
        );
    }
    if differ == 0 {
        let _ = writeln!(
            report,
            "xtask: vm-test: no tier differs between host and guest"
        );
    }
    Ok(same_paths && differ > 0)
}

/// `copytrace trace` in the guest: the 1,000,000 bytes are there, seen through probe tiers.
fn check_guest_trace(path: &Path, report: &mut String) -> bool {
    let Some(v) = fs::read(path)
        .ok()
        .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
    else {
        let _ = writeln!(
            report,
            "xtask: vm-test: the guest wrote no trace (or not JSON)"
        );
        return false;
    };
    let sent: u64 = v["syscalls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["name"] == "sendto" || s["name"] == "sendmsg")
        .filter_map(|s| s["bytes"].as_u64())
        .sum();
    let paths = v["breakdown"]["paths"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let copy = paths.iter().find(|p| p["path"] == "user→kernel copy");
    let copy_tier = copy.and_then(|p| p["tier"].as_str()).unwrap_or("?");
    let copied = copy.and_then(|p| p["bytes"].as_u64()).unwrap_or(0);
    let _ = writeln!(
        report,
        "vm-test: guest `copytrace trace` of a 1,000,000-byte sender: sendto/sendmsg bytes \
         {sent}, user→kernel copy {copied} bytes via {copy_tier}"
    );
    sent == 1_000_000 && copied == 1_000_000 && (copy_tier == "fentry" || copy_tier == "kprobe")
}

/// Held for a whole vm-test: two at once would share `target/vm/out`, each clearing the other's
/// results.
fn exclusive() -> anyhow::Result<fs::File> {
    fs::create_dir_all(vm_dir())?;
    let f = fs::File::create(vm_dir().join("lock"))?;
    use std::os::fd::AsRawFd as _;
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        anyhow::bail!("another `cargo xtask vm-test` is running on this checkout");
    }
    Ok(f)
}

/// The kernels `--kernel all` boots.
const KERNELS: [&str; 2] = ["debian-6.1", "debian-6.12"];

/// One kernel, ready to boot.
struct Guest {
    spec: String,
    kernel: Kernel,
    initramfs: PathBuf,
}

/// What the host hands every guest: the test binaries, copytrace, and the host's own planner
/// decisions to compare with.
struct Payload {
    bins: Vec<(String, PathBuf)>,
    copytrace: PathBuf,
    host_probe: String,
    timeout: Duration,
}

/// How one guest's run ended.
struct Outcome {
    ok: bool,
    secs: f64,
    /// Test summaries and checks, printed once the guest is done (guests run at once; their
    /// serial lines stream live, labelled).
    report: String,
}

pub fn run(env: &BuildEnv, args: &VmArgs) -> anyhow::Result<ExitCode> {
    let _lock = exclusive()?;
    packages::ensure("vm-test", packages::VM)?;
    let specs: Vec<&str> = match args.kernel.as_str() {
        "all" => KERNELS.to_vec(),
        one if KERNELS.contains(&one) => vec![one],
        other => bail!(
            "unknown kernel `{other}` (known: all, {})",
            KERNELS.join(", ")
        ),
    };
    // Downloads and images one after the other (apt, depmod) ...
    let guests = specs
        .iter()
        .map(|spec| {
            let kernel = prepare_kernel(spec)?;
            let initramfs = build_initramfs(&kernel)?;
            Ok(Guest {
                spec: spec.to_string(),
                kernel,
                initramfs,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let copytrace = cmd::target_dir().join("debug/copytrace");
    let payload = Payload {
        bins: build_tests(env)?,
        host_probe: cmd::output(crate::tasks::as_root(env, &copytrace).args(["probe", "--json"]))?,
        copytrace,
        timeout: args.timeout,
    };
    // ... then the boots at once: single-threaded TCG runs a guest's vCPUs on one host thread,
    // so two guests use two host cores in the time of one.
    let outcomes = std::thread::scope(|scope| {
        let runs: Vec<_> = guests
            .iter()
            .map(|g| scope.spawn(|| run_guest(g, &payload)))
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("a vm-test thread panicked"))
            .collect::<Vec<_>>()
    });
    let mut all_ok = true;
    let mut verdicts = Vec::new();
    for (g, outcome) in guests.iter().zip(outcomes) {
        let o = outcome.with_context(|| format!("vm-test {}", g.spec))?;
        print!("{}", o.report);
        all_ok &= o.ok;
        verdicts.push(format!(
            "vm-test: {} ({}): {} in {:.0} s",
            g.spec,
            g.kernel.version,
            if o.ok { "PASSED" } else { "FAILED" },
            o.secs
        ));
    }
    for v in &verdicts {
        println!("{v}");
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Boot one guest, let it run the tests, read what it wrote.
fn run_guest(g: &Guest, p: &Payload) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let out = vm_dir().join("out").join(&g.spec);
    let label = g.spec.strip_prefix("debian-").unwrap_or(&g.spec);
    let mut finished = false;
    for attempt in 1..=2 {
        let _ = fs::remove_dir_all(&out);
        fs::create_dir_all(&out)?;
        fs::write(out.join("probe-host.json"), &p.host_probe)?;
        let script = out.join("run.sh");
        fs::write(&script, guest_script(&out, &p.bins, &p.copytrace)?)?;
        match boot(
            label,
            &g.kernel,
            &g.initramfs,
            &script,
            &out.join("serial.log"),
            p.timeout,
        )? {
            Boot::Finished => {
                finished = true;
                break;
            }
            Boot::Wedged if attempt == 1 => {
                eprintln!("xtask: vm-test: {label}: retrying once with a fresh boot");
            }
            Boot::Wedged | Boot::Hung => break,
        }
    }
    let rc = fs::read_to_string(out.join("rc"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    let mut ok = finished && rc == Some(0);
    let mut report = format!("=== vm-test: {} ({}) ===\n", g.spec, g.kernel.version);
    for (name, _) in GUEST_TESTS {
        let trc = fs::read_to_string(out.join(format!("{name}.rc"))).unwrap_or_default();
        let log = fs::read_to_string(out.join(format!("{name}.log"))).unwrap_or_default();
        let summary = log
            .lines()
            .filter(|l| l.starts_with("test ") || l.starts_with("test result"))
            .collect::<Vec<_>>()
            .join("\n  ");
        let _ = writeln!(report, "vm-test: {name} (rc {}):\n  {summary}", trc.trim());
        // A test whose status the guest never wrote did not pass.
        ok &= trc.trim() == "0";
        if trc.trim() != "0" {
            let _ = writeln!(report, "--- {name}.log ---\n{log}");
        }
    }
    ok &= check_guest_trace(&out.join("trace-guest.json"), &mut report);
    if out.join("probe-guest.json").exists() {
        ok &= compare_probes(
            &out.join("probe-host.json"),
            &out.join("probe-guest.json"),
            &mut report,
        )?;
    } else {
        let _ = writeln!(report, "xtask: vm-test: the guest wrote no probe report");
        ok = false;
    }
    let _ = writeln!(report, "vm-test: artifacts in {}", out.display());
    Ok(Outcome {
        ok,
        secs: started.elapsed().as_secs_f64(),
        report,
    })
}

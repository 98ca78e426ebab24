//! The `netns` topology: two network namespaces joined by a veth pair, created for the run and
//! always torn down (on drop, which also runs on Ctrl-C and on panic unwinding). The `nics`
//! topology: the same two namespaces, each holding one of two network interfaces of this host
//! that are joined by a wire, moved back (down, addresses flushed) when the run ends.
//!
//! Namespaces are named `copytrace-<pid>-{a,b}`; ones left by a copytrace that was killed
//! (SIGKILL) are removed by the next run.
use std::{
    fs::File,
    io,
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd,
    path::PathBuf,
    process::Command,
};

const PREFIX: &str = "copytrace-";
/// Addresses of the project's own two test hosts, inside namespaces we create: from the
/// benchmark range 198.18.0.0/15 (RFC 2544), which no real network uses.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

pub struct NetnsPair {
    pub client: String,
    pub server: String,
    /// Host interfaces moved into the namespaces (`nics`): (namespace, interface).
    moved: Vec<(String, String)>,
}

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("the netns topology needs iproute2's `ip` command: {e}"),
        )
    })?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Remove namespaces left behind by copytrace processes that no longer exist.
fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

/// Why `dev` cannot be used for the `nics` topology, if it cannot.
fn unusable(dev: &str) -> Option<String> {
    let sys = std::path::Path::new("/sys/class/net").join(dev);
    if dev.is_empty() || dev.contains('/') || !sys.exists() {
        return Some(format!("network interface `{dev}` does not exist"));
    }
    let flags = std::fs::read_to_string(sys.join("flags")).unwrap_or_default();
    let up = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16)
        .is_ok_and(|f| f & libc::IFF_UP as u32 != 0);
    let addrs = Command::new("ip")
        .args(["-o", "addr", "show", "dev", dev])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let in_use: Vec<&str> = addrs
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace().skip_while(|w| !w.starts_with("inet"));
            w.next()?;
            w.next()
        })
        .filter(|a| !a.starts_with("fe80:"))
        .collect();
    (up && !in_use.is_empty()).then(|| {
        format!(
            "network interface `{dev}` is up with addresses in use ({}): copytrace moves the \
             interfaces it is given into namespaces of its own and will not take one this host \
             is using",
            in_use.join(", ")
        )
    })
}

impl NetnsPair {
    /// The two namespaces, empty but for `lo`. Needs root.
    fn namespaces(topology: &str) -> io::Result<NetnsPair> {
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the {topology} topology needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to \
                     create network namespaces"
                ),
            ));
        }
        remove_stale();
        let pid = std::process::id();
        let pair = NetnsPair {
            client: format!("{PREFIX}{pid}-a"),
            server: format!("{PREFIX}{pid}-b"),
            moved: Vec::new(),
        };
        // From here on, Drop cleans up whatever was created.
        ip(&["netns", "add", &pair.client])?;
        ip(&["netns", "add", &pair.server])?;
        Ok(pair)
    }

    /// Address `dev` (already in `ns`) and bring it and `lo` up.
    fn address(ns: &str, dev: &str, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/{prefix}"),
            "dev",
            dev,
        ])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])
    }

    /// Both namespaces, one of this host's interfaces in each (`a` on the sender's side).
    /// Refuses, before touching anything, an interface that is missing, named twice, or up
    /// with addresses in use.
    pub fn with_nics(a: &str, b: &str) -> io::Result<NetnsPair> {
        if a == b {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("--nics names `{a}` twice: give two interfaces joined by a wire"),
            ));
        }
        for dev in [a, b] {
            if let Some(why) = unusable(dev) {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
            }
        }
        let mut pair = NetnsPair::namespaces("nics")?;
        for (ns, dev, addr) in [
            (pair.client.clone(), a, CLIENT_ADDR),
            (pair.server.clone(), b, SERVER_ADDR),
        ] {
            ip(&["link", "set", "dev", dev, "down"])?;
            ip(&["link", "set", "dev", dev, "netns", &ns])?;
            pair.moved.push((ns.clone(), dev.to_string()));
            Self::address(&ns, dev, addr, 24)?;
        }
        Ok(pair)
    }

    /// Create both namespaces, the veth pair and addresses. Needs root.
    pub fn create() -> io::Result<NetnsPair> {
        let pair = NetnsPair::namespaces("netns")?;
        let pid = std::process::id();
        let (va, vb) = (format!("ct{pid}a"), format!("ct{pid}b"));
        ip(&[
            "link",
            "add",
            &va,
            "netns",
            &pair.client,
            "type",
            "veth",
            "peer",
            "name",
            &vb,
            "netns",
            &pair.server,
        ])?;
        for (ns, dev, addr) in [
            (&pair.client, &va, CLIENT_ADDR),
            (&pair.server, &vb, SERVER_ADDR),
        ] {
            Self::address(ns, dev, addr, 30)?;
        }
        Ok(pair)
    }

    pub fn server_ip(&self) -> IpAddr {
        IpAddr::V4(SERVER_ADDR)
    }

    pub fn client_path(&self) -> PathBuf {
        netns_path(&self.client)
    }

    pub fn server_path(&self) -> PathBuf {
        netns_path(&self.server)
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        // Host interfaces go back as they came: down and without addresses (deleting the
        // namespace would also return a physical device, but destroy a veth end).
        for (ns, dev) in self.moved.drain(..).rev() {
            let back = ip(&["-n", &ns, "link", "set", "dev", &dev, "down"])
                .and_then(|()| ip(&["-n", &ns, "addr", "flush", "dev", &dev]))
                .and_then(|()| ip(&["-n", &ns, "link", "set", "dev", &dev, "netns", "1"]));
            if let Err(e) = back {
                log::warn!("moving {dev} back from namespace {ns}: {e}");
            }
        }
        for ns in [&self.client, &self.server] {
            if netns_path(ns).exists()
                && let Err(e) = ip(&["netns", "del", ns])
            {
                log::warn!("removing network namespace {ns}: {e}");
            }
        }
    }
}

/// Move the calling thread into the network namespace at `path` (sockets it creates from now on
/// live there; other threads are unaffected).
pub fn enter(path: &std::path::Path) -> io::Result<()> {
    let f = File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    // SAFETY: valid fd; affects only this thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("setns({}): {e}", path.display()),
        ));
    }
    Ok(())
}

/// Run `f` on a fresh thread inside the namespace at `path` (or here, if `None`).
pub fn run_in<T: Send + 'static>(
    path: Option<PathBuf>,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    match path {
        None => f(),
        Some(p) => std::thread::spawn(move || {
            enter(&p)?;
            f()
        })
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?,
    }
}

/// Write a sysctl inside the namespace at `path` (`/proc/sys/net` is per network namespace,
/// resolved at open time by the opener's namespace).
pub fn sysctl_in(path: PathBuf, key: &'static str, value: String) -> io::Result<()> {
    run_in(Some(path), move || {
        let file = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&file, &value)
            .map_err(|e| io::Error::new(e.kind(), format!("writing {value} to {file}: {e}")))
    })
}

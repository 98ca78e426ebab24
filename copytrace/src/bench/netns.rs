//! The `netns` topology: two network namespaces joined by a veth pair, created for the run and
//! always torn down (on drop, which also runs on Ctrl-C and on panic unwinding).
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

impl NetnsPair {
    /// Create both namespaces, the veth pair and addresses. Needs root.
    pub fn create() -> io::Result<NetnsPair> {
        // SAFETY: no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "the netns topology needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to create \
                 network namespaces",
            ));
        }
        remove_stale();
        let pid = std::process::id();
        let pair = NetnsPair {
            client: format!("{PREFIX}{pid}-a"),
            server: format!("{PREFIX}{pid}-b"),
        };
        // From here on, Drop cleans up whatever was created.
        ip(&["netns", "add", &pair.client])?;
        ip(&["netns", "add", &pair.server])?;
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
            ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
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

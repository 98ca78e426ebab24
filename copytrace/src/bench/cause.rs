//! Why zero-copy was not real: named per cell from what copytrace can see of the route.
//!
//! The kernel only reports *that* it copied (`SO_EE_CODE_ZEROCOPY_COPIED`), not why. The causes
//! copytrace can tell apart:
//!
//! * the sending interface has no scatter-gather: TCP copies at send time;
//! * the sending interface has no checksum offload: TCP copies to checksum the data;
//! * the data was delivered to a local socket (loopback, veth): the receive path copies the
//!   pinned pages (`skb_copy_ubufs`);
//! * otherwise, unknown (and the interface's offloads are named).
use std::{io, os::fd::AsRawFd, path::Path};

use crate::bench::{netns, topology::Topology};

/// A cell counts as copied when more than this fraction of its completed bytes was.
pub const COPIED_ABOVE: f64 = 0.05;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GTXCSUM: u32 = 0x16;
const ETHTOOL_GSG: u32 = 0x18;
const ETHTOOL_GDRVINFO: u32 = 0x03;

/// `struct ethtool_value`, or `struct ethtool_drvinfo` (cmd, then the driver's name in 32
/// bytes, …): a buffer as large as the whole drvinfo (196 bytes).
#[repr(C)]
struct EthtoolBuf {
    cmd: u32,
    data: [u8; 192],
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut EthtoolBuf,
    _pad: [u8; 16],
}

/// One legacy ethtool request about `dev`, in the calling thread's network namespace.
fn ethtool(sock: &std::net::UdpSocket, dev: &str, cmd: u32) -> io::Result<EthtoolBuf> {
    let mut v = EthtoolBuf {
        cmd,
        data: [0; 192],
    };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &mut v,
        _pad: [0; 16],
    };
    for (d, s) in req
        .name
        .iter_mut()
        .zip(dev.bytes().take(libc::IFNAMSIZ - 1))
    {
        *d = s as libc::c_char;
    }
    // SAFETY: valid socket, ifreq and a buffer large enough for the request, alive for the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(v)
}

/// What the sending interface offers.
struct Offloads {
    driver: String,
    sg: bool,
    tx_csum: bool,
}

/// The offloads of `dev` in the namespace at `ns`.
fn offloads(ns: std::path::PathBuf, dev: String) -> io::Result<Offloads> {
    netns::run_in(Some(ns), move || {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
        let flag = |cmd| ethtool(&sock, &dev, cmd).map(|v| v.data[..4] != [0; 4]);
        let info = ethtool(&sock, &dev, ETHTOOL_GDRVINFO)?;
        let name = &info.data[..32];
        let end = name.iter().position(|&b| b == 0).unwrap_or(32);
        Ok(Offloads {
            driver: String::from_utf8_lossy(&name[..end]).into_owned(),
            sg: flag(ETHTOOL_GSG)?,
            tx_csum: flag(ETHTOOL_GTXCSUM)?,
        })
    })
}

/// Why a cell's zero-copy sends were copied (`copied` = its copied fraction).
pub fn explain(
    topology: &Topology,
    client_netns: Option<&Path>,
    copied: Option<f64>,
) -> Option<String> {
    if copied? <= COPIED_ABOVE {
        return None;
    }
    Some(match topology {
        Topology::Loopback | Topology::Netns => "delivered to a local socket (loopback or veth): \
             the receive path copies the pinned pages"
            .into(),
        Topology::Nics(a, _) => {
            let ns = client_netns?.to_path_buf();
            match offloads(ns, a.clone()) {
                Ok(o) if !o.sg => {
                    format!("route without scatter-gather ({a}): TCP copied at send time")
                }
                Ok(o) if !o.tx_csum => {
                    format!("no checksum offload on {a}: TCP copied the data to checksum it")
                }
                Ok(o) if o.driver == "veth" => format!(
                    "delivered to a local socket ({a} is a veth): the receive path copies the \
                     pinned pages"
                ),
                Ok(o) => format!(
                    "unknown: {a} ({}) has scatter-gather and checksum offload (a packet tap, \
                     or a device that needs linear data, copies too)",
                    o.driver
                ),
                Err(e) => format!("unknown: the offloads of {a} could not be read ({e})"),
            }
        }
        Topology::Remote(_) => "unknown: the route to a remote receiver is not visible here".into(),
    })
}

//! Where the two ends of each connection live: the sweep sets them up, the cause of a copied
//! zero-copy send depends on them.
use std::net::SocketAddr;

/// Where the two ends of each connection live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Both ends in this process, over 127.0.0.1.
    Loopback,
    /// Two network namespaces joined by veth, created and torn down by copytrace.
    Netns,
    /// Two interfaces of this host joined by a wire (sender's, receiver's), each moved into one
    /// of copytrace's namespaces for the run.
    Nics(String, String),
    /// A `copytrace serve` elsewhere.
    Remote(SocketAddr),
}

impl Topology {
    pub fn label(&self) -> String {
        match self {
            Topology::Loopback => "loopback".into(),
            Topology::Netns => "netns (veth)".into(),
            Topology::Nics(a, b) => format!("nics {a} → {b}"),
            Topology::Remote(a) => format!("remote {a}"),
        }
    }
}

//! "Where did the bytes go": per-kernel-path totals of a snapshot, with the tier that saw each
//! path (or why none could).
use copytrace_common::{StatKey, Stats, aux, completion, path, syscall, uring};
use serde::{Deserialize, Serialize};

use crate::{
    table::{Table, bytes as human_bytes, ns},
    trace::{
        planner::{PathDecision, Tier, names},
        snapshot::{Snapshot, StatsExt},
    },
};

/// The breakdown row of sendfile's bytes: page-cache pages attached to the socket by
/// reference (never copied from user memory), from the sendfile calls' results.
pub const SENDFILE_ATTACH: &str = "page-cache attach (sendfile)";

/// The breakdown row of io_uring SEND_ZC notifications (events; no bytes).
pub const URING_NOTIFICATIONS: &str = "io_uring notifications";

/// Totals of one kernel path.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PathStat {
    pub path: String,
    pub tier: Option<Tier>,
    /// Events (calls, copies, switches…).
    pub calls: u64,
    /// Bytes (pages for page pinning); absent when the path is not visible.
    pub bytes: Option<u64>,
    pub errors: u64,
    /// Time inside the path, when the tier measures it.
    pub total_ns: Option<u64>,
    pub p50_ns_le: Option<u64>,
    pub p99_ns_le: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Every path of one trace window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    pub paths: Vec<PathStat>,
    /// Pages requested from get_user_pages (nr_pages), next to pages pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_requested_pages: Option<u64>,
    /// Deferred copies that ran in a context copytrace could not attribute to a traced task
    /// (softirq on behalf of another task, ksoftirqd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred_unattributed_bytes: Option<u64>,
    /// Events lost by the tracer (maps full, program runs the kernel skipped), which would make the numbers incomplete.
    pub lost_events: u64,
}

/// The send system calls' note where no tier sees the socket layer.
const SOCKET_CALLS_ONLY: &str = "send, sendto and sendmsg only: write, writev and sendfile \
     on sockets are told from file I/O by the socket layer, which no tier sees here";

/// Why a derived send path is unavailable: what it is derived from is not seen.
const SEND_UNDERIVABLE: &str =
    "derived from send calls that reached a socket, and no tier here sees the socket layer";
/// The same for the receive copy.
const RECV_UNDERIVABLE: &str =
    "derived from receive calls on sockets, and no tier here sees the socket layer";

/// A derived path whose inputs this kernel's tiers cannot see (`derivable` false):
/// unavailable, and `why`.
fn underivable(p: PathStat, derivable: bool, why: &str) -> PathStat {
    if derivable || p.tier != Some(Tier::Derived) {
        return p;
    }
    PathStat {
        tier: Some(Tier::Unavailable),
        bytes: None,
        note: Some(why.to_string()),
        ..p
    }
}

/// sendfile's bytes on sockets, derived from the calls' results (the socket path tells a
/// socket from a file).
fn sendfile_attach(snap: &Snapshot, visible: bool) -> PathStat {
    let s = snap
        .sum(|k| k.path == path::SYSCALL && k.op == syscall::SENDFILE && aux::family(k.aux) != 0);
    PathStat {
        path: SENDFILE_ATTACH.to_string(),
        tier: Some(if visible {
            Tier::Derived
        } else {
            Tier::Unavailable
        }),
        calls: s.count,
        bytes: visible.then_some(s.bytes),
        errors: s.errors,
        note: Some(
            "bytes sendfile handed to sockets (its results): file pages attached by reference, \
             never copied from user memory"
                .to_string(),
        ),
        ..PathStat::default()
    }
}

impl Breakdown {
    pub fn path(&self, name: &str) -> Option<&PathStat> {
        self.paths.iter().find(|p| p.path == name)
    }

    /// Bytes of `name`, if the path was visible.
    pub fn bytes_of(&self, name: &str) -> Option<u64> {
        self.path(name).and_then(|p| p.bytes)
    }

    pub fn compute(snap: &Snapshot, decisions: &[PathDecision]) -> Breakdown {
        let decision = |name: &str| decisions.iter().find(|d| d.path == name);
        let visible = |name: &str| decision(name).is_some_and(|d| d.tier != Tier::Unavailable);
        // `decided` names the planner path whose tier applies (rows may be finer than paths).
        let stat_as = |name: &str, decided: &str, s: Stats, timed: bool| {
            let d = decision(decided);
            let shown = visible(decided);
            PathStat {
                path: name.to_string(),
                tier: d.map(|d| d.tier),
                calls: s.count,
                bytes: shown.then_some(s.bytes),
                errors: s.errors,
                total_ns: (shown && timed).then_some(s.total_ns),
                p50_ns_le: if timed {
                    s.quantile_upper_ns(0.5)
                } else {
                    None
                },
                p99_ns_le: if timed {
                    s.quantile_upper_ns(0.99)
                } else {
                    None
                },
                note: d.and_then(|d| d.note.clone()),
            }
        };
        let stat = |name: &str, s: Stats, timed: bool| stat_as(name, name, s, timed);
        let attributed = |k: &StatKey| k.tgid != 0;
        let timed_tier = |name: &str| {
            decision(name).is_some_and(|d| matches!(d.tier, Tier::Fentry | Tier::Kprobe))
        };
        let sends = snap.sum(|k| k.path == path::SYSCALL && syscall::is_send(k.op));
        // Tracepoint-only kernels: what socket send calls (not sendfile, whose data comes from
        // the page cache) handed over was copied — unless the call passed MSG_ZEROCOPY.
        // io_uring sends count the same way by opcode (SEND copies, SEND_ZC attaches).
        let derived = |zerocopy: bool| {
            let mut s = snap.sum(|k| {
                k.path == path::SYSCALL
                    && syscall::is_send(k.op)
                    && k.op != syscall::SENDFILE
                    && aux::family(k.aux) != 0
                    && (k.aux & aux::ZEROCOPY_REQUESTED != 0) == zerocopy
            });
            s.add(&snap.sum(|k| k.path == path::URING_SEND && uring::zero_copy(k.op) == zerocopy));
            s
        };
        let tier_is = |name: &str, t: Tier| decision(name).is_some_and(|d| d.tier == t);
        // The derivations count send calls that reached a socket: without a view of the
        // socket layer they would count nothing and look like a measured zero.
        let derivable = visible(names::SOCKET_SEND);
        let copies = if tier_is(names::COPY, Tier::Derived) {
            derived(false)
        } else {
            snap.total(path::COPY_FROM_USER, None)
        };
        let zerocopy = if tier_is(names::ZEROCOPY, Tier::Derived) {
            derived(true)
        } else {
            snap.total(path::ZEROCOPY, None)
        };
        // Without a probe on the copy: what the receive calls on sockets returned is what
        // their copies wrote (one event per call, not per copy).
        let recv_copies = if tier_is(names::RECV_COPY, Tier::Derived) {
            snap.total(path::SOCK_RECV, None)
        } else {
            snap.total(path::RECV_COPY, None)
        };
        let recvs = snap.sum(|k| k.path == path::SYSCALL && !syscall::is_send(k.op));
        let pinned =
            snap.sum(|k| k.path == path::PIN_PAGES && k.aux & aux::REQUESTED == 0 && attributed(k));
        let requested = snap.sum(|k| k.path == path::PIN_PAGES && k.aux & aux::REQUESTED != 0);
        let deferred = snap.sum(|k| k.path == path::DEFERRED_COPY && attributed(k));
        let deferred_other = snap.sum(|k| k.path == path::DEFERRED_COPY && !attributed(k));
        let mut paths = vec![
            stat_as(
                &format!("{} (send)", names::SYSCALLS),
                names::SYSCALLS,
                sends,
                true,
            ),
            stat_as(
                &format!("{} (receive)", names::SYSCALLS),
                names::SYSCALLS,
                recvs,
                true,
            ),
            stat(
                names::TCP,
                snap.total(path::TCP_SENDMSG, None),
                visible(names::TCP),
            ),
            underivable(
                stat(names::COPY, copies, false),
                derivable,
                SEND_UNDERIVABLE,
            ),
            underivable(
                stat(names::ZEROCOPY, zerocopy, timed_tier(names::ZEROCOPY)),
                derivable,
                SEND_UNDERIVABLE,
            ),
            stat(names::PINNING, pinned, true),
            stat(names::DEFERRED, deferred, true),
            stat(
                names::COMPLETIONS,
                snap.sum(|k| {
                    k.path == path::ZC_COMPLETION && k.op == completion::SOCKET && attributed(k)
                }),
                false,
            ),
            sendfile_attach(
                snap,
                visible(names::SYSCALLS) && visible(names::SOCKET_SEND),
            ),
            stat(names::URING, snap.total(path::URING_SEND, None), true),
            stat_as(
                URING_NOTIFICATIONS,
                names::URING,
                snap.sum(|k| {
                    k.path == path::ZC_COMPLETION && k.op == completion::IO_URING && attributed(k)
                }),
                false,
            ),
            underivable(
                stat(names::RECV_COPY, recv_copies, timed_tier(names::RECV_COPY)),
                visible(names::SOCKET_RECV),
                RECV_UNDERIVABLE,
            ),
            stat(names::SCHED, snap.total(path::OFF_CPU, None), true),
        ];
        // Off-CPU time and notifications have no bytes.
        for p in &mut paths {
            if p.path == names::SCHED || p.path == URING_NOTIFICATIONS {
                p.bytes = None;
            }
        }
        // write, writev and sendfile count only when the socket layer saw the call (they are
        // file I/O otherwise): without a view of it, only the socket-only calls are here.
        if !derivable && visible(names::SYSCALLS) {
            paths[0].note = Some(SOCKET_CALLS_ONLY.to_string());
        }
        Breakdown {
            paths,
            pin_requested_pages: visible(names::PINNING).then_some(requested.bytes),
            deferred_unattributed_bytes: visible(names::DEFERRED).then_some(deferred_other.bytes),
            lost_events: snap.counters.lost(),
        }
    }

    pub fn render(&self) -> String {
        let mut t = Table::new([
            "kernel path",
            "tier",
            "events",
            "bytes",
            "",
            "time",
            "p50",
            "p99",
        ])
        .left(&[1, 4]);
        let mut notes = Vec::new();
        for p in &self.paths {
            let (b, unit) = match (p.path.as_str(), p.bytes) {
                (_, None) => ("-".to_string(), String::new()),
                (names::PINNING, Some(v)) => (v.to_string(), "pages".to_string()),
                (_, Some(v)) => (v.to_string(), human_bytes(v)),
            };
            let le = |v: Option<u64>| v.map_or("-".to_string(), |v| format!("≤{}", ns(v)));
            t.row([
                p.path.clone(),
                p.tier.map_or("-", Tier::as_str).to_string(),
                if p.tier == Some(Tier::Unavailable) {
                    "-".to_string()
                } else {
                    p.calls.to_string()
                },
                b,
                unit,
                p.total_ns.map_or("-".to_string(), ns),
                le(p.p50_ns_le),
                le(p.p99_ns_le),
            ]);
            if let Some(n) = &p.note {
                notes.push(format!("  {}: {n}", p.path));
            }
        }
        let mut out = t.render();
        if let Some(r) = self.pin_requested_pages {
            out.push_str(&format!("page pinning: {r} pages requested\n"));
        }
        if let Some(d) = self.deferred_unattributed_bytes.filter(|d| *d > 0) {
            out.push_str(&format!(
                "deferred copies in contexts not attributable to a traced task: {d} bytes\n"
            ));
        }
        if !notes.is_empty() {
            out.push_str("notes on the paths (derived, unavailable, incompletely counted):\n");
            out.push_str(&notes.join("\n"));
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use copytrace_common::{StatKey, Stats};

    use super::*;

    fn decision(path: &str, tier: Tier) -> PathDecision {
        PathDecision {
            path: path.to_string(),
            tier,
            target: None,
            attempts: Vec::new(),
            note: None,
        }
    }

    /// The send calls say what they leave out exactly when no tier sees the socket layer
    /// (Debian 6.1 capped at tracepoints), and say nothing where one does.
    #[test]
    fn send_calls_are_socket_calls_only_without_a_socket_layer() {
        let mut snap = Snapshot::default();
        let key = StatKey {
            tgid: 7,
            tid: 7,
            path: path::SYSCALL,
            op: syscall::SENDTO,
            aux: 0,
        };
        let stats = Stats {
            count: 2,
            bytes: 128,
            ..Stats::ZERO
        };
        snap.rows.insert(key, stats);
        for (socket, note) in [
            (Tier::Unavailable, Some(SOCKET_CALLS_ONLY)),
            (Tier::Tracepoint, None),
        ] {
            let decisions = [
                decision(names::SYSCALLS, Tier::Tracepoint),
                decision(names::SOCKET_SEND, socket),
            ];
            let b = Breakdown::compute(&snap, &decisions);
            let sends = b.path("syscalls (send)").unwrap();
            assert_eq!((sends.calls, sends.bytes), (2, Some(128)));
            assert_eq!(sends.note.as_deref(), note, "socket layer {socket:?}");
        }
    }
}

//! Reading the kernel-side aggregates and folding them into per-syscall / per-path summaries.
use std::collections::BTreeMap;

use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray, PerCpuHashMap},
};
use copytrace_common::{
    CallKey, CallStats, HIST_BUCKETS, StatKey, Stats, aux, counter, path, syscall, uring,
};
use serde::{Deserialize, Serialize};

use crate::{
    error::Result,
    trace::{maps::map_ref, skipped},
};

/// Element-wise arithmetic on [`Stats`] (sums across CPUs, deltas between snapshots).
pub trait StatsExt {
    fn add(&mut self, other: &Stats);
    fn minus(&self, earlier: &Stats) -> Stats;
    /// Upper bound (ns) of the log2 bucket holding the `q` quantile, if any events were timed.
    fn quantile_upper_ns(&self, q: f64) -> Option<u64>;
}

impl StatsExt for Stats {
    fn add(&mut self, o: &Stats) {
        self.count += o.count;
        self.bytes += o.bytes;
        self.errors += o.errors;
        self.total_ns += o.total_ns;
        add_hist(&mut self.hist, &o.hist);
    }

    fn minus(&self, e: &Stats) -> Stats {
        let mut d = *self;
        d.count = self.count.saturating_sub(e.count);
        d.bytes = self.bytes.saturating_sub(e.bytes);
        d.errors = self.errors.saturating_sub(e.errors);
        d.total_ns = self.total_ns.saturating_sub(e.total_ns);
        for (i, v) in d.hist.iter_mut().enumerate() {
            *v = self.hist[i].saturating_sub(e.hist[i]);
        }
        d
    }

    fn quantile_upper_ns(&self, q: f64) -> Option<u64> {
        let total: u64 = self.hist.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut cum = 0;
        for (i, n) in self.hist.iter().enumerate() {
            cum += n;
            if cum >= rank {
                return Some(if i + 1 >= HIST_BUCKETS {
                    u64::MAX
                } else {
                    (1u64 << (i + 1)) - 1
                });
            }
        }
        None
    }
}

/// A socket-send row the kernel wrote with [`aux::TCP_TIMED`] is two logical rows: the socket
/// row (no time) and the derived tcp_sendmsg row (the same events and bytes, with the time).
fn split_tcp_timed(k: StatKey, v: Stats) -> Vec<(StatKey, Stats)> {
    if k.path != path::SOCK_SEND || k.aux & aux::TCP_TIMED == 0 {
        return vec![(k, v)];
    }
    let sock = StatKey {
        aux: k.aux & !aux::TCP_TIMED,
        ..k
    };
    let tcp = StatKey {
        path: path::TCP_SENDMSG,
        op: 0,
        aux: aux::DERIVED,
        ..k
    };
    let untimed = Stats {
        total_ns: 0,
        hist: [0; copytrace_common::HIST_BUCKETS],
        ..v
    };
    vec![(sock, untimed), (tcp, v)]
}

/// A calls row ([`CallKey`], [`CallStats`]) is the rows it stands for: the system call, its
/// socket-layer row (the same events, bytes and errors; a receive's or send's by the call),
/// and with [`aux::TCP_TIMED`] the tcp_sendmsg the calls timed (split off as
/// [`split_tcp_timed`] does for the tracepoint tier's socket rows).
fn split_call(k: CallKey, v: &CallStats) -> Vec<(StatKey, Stats)> {
    let syscall_key = StatKey {
        tgid: k.tgid,
        tid: k.tid,
        path: path::SYSCALL,
        op: k.op,
        aux: k.aux & !aux::TCP_TIMED,
    };
    let socket_key = StatKey {
        path: if syscall::is_send(k.op) {
            path::SOCK_SEND
        } else {
            path::SOCK_RECV
        },
        op: k.proto,
        aux: k.aux & (u32::from(u16::MAX) << aux::FAMILY_SHIFT | aux::TCP_TIMED),
        ..syscall_key
    };
    // The socket row has no time of its own; with TCP_TIMED it carries the tcp_sendmsg's.
    let timed = k.aux & aux::TCP_TIMED != 0;
    let socket = Stats {
        total_ns: if timed { v.tcp_ns } else { 0 },
        hist: if timed { v.tcp_hist } else { [0; HIST_BUCKETS] },
        ..v.call
    };
    let mut rows = vec![(syscall_key, v.call)];
    rows.extend(split_tcp_timed(socket_key, socket));
    rows
}

/// Every row of the per-CPU hash map `name`, its values summed over CPUs with `add`.
fn summed_rows<K: aya::Pod, V: aya::Pod + Default>(
    ebpf: &Ebpf,
    name: &str,
    add: fn(&mut V, &V),
) -> Result<Vec<(K, V)>> {
    let map: PerCpuHashMap<&MapData, K, V> = map_ref(ebpf, name)?;
    map.iter()
        .map(|item| {
            let (k, per_cpu) = item.map_err(|source| crate::error::Error::Map {
                map: name.into(),
                source,
            })?;
            let mut total = V::default();
            per_cpu.iter().for_each(|v| add(&mut total, v));
            Ok((k, total))
        })
        .collect()
}

/// `CallStats` summed element-wise (across CPUs).
fn add_call(total: &mut CallStats, v: &CallStats) {
    total.call.add(&v.call);
    total.tcp_ns += v.tcp_ns;
    add_hist(&mut total.tcp_hist, &v.tcp_hist);
}

/// Histogram `b` added bucket by bucket to `a`.
fn add_hist(a: &mut [u64; HIST_BUCKETS], b: &[u64; HIST_BUCKETS]) {
    for (a, b) in a.iter_mut().zip(b.iter()) {
        *a += b;
    }
}

/// The tracer's own health counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Events dropped because the stats map was full.
    pub stats_full: u64,
    /// Calls not timed because the in-flight map was full.
    pub inflight_full: u64,
    /// Exits whose enter happened before attach (not counted).
    pub unpaired_exits: u64,
    /// Events of traced threads not seen in a tracked system call since attach (not counted:
    /// the thread may have been inside a call that began before the trace).
    #[serde(default)]
    pub unknown_context: u64,
    /// Calls still in flight when the trace ended whose nested events were counted (the
    /// calls themselves are not): 0 unless a receive blocked with part of its data copied.
    #[serde(default)]
    pub straddling_calls: u64,
    /// Children that could not be followed (pid map full).
    pub pids_full: u64,
    /// Probed calls not counted because the entry/return map was full.
    pub entry_full: u64,
    /// Sampled spans dropped because the ring buffer was full (timeline only).
    pub ringbuf_full: u64,
    /// io_uring completions of traced tasks that overflowed their completion ring: their
    /// requests could not be counted.
    #[serde(default)]
    pub uring_overflow: u64,
    /// Context switches of traced threads whose time off CPU could not be timed (off-CPU
    /// map full).
    #[serde(default)]
    pub offcpu_full: u64,
    /// Switches into a traced thread that copytrace did not see (found at its next switch
    /// out): each is one off-CPU interval lost. The kernel counts no such miss; here it
    /// happened while other tracers attached raw programs to `sched_switch` or detached
    /// them, and under fork churn (where an independent tracer misses them too).
    #[serde(default)]
    pub offcpu_missed_switch_in: u64,
    /// Program runs the kernel skipped (a probe that fired while another probe's program
    /// ran on the CPU, see [`crate::trace::skipped`]): each is an event missing.
    #[serde(default)]
    pub skipped_runs: u64,
    /// Traced threads whose in-flight state went to the hash map because another live
    /// thread owned their slot of the in-flight array (tids equal modulo its length). Not a
    /// loss: each of their events costs one hash lookup more.
    #[serde(default)]
    pub inflight_shared: u64,
    /// Events recorded (sum of all row counts).
    pub events: u64,
}

impl Counters {
    /// Events that were lost (as opposed to deliberately not counted).
    pub fn lost(&self) -> u64 {
        self.stats_full
            + self.inflight_full
            + self.pids_full
            + self.entry_full
            + self.uring_overflow
            + self.offcpu_full
            + self.offcpu_missed_switch_in
            + self.skipped_runs
    }

    fn minus(&self, e: &Counters) -> Counters {
        Counters {
            stats_full: self.stats_full.saturating_sub(e.stats_full),
            inflight_full: self.inflight_full.saturating_sub(e.inflight_full),
            unpaired_exits: self.unpaired_exits.saturating_sub(e.unpaired_exits),
            unknown_context: self.unknown_context.saturating_sub(e.unknown_context),
            straddling_calls: self.straddling_calls,
            pids_full: self.pids_full.saturating_sub(e.pids_full),
            entry_full: self.entry_full.saturating_sub(e.entry_full),
            ringbuf_full: self.ringbuf_full.saturating_sub(e.ringbuf_full),
            uring_overflow: self.uring_overflow.saturating_sub(e.uring_overflow),
            offcpu_full: self.offcpu_full.saturating_sub(e.offcpu_full),
            offcpu_missed_switch_in: self
                .offcpu_missed_switch_in
                .saturating_sub(e.offcpu_missed_switch_in),
            skipped_runs: self.skipped_runs.saturating_sub(e.skipped_runs),
            inflight_shared: self.inflight_shared.saturating_sub(e.inflight_shared),
            events: self.events.saturating_sub(e.events),
        }
    }
}

/// All rows of the stats map at one moment, summed over CPUs.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub rows: BTreeMap<StatKey, Stats>,
    pub counters: Counters,
    /// Runs the kernel skipped, by program (only programs that skipped some).
    pub skipped: BTreeMap<String, u64>,
}

impl Snapshot {
    pub fn read(ebpf: &Ebpf) -> Result<Snapshot> {
        let mut rows = BTreeMap::new();
        let mut add = |(k, v): (StatKey, Stats)| rows.entry(k).or_insert(Stats::ZERO).add(&v);
        for (k, v) in summed_rows::<StatKey, Stats>(ebpf, "STATS", Stats::add)? {
            split_tcp_timed(k, v).into_iter().for_each(&mut add);
        }
        for (k, v) in summed_rows::<CallKey, CallStats>(ebpf, "CALLS", add_call)? {
            split_call(k, &v).into_iter().for_each(&mut add);
        }
        let counters_map: PerCpuArray<&MapData, u64> = map_ref(ebpf, "COUNTERS")?;
        let get = |idx: u32| -> Result<u64> {
            let v = counters_map
                .get(&idx, 0)
                .map_err(|source| crate::error::Error::Map {
                    map: "COUNTERS".into(),
                    source,
                })?;
            Ok(v.iter().sum())
        };
        let counters = Counters {
            stats_full: get(counter::STATS_FULL)?,
            inflight_full: get(counter::INFLIGHT_FULL)?,
            unpaired_exits: get(counter::UNPAIRED_EXIT)?,
            unknown_context: get(counter::UNKNOWN_CONTEXT)?,
            straddling_calls: 0,
            pids_full: get(counter::PIDS_FULL)?,
            entry_full: get(counter::ENTRY_FULL)?,
            ringbuf_full: get(counter::RINGBUF_FULL)?,
            uring_overflow: get(counter::URING_OVERFLOW)?,
            offcpu_full: get(counter::OFFCPU_FULL)?,
            offcpu_missed_switch_in: get(counter::OFFCPU_MISSED_SWITCH_IN)?,
            skipped_runs: 0,
            inflight_shared: get(counter::INFLIGHT_SHARED)?,
            events: rows.values().map(|s: &Stats| s.count).sum(),
        };
        let mut snap = Snapshot {
            rows,
            counters,
            skipped: skipped::runs(ebpf),
        };
        snap.counters.skipped_runs = snap.skipped.values().sum();
        snap.skipped.retain(|_, n| *n > 0);
        Ok(snap)
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let rows = self
            .rows
            .iter()
            .map(|(k, v)| {
                let d = earlier.rows.get(k).map_or(*v, |e| v.minus(e));
                (*k, d)
            })
            .filter(|(_, v)| v.count > 0)
            .collect();
        let skipped = self
            .skipped
            .iter()
            .map(|(p, n)| {
                let before = earlier.skipped.get(p).copied().unwrap_or(0);
                (p.clone(), n.saturating_sub(before))
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        Snapshot {
            rows,
            counters: self.counters.minus(&earlier.counters),
            skipped,
        }
    }

    /// Only the rows of thread `tid`.
    pub fn for_thread(&self, tid: u32) -> Snapshot {
        Snapshot {
            rows: self
                .rows
                .iter()
                .filter(|(k, _)| k.tid == tid)
                .map(|(k, v)| (*k, *v))
                .collect(),
            counters: self.counters,
            skipped: self.skipped.clone(),
        }
    }

    /// Rows of `path`, merged over threads and processes, grouped by (op, aux).
    pub fn by_op(&self, want_path: u16) -> BTreeMap<(u16, u32), Stats> {
        let mut out: BTreeMap<(u16, u32), Stats> = BTreeMap::new();
        for (k, v) in self.rows.iter().filter(|(k, _)| k.path == want_path) {
            out.entry((k.op, k.aux)).or_insert(Stats::ZERO).add(v);
        }
        out
    }

    /// Per-syscall summaries (all traced threads merged).
    pub fn syscalls(&self) -> Vec<Summary> {
        self.syscall_stats()
            .into_iter()
            .map(|(name, family, s)| Summary::new(name, family, s))
            .collect()
    }

    /// Per-syscall totals with their whole histograms: (name, family, stats). System calls by
    /// number (MSG_ZEROCOPY ones apart), then io_uring requests by opcode.
    pub fn syscall_stats(&self) -> Vec<(String, &'static str, Stats)> {
        self.by_op(path::SYSCALL)
            .into_iter()
            .map(|((op, bits), s)| {
                let mut label = syscall::NAMES
                    .get(op as usize)
                    .copied()
                    .unwrap_or("?")
                    .to_string();
                if bits & aux::ZEROCOPY_REQUESTED != 0 {
                    label.push_str(" +MSG_ZEROCOPY");
                }
                (label, family_name(aux::family(bits)), s)
            })
            .chain(
                self.by_op(path::URING_SEND)
                    .into_iter()
                    .map(|((op, _), s)| {
                        let label = uring::NAMES
                            .get(op as usize)
                            .copied()
                            .unwrap_or("io_uring ?");
                        // The io_uring tracepoints do not name the socket's family.
                        (label.to_string(), "-", s)
                    }),
            )
            .collect()
    }

    /// Socket-layer summaries for `path` ([`path::SOCK_SEND`] or [`path::SOCK_RECV`]).
    pub fn socket(&self, want_path: u16) -> Vec<Summary> {
        self.by_op(want_path)
            .into_iter()
            .map(|((proto, bits), s)| {
                let what = if want_path == path::SOCK_SEND {
                    "sock_sendmsg"
                } else {
                    "sock_recvmsg"
                };
                Summary::new(
                    format!("{what} {}", proto_name(proto)),
                    family_name(aux::family(bits)),
                    s,
                )
            })
            .collect()
    }

    /// Total over all rows of `path` with `op` (any thread, any aux).
    pub fn total(&self, want_path: u16, op: Option<u16>) -> Stats {
        self.sum(|k| k.path == want_path && op.is_none_or(|o| k.op == o))
    }

    /// Total over the rows whose key satisfies `pred`.
    pub fn sum(&self, pred: impl Fn(&StatKey) -> bool) -> Stats {
        let mut t = Stats::ZERO;
        for (_, v) in self.rows.iter().filter(|(k, _)| pred(k)) {
            t.add(v);
        }
        t
    }
}

/// One line of a breakdown table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub name: String,
    pub family: String,
    pub calls: u64,
    pub bytes: u64,
    pub errors: u64,
    pub total_ns: u64,
    /// Upper bounds of the log2 buckets holding p50 / p99 (absent when nothing was timed).
    pub p50_ns_le: Option<u64>,
    pub p99_ns_le: Option<u64>,
}

impl Summary {
    fn new(name: String, family: &'static str, s: Stats) -> Summary {
        Summary {
            name,
            family: family.to_string(),
            calls: s.count,
            bytes: s.bytes,
            errors: s.errors,
            total_ns: s.total_ns,
            p50_ns_le: s.quantile_upper_ns(0.50),
            p99_ns_le: s.quantile_upper_ns(0.99),
        }
    }

    pub fn avg_ns(&self) -> Option<u64> {
        (self.calls > 0 && self.total_ns > 0).then(|| self.total_ns / self.calls)
    }
}

pub fn family_name(f: u16) -> &'static str {
    match f as i32 {
        0 => "-",
        libc::AF_UNIX => "unix",
        libc::AF_INET => "inet",
        libc::AF_INET6 => "inet6",
        libc::AF_NETLINK => "netlink",
        libc::AF_PACKET => "packet",
        libc::AF_VSOCK => "vsock",
        _ => "other",
    }
}

pub fn proto_name(p: u16) -> String {
    match p as i32 {
        0 => "-".into(),
        libc::IPPROTO_TCP => "tcp".into(),
        libc::IPPROTO_UDP => "udp".into(),
        libc::IPPROTO_MPTCP => "mptcp".into(),
        libc::IPPROTO_SCTP => "sctp".into(),
        n => format!("proto{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tcp_timed_socket_row_is_a_socket_row_and_a_tcp_sendmsg_row() {
        let k = StatKey {
            tgid: 7,
            tid: 8,
            path: path::SOCK_SEND,
            op: 6,
            aux: 2 << aux::FAMILY_SHIFT | aux::TCP_TIMED,
        };
        let mut v = Stats {
            count: 3,
            bytes: 192,
            errors: 1,
            total_ns: 900,
            ..Stats::ZERO
        };
        v.hist[8] = 3;
        let rows = split_tcp_timed(k, v);
        assert_eq!(rows.len(), 2);
        let (sock, s) = rows[0];
        assert_eq!(
            (sock.path, sock.op, sock.aux),
            (path::SOCK_SEND, 6, 2 << aux::FAMILY_SHIFT)
        );
        assert_eq!((s.count, s.bytes, s.errors, s.total_ns), (3, 192, 1, 0));
        assert_eq!(s.hist.iter().sum::<u64>(), 0);
        let (tcp, t) = rows[1];
        assert_eq!((tcp.tgid, tcp.tid), (7, 8));
        assert_eq!(
            (tcp.path, tcp.op, tcp.aux),
            (path::TCP_SENDMSG, 0, aux::DERIVED)
        );
        assert_eq!(
            (t.count, t.bytes, t.errors, t.total_ns, t.hist[8]),
            (3, 192, 1, 900, 3)
        );
        // Without the flag: one row, untouched.
        let plain = StatKey {
            aux: 2 << aux::FAMILY_SHIFT,
            ..k
        };
        let rows = split_tcp_timed(plain, v);
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].0, rows[0].1.total_ns), (plain, 900));
    }

    #[test]
    fn a_calls_row_is_its_system_call_its_socket_row_and_the_tcp_sendmsg_it_timed() {
        let inet = 2 << aux::FAMILY_SHIFT;
        let k = CallKey {
            tgid: 7,
            tid: 8,
            op: syscall::SENDMSG,
            proto: 6,
            aux: inet | aux::ZEROCOPY_REQUESTED | aux::TCP_TIMED,
        };
        let mut v = CallStats::ZERO;
        v.call = Stats {
            count: 3,
            bytes: 192,
            errors: 1,
            total_ns: 3000,
            ..Stats::ZERO
        };
        v.call.hist[10] = 3;
        v.tcp_ns = 900;
        v.tcp_hist[8] = 3;
        let rows = split_call(k, &v);
        let keys: Vec<_> = rows.iter().map(|(k, _)| (k.path, k.op, k.aux)).collect();
        assert_eq!(
            keys,
            [
                (
                    path::SYSCALL,
                    syscall::SENDMSG,
                    inet | aux::ZEROCOPY_REQUESTED
                ),
                (path::SOCK_SEND, 6, inet),
                (path::TCP_SENDMSG, 0, aux::DERIVED),
            ]
        );
        assert!(rows.iter().all(|(k, _)| (k.tgid, k.tid) == (7, 8)));
        let counts: Vec<_> = rows
            .iter()
            .map(|(_, s)| (s.count, s.bytes, s.errors, s.total_ns, s.hist.iter().sum()))
            .collect();
        assert_eq!(
            counts,
            [(3, 192, 1, 3000, 3), (3, 192, 1, 0, 0), (3, 192, 1, 900, 3)]
        );
        assert_eq!((rows[0].1.hist[10], rows[2].1.hist[8]), (3, 3));

        // A receive, not timed in TCP: the call and its socket row.
        let recv = CallKey {
            op: syscall::RECVFROM,
            aux: inet,
            ..k
        };
        let rows = split_call(recv, &v);
        let keys: Vec<_> = rows.iter().map(|(k, _)| (k.path, k.op, k.aux)).collect();
        assert_eq!(
            keys,
            [
                (path::SYSCALL, syscall::RECVFROM, inet),
                (path::SOCK_RECV, 6, inet)
            ]
        );
        assert_eq!((rows[1].1.count, rows[1].1.total_ns), (3, 0));
    }

    fn stats(hist_entries: &[(usize, u64)]) -> Stats {
        let mut s = Stats::ZERO;
        for &(b, n) in hist_entries {
            s.hist[b] += n;
            s.count += n;
        }
        s
    }

    #[test]
    fn quantiles_come_from_bucket_upper_bounds() {
        // 90 events in [1024, 2047] ns, 10 in [65536, 131071] ns.
        let s = stats(&[(10, 90), (16, 10)]);
        assert_eq!(s.quantile_upper_ns(0.5), Some(2047));
        assert_eq!(s.quantile_upper_ns(0.9), Some(2047));
        assert_eq!(s.quantile_upper_ns(0.91), Some(131071));
        assert_eq!(s.quantile_upper_ns(0.99), Some(131071));
        assert_eq!(Stats::ZERO.quantile_upper_ns(0.5), None);
    }

    #[test]
    fn delta_and_grouping() {
        let k = |tid, op, aux| StatKey {
            tgid: 1,
            tid,
            path: path::SYSCALL,
            op,
            aux,
        };
        let mut a = Snapshot::default();
        let mut s1 = Stats::ZERO;
        s1.count = 2;
        s1.bytes = 100;
        a.rows.insert(k(1, syscall::SENDTO, 0), s1);
        let mut b = a.clone();
        let mut s2 = s1;
        s2.count = 5;
        s2.bytes = 400;
        b.rows.insert(k(1, syscall::SENDTO, 0), s2);
        b.rows.insert(k(2, syscall::SENDTO, 0), s1);
        b.rows
            .insert(k(2, syscall::SENDMSG, aux::ZEROCOPY_REQUESTED), s1);
        let d = b.since(&a);
        assert_eq!(d.total(path::SYSCALL, Some(syscall::SENDTO)).count, 3 + 2);
        assert_eq!(
            d.total(path::SYSCALL, Some(syscall::SENDTO)).bytes,
            300 + 100
        );
        let names: Vec<_> = d.syscalls().into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec!["sendmsg +MSG_ZEROCOPY", "sendto"]);
    }
}

//! The exporter's per-process series: what one process label's rows become as metrics, and
//! the bound on how many label sets there are.
//!
//! Every value is cumulative (counters and histograms only), so a series must never move
//! from one label set to another: admission is decided once per label set, the first time it
//! is seen, and kept for the exporter's life.
use std::collections::{BTreeMap, HashSet};

use copytrace_common::{HIST_BUCKETS, Stats};

use crate::trace::{Breakdown, PathDecision, Snapshot, Tier, breakdown::URING_NOTIFICATIONS};

/// The process label of everything folded once `--max-series` is reached. No thread name (at
/// most 15 bytes), cgroup path (starts with `/`) or pid can spell it.
pub const OTHER: &str = "(other processes)";
/// The other labels of a series folded when even `OTHER`'s own room is used up.
const OTHER_LABEL: &str = "(other)";

/// A per-process metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    SyscallCalls,
    SyscallBytes,
    SyscallErrors,
    SyscallDuration,
    PathEvents,
    PathBytes,
    PathSeconds,
    ZerocopyCompletions,
}

impl Family {
    pub const ALL: [Family; 8] = [
        Family::SyscallCalls,
        Family::SyscallBytes,
        Family::SyscallErrors,
        Family::SyscallDuration,
        Family::PathEvents,
        Family::PathBytes,
        Family::PathSeconds,
        Family::ZerocopyCompletions,
    ];

    /// Name (without the `_total` a counter gets), help, and the two labels after `process`.
    pub fn describe(self) -> (&'static str, &'static str, [&'static str; 2]) {
        match self {
            Family::SyscallCalls => (
                "copytrace_syscall_calls",
                "System calls that involved a socket (io_uring requests by opcode), by thread name or cgroup.",
                ["syscall", "family"],
            ),
            Family::SyscallBytes => (
                "copytrace_syscall_bytes",
                "Bytes those system calls returned (never the requested size).",
                ["syscall", "family"],
            ),
            Family::SyscallErrors => (
                "copytrace_syscall_errors",
                "Those system calls that returned an error.",
                ["syscall", "family"],
            ),
            Family::SyscallDuration => (
                "copytrace_syscall_duration_seconds",
                "Time inside those system calls, from the kernel's log2 buckets (le = 2^k - 1 ns).",
                ["syscall", "family"],
            ),
            Family::PathEvents => (
                "copytrace_path_events",
                "Events in each kernel path (calls, copies, context switches...), with the tier that saw them; copytrace_path_info lists every path, unavailable ones included.",
                ["path", "tier"],
            ),
            Family::PathBytes => (
                "copytrace_path_bytes",
                "Bytes through each kernel path (pages for page_pinning), where the tier sees bytes.",
                ["path", "tier"],
            ),
            Family::PathSeconds => (
                "copytrace_path_seconds",
                "Time inside each kernel path, where the tier measures it.",
                ["path", "tier"],
            ),
            Family::ZerocopyCompletions => (
                "copytrace_zerocopy_completions",
                "Zero-copy completions. via=\"io_uring\": one per SEND_ZC notification, result from its usage report. via=\"msg_zerocopy\": one per zero-copy skb reference released (msg_zerocopy_callback), result=\"copied\" when that reference's pages had been copied (skb_copy_ubufs); the kernel marks a notification SO_EE_CODE_ZEROCOPY_COPIED when any of its references was, so these are not notifications.",
                ["result", "via"],
            ),
        }
    }

    pub fn is_histogram(self) -> bool {
        self == Family::SyscallDuration
    }

    /// Series Prometheus stores for one label set: a histogram's buckets, +Inf, sum, count.
    pub fn series_cost(self) -> usize {
        if self.is_histogram() {
            HIST_LE_POWERS.len() + 3
        } else {
            1
        }
    }
}

/// Histogram bucket bounds as powers of two: le = 2^k - 1 ns (1 µs to 1.07 s, ×4 apart). The
/// kernel's bucket k holds [2^k, 2^(k+1) - 1] ns, so each bound is exact.
pub const HIST_LE_POWERS: [u32; 11] = [10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];

/// One series' identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    pub family: Family,
    pub process: String,
    pub labels: [String; 2],
}

/// A cumulative value: a count, or a histogram in the kernel's log2 buckets.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Count(u64),
    Histogram {
        sum_ns: u64,
        buckets: Box<[u64; HIST_BUCKETS]>,
    },
}

/// Series and their values, as [`project`] makes them.
pub type Series = Vec<(SeriesKey, Value)>;

impl Value {
    fn add(&mut self, o: &Value) {
        match (self, o) {
            (Value::Count(a), Value::Count(b)) => *a += b,
            (
                Value::Histogram { sum_ns, buckets },
                Value::Histogram {
                    sum_ns: s2,
                    buckets: b2,
                },
            ) => {
                *sum_ns += s2;
                for (a, b) in buckets.iter_mut().zip(b2.iter()) {
                    *a += b;
                }
            }
            // One family has one kind of value; keys include the family.
            _ => {}
        }
    }

    pub fn count(&self) -> u64 {
        match self {
            Value::Count(n) => *n,
            Value::Histogram { buckets, .. } => buckets.iter().sum(),
        }
    }

    /// (le in seconds, events in this bucket and not an earlier one) for [`HIST_LE_POWERS`],
    /// then +Inf: the form the client's encoder takes (it writes them cumulated).
    pub fn bucket_counts(&self) -> Vec<(f64, u64)> {
        let Value::Histogram { buckets, .. } = self else {
            return Vec::new();
        };
        let mut from = 0;
        let mut out: Vec<(f64, u64)> = HIST_LE_POWERS
            .iter()
            .map(|&k| {
                let le_ns = (1u64 << k) - 1;
                let n = buckets[from..k as usize].iter().sum();
                from = k as usize;
                (le_ns as f64 / 1e9, n)
            })
            .collect();
        out.push((f64::INFINITY, buckets[from..].iter().sum()));
        out
    }
}

/// A stable, PromQL-friendly id for a breakdown path ("user→kernel copy" → "user_kernel_copy").
pub fn path_id(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

/// What the rows of one process label add up to, as series.
pub fn project(process: &str, snap: &Snapshot, decisions: &[PathDecision]) -> Series {
    let key = |family, a: &str, b: &str| SeriesKey {
        family,
        process: process.to_string(),
        labels: [a.to_string(), b.to_string()],
    };
    let mut out = Vec::new();
    for (name, fam, s) in snap.syscall_stats() {
        out.push((key(Family::SyscallCalls, &name, fam), Value::Count(s.count)));
        out.push((key(Family::SyscallBytes, &name, fam), Value::Count(s.bytes)));
        out.push((
            key(Family::SyscallErrors, &name, fam),
            Value::Count(s.errors),
        ));
        out.push((key(Family::SyscallDuration, &name, fam), histogram(&s)));
    }
    for p in Breakdown::compute(snap, decisions).paths {
        let Some(tier) = p.tier.filter(|t| *t != Tier::Unavailable) else {
            continue;
        };
        if p.calls == 0 {
            continue;
        }
        let (id, tier) = (path_id(&p.path), tier.as_str());
        out.push((key(Family::PathEvents, &id, tier), Value::Count(p.calls)));
        if let Some(b) = p.bytes {
            out.push((key(Family::PathBytes, &id, tier), Value::Count(b)));
        }
        if let Some(ns) = p.total_ns.filter(|ns| *ns > 0) {
            // Whole nanoseconds; the encoder divides.
            out.push((key(Family::PathSeconds, &id, tier), Value::Count(ns)));
        }
        completions(&p.path, snap, &mut |r, via, n| {
            out.push((key(Family::ZerocopyCompletions, r, via), Value::Count(n)));
        });
    }
    out
}

/// Completions split by outcome, for the two completion paths the probe tiers see.
fn completions(path_name: &str, snap: &Snapshot, emit: &mut dyn FnMut(&str, &str, u64)) {
    use copytrace_common::{completion, path};
    let (op, via, copied_when) = match path_name {
        crate::trace::planner::names::COMPLETIONS => (completion::SOCKET, "msg_zerocopy", 0),
        URING_NOTIFICATIONS => (completion::IO_URING, "io_uring", 0),
        _ => return,
    };
    // MSG_ZEROCOPY: aux is the callback's `success`, per skb reference released (false for
    // one whose pages were copied); a notification covers several references and says
    // "copied" when any of them was, so the count is of references, not notifications.
    // SEND_ZC: aux is "sent by reference", per notification (0 when it says copied).
    for (result, copied) in [("copied", true), ("not_copied", false)] {
        let n = snap
            .sum(|k| {
                k.path == path::ZC_COMPLETION
                    && k.op == op
                    && k.tgid != 0
                    && (k.aux == copied_when) == copied
            })
            .count;
        if n > 0 {
            emit(result, via, n);
        }
    }
}

fn histogram(s: &Stats) -> Value {
    Value::Histogram {
        sum_ns: s.total_ns,
        buckets: Box::new(s.hist),
    }
}

/// The bound on label sets: a new label set gets its own series if it fits in the budget;
/// otherwise it goes to `process="(other processes)"` with its other labels, if that fits in
/// a tenth of the budget, and otherwise to the all-`(other)` series of its family, whose room
/// is reserved from the start. Room only ever gets used up, so a label set refused once is
/// refused for good and its folded values never move back. Totals over all series stay exact;
/// only the split by label is lost.
#[derive(Debug)]
pub struct Cap {
    own_budget: usize,
    other_budget: usize,
    own_used: usize,
    other_used: usize,
    admitted: HashSet<SeriesKey>,
}

impl Cap {
    /// `max` series in all, `fixed` of which the exporter always emits.
    pub fn new(max: usize, fixed: usize) -> Result<Cap, String> {
        let reserve: usize = Family::ALL.iter().map(|f| f.series_cost()).sum();
        let Some(room) = max.checked_sub(fixed + reserve).filter(|r| *r > 0) else {
            return Err(format!(
                "--max-series {max} leaves no room for processes: copytrace always exports \
                 {fixed} series and keeps {reserve} for folded ones; give at least {}",
                fixed + reserve + Family::SyscallDuration.series_cost() + 3
            ));
        };
        let other_budget = room / 10;
        Ok(Cap {
            own_budget: room - other_budget,
            other_budget,
            own_used: 0,
            other_used: 0,
            admitted: HashSet::new(),
        })
    }

    /// Where `key`'s values go, and whether that is a fold.
    pub fn target(&mut self, key: &SeriesKey) -> (SeriesKey, bool) {
        if self.admitted.contains(key) {
            return (key.clone(), false);
        }
        let cost = key.family.series_cost();
        if self.own_used + cost <= self.own_budget {
            self.own_used += cost;
            self.admitted.insert(key.clone());
            return (key.clone(), false);
        }
        let other = SeriesKey {
            process: OTHER.to_string(),
            ..key.clone()
        };
        if self.admitted.contains(&other) {
            return (other, true);
        }
        if self.other_used + cost <= self.other_budget {
            self.other_used += cost;
            self.admitted.insert(other.clone());
            return (other, true);
        }
        let all_other = SeriesKey {
            family: key.family,
            process: OTHER.to_string(),
            labels: [OTHER_LABEL.to_string(), OTHER_LABEL.to_string()],
        };
        (all_other, true)
    }
}

/// Cumulative series: what reaped threads left (already placed by the cap) plus the live
/// threads' current rows.
#[derive(Debug)]
pub struct Ledger {
    pub cap: Cap,
    carried: BTreeMap<SeriesKey, Value>,
}

impl Ledger {
    pub fn new(cap: Cap) -> Ledger {
        Ledger {
            cap,
            carried: BTreeMap::new(),
        }
    }

    /// Place `series` through the cap and add them to `into`; true if any was folded.
    fn place(&mut self, series: Series, into: &mut BTreeMap<SeriesKey, Value>) -> bool {
        let mut folded = false;
        for (k, v) in series {
            let (t, f) = self.cap.target(&k);
            folded |= f;
            match into.get_mut(&t) {
                Some(e) => e.add(&v),
                None => {
                    into.insert(t, v);
                }
            }
        }
        folded
    }

    /// Keep the final values of threads that exited (their rows are about to be deleted).
    pub fn carry(&mut self, series: Series) -> bool {
        let mut carried = std::mem::take(&mut self.carried);
        let folded = self.place(series, &mut carried);
        self.carried = carried;
        folded
    }

    /// Every series now: carried plus `live`. Also says which of the `live` groups had a
    /// series folded (by index).
    pub fn current(&mut self, live: Vec<Series>) -> (BTreeMap<SeriesKey, Value>, Vec<bool>) {
        let mut out = self.carried.clone();
        let folded = live.into_iter().map(|g| self.place(g, &mut out)).collect();
        (out, folded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(family: Family, process: &str, a: &str) -> SeriesKey {
        SeriesKey {
            family,
            process: process.into(),
            labels: [a.into(), "inet".into()],
        }
    }

    #[test]
    fn path_ids_are_promql_friendly() {
        assert_eq!(path_id("user→kernel copy"), "user_kernel_copy");
        assert_eq!(
            path_id("page-cache attach (sendfile)"),
            "page_cache_attach_sendfile"
        );
        assert_eq!(path_id("syscalls (send)"), "syscalls_send");
        assert_eq!(path_id("tcp_sendmsg"), "tcp_sendmsg");
    }

    #[test]
    fn completions_split_into_copied_and_not_copied_where_a_tier_sees_them() {
        use copytrace_common::{StatKey, completion, path};

        use crate::trace::planner::names;
        let row = |op, aux, n| {
            let k = StatKey {
                tgid: 7,
                tid: 7,
                path: path::ZC_COMPLETION,
                op,
                aux,
            };
            let v = Stats {
                count: n,
                ..Stats::ZERO
            };
            (k, v)
        };
        let mut snap = Snapshot::default();
        // MSG_ZEROCOPY: aux is the callback's `success`; SEND_ZC: "sent by reference".
        for (k, v) in [
            row(completion::SOCKET, 1, 3),
            row(completion::SOCKET, 0, 2),
            row(completion::IO_URING, 0, 4),
            row(completion::IO_URING, 1, 6),
        ] {
            snap.rows.insert(k, v);
        }
        let decide = |path: &str, tier| PathDecision {
            path: path.to_string(),
            tier,
            target: None,
            attempts: Vec::new(),
            note: None,
        };
        let got = |decisions: &[PathDecision]| -> Vec<(String, String, u64)> {
            project("p", &snap, decisions)
                .into_iter()
                .filter(|(k, _)| k.family == Family::ZerocopyCompletions)
                .map(|(k, v)| (k.labels[0].clone(), k.labels[1].clone(), v.count()))
                .collect()
        };
        let seen = [
            decide(names::COMPLETIONS, Tier::Fentry),
            decide(names::URING, Tier::Tracepoint),
        ];
        let mut g = got(&seen);
        g.sort();
        let want = [
            ("copied", "io_uring", 4),
            ("copied", "msg_zerocopy", 2),
            ("not_copied", "io_uring", 6),
            ("not_copied", "msg_zerocopy", 3),
        ]
        .map(|(a, b, n)| (a.to_string(), b.to_string(), n));
        assert_eq!(g, want);
        // Where no tier sees completions, there are none (the info metric says why).
        let unseen = [
            decide(names::COMPLETIONS, Tier::Unavailable),
            decide(names::URING, Tier::Unavailable),
        ];
        assert!(got(&unseen).is_empty());
    }

    #[test]
    fn histogram_buckets_are_exact_at_their_bounds() {
        let mut buckets = [0u64; HIST_BUCKETS];
        buckets[0] = 1; // 0 or 1 ns
        buckets[9] = 2; // [512, 1023] ns: under 1023 ns
        buckets[10] = 3; // [1024, 2047] ns: above 1023 ns, under 4095 ns
        buckets[30] = 4; // [2^30, 2^31 - 1] ns: above the last bound
        buckets[31] = 5; // clamped: only +Inf
        let v = Value::Histogram {
            sum_ns: 0,
            buckets: Box::new(buckets),
        };
        let c = v.bucket_counts();
        assert_eq!(c.len(), HIST_LE_POWERS.len() + 1);
        assert_eq!(c[0], (1023e-9, 3));
        assert_eq!(c[1], (4095e-9, 3));
        assert!(c[2..c.len() - 1].iter().all(|(_, n)| *n == 0));
        assert_eq!(c[c.len() - 1], (f64::INFINITY, 9));
        assert_eq!(c.iter().map(|(_, n)| n).sum::<u64>(), v.count());
    }

    #[test]
    fn the_cap_admits_what_fits_and_folds_for_good() {
        // 21 reserved for the all-other series, 5 fixed: room 24, other's tenth 2, own 22.
        let mut cap = Cap::new(50, 5).unwrap();
        let h = k(Family::SyscallDuration, "a", "sendto");
        assert_eq!(cap.target(&h), (h.clone(), false));
        let a = k(Family::SyscallBytes, "a", "sendto");
        assert_eq!(cap.target(&a), (a.clone(), false));
        // 15 of 22 used: a second histogram (14) does not fit, nor in other's 2.
        let h2 = k(Family::SyscallDuration, "b", "sendto");
        let (t, folded) = cap.target(&h2);
        assert!(folded);
        assert_eq!(
            (t.process.as_str(), t.labels[0].as_str()),
            (OTHER, OTHER_LABEL)
        );
        // Small series still fit.
        let b = k(Family::SyscallBytes, "b", "sendto");
        assert_eq!(cap.target(&b), (b.clone(), false));
        for i in 0..6 {
            let x = k(Family::SyscallCalls, &format!("x{i}"), "sendto");
            assert!(!cap.target(&x).1);
        }
        // Own is full (22): the next goes to other with its labels, while other has room.
        let y = k(Family::SyscallBytes, "y", "sendto");
        let (t, folded) = cap.target(&y);
        assert!(folded);
        assert_eq!(
            (t.process.as_str(), t.labels[0].as_str()),
            (OTHER, "sendto")
        );
        // Decisions stick, and a refused label set stays refused.
        assert_eq!(cap.target(&a), (a.clone(), false));
        assert_eq!(cap.target(&y).0, t);
        assert_eq!(cap.target(&h2).0.labels[0], OTHER_LABEL);
        assert!(Cap::new(26, 5).is_err());
    }

    #[test]
    fn carried_and_live_values_add_up_across_folds() {
        let mut ledger = Ledger::new(Cap::new(30, 5).unwrap());
        let a = k(Family::SyscallBytes, "a", "sendto");
        let b = k(Family::SyscallBytes, "b", "sendto");
        let c = k(Family::SyscallBytes, "c", "sendto");
        assert!(!ledger.carry(vec![(a.clone(), Value::Count(100))]));
        let (now, folded) = ledger.current(vec![
            vec![(a.clone(), Value::Count(5))],
            vec![(b.clone(), Value::Count(7))],
            vec![(c.clone(), Value::Count(11))],
        ]);
        assert_eq!(folded, vec![false, false, false]);
        let total: u64 = now.values().map(Value::count).sum();
        assert_eq!(total, 123);
        // The room is 4 (30 - 5 - 21): own 4, other 0. A fifth process folds.
        let d = k(Family::SyscallBytes, "d", "sendto");
        let e = k(Family::SyscallBytes, "e", "sendto");
        let (now, folded) = ledger.current(vec![
            vec![(d.clone(), Value::Count(1))],
            vec![(e.clone(), Value::Count(2))],
        ]);
        assert_eq!(folded, vec![false, true]);
        assert_eq!(now.values().map(Value::count).sum::<u64>(), 100 + 1 + 2);
        assert!(now.keys().all(|k| k.process != "e"));
    }
}

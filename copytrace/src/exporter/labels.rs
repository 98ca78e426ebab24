//! The `process` label of a thread's rows: its name, its cgroup, or (opt-in) its pid.
//!
//! A thread's label is decided once, when its first rows are seen, from what the kernel
//! captured when it created them (`TASKS`): a short-lived process is usually gone before the
//! exporter reads its rows. Keeping one label per thread keeps its series monotonic.
use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use copytrace_common::TaskInfo;

/// The label of rows no traced thread can be named for (tgid 0: softirq work on behalf of
/// another task).
pub const UNATTRIBUTED: &str = "(unattributed)";
/// The label of a thread gone before its name could be read, with no name captured.
pub const UNKNOWN: &str = "(unknown)";

/// What the `process` label holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LabelBy {
    /// The thread's name (`comm`), as `ps -L` and bpftrace's `comm` show it.
    Comm,
    /// The thread's cgroup v2 path under the cgroup root (e.g. /system.slice/nginx.service).
    Cgroup,
    /// The process id: one label set per process, so cardinality grows with churn (the cap
    /// then folds the excess).
    Pid,
}

/// A known thread: its label, and whether any of its series was folded (counted once).
#[derive(Debug)]
struct Known {
    label: String,
    folded: bool,
}

/// Labels of the threads with rows, until they are reaped.
#[derive(Debug)]
pub struct Labeler {
    by: LabelBy,
    threads: HashMap<u32, Known>,
    cgroup_root: PathBuf,
    /// cgroup id → path, for ids seen since the last [`Labeler::prune_cgroups`].
    cgroups: HashMap<u64, String>,
}

/// A thread name as the kernel stores it (NUL-padded) → text.
pub fn comm_text(comm: &[u8]) -> String {
    let end = comm.iter().position(|b| *b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

impl Labeler {
    pub fn new(by: LabelBy) -> Labeler {
        Labeler {
            by,
            threads: HashMap::new(),
            cgroup_root: cgroup2_root().unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup")),
            cgroups: HashMap::new(),
        }
    }

    pub fn knows(&self, tid: u32) -> bool {
        self.threads.contains_key(&tid)
    }

    /// Known threads that have exited (no /proc entry): decided *before* their rows are read,
    /// so nothing can be added to them after the read that is reaped.
    pub fn exited(&self) -> HashSet<u32> {
        self.threads
            .keys()
            .copied()
            .filter(|tid| !Path::new(&format!("/proc/{tid}")).exists())
            .collect()
    }

    /// The label of `tid` (of process `tgid`), deciding it now if it is new.
    pub fn label(&mut self, tgid: u32, tid: u32, tasks: &HashMap<u32, TaskInfo>) -> String {
        if tgid == 0 {
            return UNATTRIBUTED.to_string();
        }
        if let Some(k) = self.threads.get(&tid) {
            return k.label.clone();
        }
        let label = match self.by {
            LabelBy::Pid => tgid.to_string(),
            LabelBy::Comm => match tasks.get(&tid) {
                Some(t) => comm_text(&t.comm),
                None => crate::trace::process::try_comm(tid).unwrap_or_else(|| UNKNOWN.to_string()),
            },
            LabelBy::Cgroup => {
                let id = tasks.get(&tid).map(|t| t.cgroup_id).or_else(|| {
                    let p = proc_cgroup(tid)?;
                    std::fs::metadata(self.cgroup_root.join(p.trim_start_matches('/')))
                        .ok()
                        .map(|m| m.ino())
                });
                id.map_or_else(|| UNKNOWN.to_string(), |id| self.cgroup_path(id))
            }
        };
        self.threads.insert(
            tid,
            Known {
                label: label.clone(),
                folded: false,
            },
        );
        label
    }

    /// Mark `tid` as having a folded series; true the first time.
    pub fn mark_folded(&mut self, tid: u32) -> bool {
        match self.threads.get_mut(&tid) {
            Some(k) if !k.folded => {
                k.folded = true;
                true
            }
            _ => false,
        }
    }

    /// Forget reaped threads.
    pub fn forget(&mut self, tids: &HashSet<u32>) {
        self.threads.retain(|tid, _| !tids.contains(tid));
    }

    /// Drop cached cgroup paths (called after each collection: ids are looked up again).
    pub fn prune_cgroups(&mut self) {
        self.cgroups.clear();
    }

    /// The path of cgroup `id` (its directory's inode) under the root; "(cgroup N)" when the
    /// cgroup is already gone.
    fn cgroup_path(&mut self, id: u64) -> String {
        if self.cgroups.is_empty() {
            walk_cgroups(&self.cgroup_root, &self.cgroup_root, &mut self.cgroups);
        }
        self.cgroups
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("(cgroup {id})"))
    }
}

/// Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on
/// hybrid systems).
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, kind) = (f.next()?, f.next()?, f.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(dir))
    })
}

/// Every cgroup directory under `root` by inode, as "/a/b".
fn walk_cgroups(root: &Path, dir: &Path, out: &mut HashMap<u64, String>) {
    if let Ok(md) = std::fs::metadata(dir) {
        let rel = dir.strip_prefix(root).unwrap_or(dir);
        out.insert(md.ino(), format!("/{}", rel.display()));
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk_cgroups(root, &e.path(), out);
        }
    }
}

/// The cgroup v2 path of `tid` ("0::/a/b" in /proc/TID/cgroup).
fn proc_cgroup(tid: u32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{tid}/cgroup")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_kernel_capture_and_stick() {
        let mut l = Labeler::new(LabelBy::Comm);
        let mut tasks = HashMap::new();
        let mut comm = [0u8; 16];
        comm[..6].copy_from_slice(b"nginx:");
        tasks.insert(5_000_000, TaskInfo { comm, cgroup_id: 1 });
        assert_eq!(l.label(5_000_000, 5_000_000, &tasks), "nginx:");
        // Decided once: a later capture does not move the thread's series.
        tasks.clear();
        assert_eq!(l.label(5_000_000, 5_000_000, &tasks), "nginx:");
        assert_eq!(l.label(0, 0, &tasks), UNATTRIBUTED);
        // Not captured and not in /proc (tids above PID_MAX_LIMIT, 2^22, never exist).
        assert_eq!(l.label(5_000_001, 5_000_001, &tasks), UNKNOWN);
        assert!(l.exited().contains(&5_000_000));
        assert!(l.mark_folded(5_000_000));
        assert!(!l.mark_folded(5_000_000));
        l.forget(&l.exited());
        assert!(!l.knows(5_000_000));
    }

    #[test]
    fn pid_labels_are_the_tgid() {
        let mut l = Labeler::new(LabelBy::Pid);
        assert_eq!(l.label(12, 13, &HashMap::new()), "12");
    }
}

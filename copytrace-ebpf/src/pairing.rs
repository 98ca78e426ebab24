//! Entry/return pairing for the probe tiers: the entry saves a timestamp (and an argument the
//! return needs) in the `ENTRY` map; the return takes it out.
use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id};
use copytrace_common::{EntryKey, EntryVal, counter};

use crate::{
    ENTRY,
    filter::counts,
    rows::{bump, key, now, record},
};

#[inline(always)]
pub fn entry_key(pid_tgid: u64, path: u16) -> EntryKey {
    EntryKey {
        pid_tgid,
        path: path as u64,
    }
}

/// Key for paths that run in softirq context, where the "current" task may be the idle task
/// (pid 0 on every CPU): the CPU disambiguates, and no migration happens with BHs disabled.
#[inline(always)]
pub fn entry_key_cpu(pid_tgid: u64, path: u16) -> EntryKey {
    // SAFETY: helper without preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() } as u64;
    EntryKey {
        pid_tgid,
        path: path as u64 | (cpu << 16),
    }
}

#[inline(always)]
pub fn pair_enter(k: &EntryKey, arg: u64) {
    let v = EntryVal {
        start_ns: now(),
        arg,
    };
    if ENTRY.insert(k, v, 0).is_err() {
        bump(counter::ENTRY_FULL);
    }
}

/// The entry saved for `k` (removed) and the time since.
#[inline(always)]
pub fn pair_exit(k: &EntryKey) -> Option<(EntryVal, u64)> {
    let p = ENTRY.get_ptr(k)?;
    // SAFETY: valid map value, copied before removal.
    let v = unsafe { *p };
    let _ = ENTRY.remove(k);
    Some((v, now().saturating_sub(v.start_ns)))
}

/// A function on `path` entered: remember when, if the event counts.
#[inline(always)]
pub fn enter_counted(path: u16) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if counts(pid_tgid) {
        pair_enter(&entry_key(pid_tgid, path), 0);
    }
}

/// That function returned `ret` (bytes when positive, an error when negative): one row event
/// with the time inside.
#[inline(always)]
pub fn exit_with_bytes(path: u16, ret: i64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some((_, ns)) = pair_exit(&entry_key(pid_tgid, path)) {
        let bytes = if ret > 0 { ret as u64 } else { 0 };
        record(&key(pid_tgid, path, 0, 0), 1, bytes, ret < 0, Some(ns));
    }
}

//! Who counts and when: the process filter, the trace window, and the traced thread's
//! in-flight system call.
use aya_ebpf::helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm};
use copytrace_common::{
    InFlight, MAX_CONFIG_COMMS, MAX_CONFIG_PIDS, StatKey, counter, filter, inflight, syscall,
};

use crate::{
    ARMED, CONFIG, PIDS,
    rows::{bump, config_u32, key},
    slots,
};

#[inline(always)]
pub fn armed() -> bool {
    ARMED.get(0).is_some_and(|v| *v != 0)
}

/// Is `tgid` one of the traced processes? The config list first (no map lookup: this runs
/// for every system call on the machine), the map only when children are followed.
#[inline(always)]
fn pid_listed(tgid: u32) -> bool {
    let mut i = 0;
    while i < MAX_CONFIG_PIDS {
        // SAFETY: reading a global. The configuration is read-only to the programs, so the
        // verifier knows every slot's value and drops the compares of the empty ones.
        let want = unsafe { core::ptr::read_volatile(&CONFIG.pids[i]) };
        if want != 0 && want == tgid {
            return true;
        }
        i += 1;
    }
    config_u32(&CONFIG.pids_in_map) != 0 && PIDS.get_ptr(tgid).is_some()
}

/// Is the current thread's name one of the configured ones? Compared as two u64 words each.
#[inline(always)]
fn comm_listed() -> bool {
    let Ok(comm) = bpf_get_current_comm() else {
        return false;
    };
    let word = |c: &[u8; 16], i: usize| {
        u64::from_ne_bytes([
            c[i],
            c[i + 1],
            c[i + 2],
            c[i + 3],
            c[i + 4],
            c[i + 5],
            c[i + 6],
            c[i + 7],
        ])
    };
    let (a, b) = (word(&comm, 0), word(&comm, 8));
    let n = config_u32(&CONFIG.n_comms) as usize;
    let mut i = 0;
    while i < MAX_CONFIG_COMMS && i < n {
        // SAFETY: reading a global.
        let want = unsafe { core::ptr::read_volatile(&CONFIG.comms[i]) };
        if word(&want, 0) == a && word(&want, 8) == b {
            return true;
        }
        i += 1;
    }
    false
}

/// Could a task of process `tgid` (not the current task) be one we trace? Only the process
/// filters are checked: name and cgroup are the current task's to read, so a task that
/// passes here may still be filtered out by them.
#[inline(always)]
pub fn maybe_traced(tgid: u32) -> bool {
    if tgid == config_u32(&CONFIG.self_tgid) {
        return false;
    }
    config_u32(&CONFIG.filter_mode) != filter::PIDS || pid_listed(tgid)
}

/// Is the current task one we trace?
#[inline(always)]
pub fn traced(pid_tgid: u64) -> bool {
    if !maybe_traced((pid_tgid >> 32) as u32) {
        return false;
    }
    if config_u32(&CONFIG.filter_mode) == filter::COMMS && !comm_listed() {
        return false;
    }
    // SAFETY: reading a global.
    let cgroup = unsafe { core::ptr::read_volatile(&CONFIG.cgroup_id) };
    // SAFETY: helper without preconditions.
    if cgroup != 0 && unsafe { bpf_get_current_cgroup_id() } != cgroup {
        return false;
    }
    true
}

/// Does an event of the current thread fall inside the trace window? Inside a tracked call:
/// when the call entered while armed (so every layer of a call counts, or none). Between
/// calls: when armed now. A traced thread not seen since attach may be inside a call that
/// began before; its events are not counted (and counted as such). Returns the thread's
/// entry and whether it is inside a call.
#[inline(always)]
pub fn window(pid_tgid: u64) -> Option<(*mut InFlight, bool)> {
    // The filter first: comparing with the configured pids costs less than a hash lookup
    // that misses, and most events on a machine are not the traced process's.
    if !traced(pid_tgid) {
        return None;
    }
    let Some(f) = slots::get(pid_tgid) else {
        if armed() {
            bump(counter::UNKNOWN_CONTEXT);
        }
        return None;
    };
    // SAFETY: valid map value owned by the current task.
    let state = unsafe { (*f).state };
    let in_call = state & inflight::ACTIVE != 0;
    let counts = if in_call {
        state & inflight::IN_WINDOW != 0
    } else {
        armed()
    };
    counts.then_some((f, in_call))
}

/// [`window`] for probe-tier events nested in a call: also marks the call as having counted
/// something (user space waits for such calls to exit when it disarms).
#[inline(always)]
pub fn counts(pid_tgid: u64) -> bool {
    let Some((f, in_call)) = window(pid_tgid) else {
        return false;
    };
    if in_call {
        // SAFETY: valid map value owned by the current task.
        unsafe { (*f).state |= inflight::NESTED };
    }
    true
}

/// Is the current task inside a tracked system call that counts? Returns its entry.
#[inline(always)]
pub fn in_call(pid_tgid: u64) -> Option<*mut InFlight> {
    if !traced(pid_tgid) {
        return None;
    }
    let f = slots::get(pid_tgid)?;
    let counted = inflight::ACTIVE | inflight::IN_WINDOW;
    // SAFETY: valid map value.
    (unsafe { (*f).state } & counted == counted).then_some(f)
}

/// [`in_call`], for send-type calls only.
#[inline(always)]
pub fn in_send(pid_tgid: u64) -> Option<*mut InFlight> {
    let f = in_call(pid_tgid)?;
    // SAFETY: valid map value.
    syscall::is_send(unsafe { (*f).op }).then_some(f)
}

/// Key for events that may run in another task's context (counted while armed): the traced
/// task's own key, or tgid 0 ("not attributable") when the current task is not traced.
#[inline(always)]
pub fn attributed_key(pid_tgid: u64, path: u16, aux: u32) -> StatKey {
    if traced(pid_tgid) {
        key(pid_tgid, path, 0, aux)
    } else {
        key(0, path, 0, aux)
    }
}

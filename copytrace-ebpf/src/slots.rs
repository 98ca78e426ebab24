//! Where a traced thread's in-flight state lives: its slot in an array indexed by its tid,
//! or, when another live thread owns that slot, the `INFLIGHT` hash map.
//!
//! Why an array: the verifier inlines an array lookup (a bounds check and an address), where
//! a hash lookup is a helper call that hashes the key and walks a bucket. Each traced send
//! looks its state up three times (entry, tcp_sendmsg, exit); the array saves 25–45 ns per
//! program run on this project's test VM, about 70 ns per traced 64 B send.
//!
//! Two traced threads whose tids are equal modulo the array's length may claim one slot at
//! once on two CPUs. Rust has no compare-and-exchange on the BPF target, so the claim is an
//! insert into `SLOT_OWNERS` that fails if the slot's key exists (the kernel does it under
//! the bucket's lock): once per thread, not per call. The owner frees its slot when it exits
//! (`sched`). Only the owner touches `call`.
use aya_ebpf::bindings::BPF_NOEXIST;
use copytrace_common::{InFlight, InFlightSlot, counter};

use crate::{
    CONFIG, INFLIGHT, INFLIGHT_SLOTS, SLOT_OWNERS,
    rows::{bump, config_u32},
};

/// The array slot for `pid_tgid`'s thread, whoever owns it, and its index.
#[inline(always)]
fn slot(pid_tgid: u64) -> Option<(u32, *mut InFlightSlot)> {
    let idx = pid_tgid as u32 & config_u32(&CONFIG.inflight_slot_mask);
    Some((idx, INFLIGHT_SLOTS.get_ptr_mut(idx)?))
}

/// The current thread's in-flight state, if it has one.
#[inline(always)]
pub fn get(pid_tgid: u64) -> Option<*mut InFlight> {
    if let Some((_, s)) = slot(pid_tgid) {
        // SAFETY: a valid map value; `owner` is only ever set to a live thread's pid_tgid, by
        // that thread, so equality means the current thread owns `call`.
        unsafe {
            if core::ptr::read_volatile(&(*s).owner) == pid_tgid {
                return Some(&raw mut (*s).call);
            }
        }
    }
    INFLIGHT.get_ptr_mut(pid_tgid)
}

/// Give the current thread (which has no state yet: [`get`] returned `None`) the state `v`:
/// in its slot if free, else in the hash map. False when the hash map is full.
#[inline(always)]
pub fn insert(pid_tgid: u64, v: &InFlight) -> bool {
    if let Some((idx, s)) = slot(pid_tgid)
        && SLOT_OWNERS
            .insert(idx, pid_tgid, BPF_NOEXIST as u64)
            .is_ok()
    {
        // SAFETY: the slot is the current thread's from now on; `call` before `owner`, so
        // the owner never reads another thread's state as its own.
        unsafe {
            (*s).call = *v;
            core::ptr::write_volatile(&mut (*s).owner, pid_tgid);
        }
        return true;
    }
    bump(counter::INFLIGHT_SHARED);
    INFLIGHT.insert(pid_tgid, v, 0).is_ok()
}

/// The current thread exits: free its slot, or delete its hash entry.
#[inline(always)]
pub fn remove(pid_tgid: u64) {
    if let Some((idx, s)) = slot(pid_tgid) {
        // SAFETY: a valid map value; only its owner frees a slot, so no other thread's claim
        // is undone here.
        unsafe {
            if core::ptr::read_volatile(&(*s).owner) == pid_tgid {
                core::ptr::write_volatile(&mut (*s).owner, 0);
                let _ = SLOT_OWNERS.remove(idx);
                return;
            }
        }
    }
    let _ = INFLIGHT.remove(pid_tgid);
}

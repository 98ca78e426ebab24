//! User→kernel copies: `__check_object_size(ptr, n, to_user)`, the size check every copy from
//! user space passes (the copy helpers themselves are notrace). No tracepoint exists: on
//! tracepoint-only kernels user space derives these bytes from the send calls.
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};

use copytrace_common::{path, syscall};

use crate::{
    ENTRY,
    filter::window,
    pairing::entry_key,
    rows::{key, record},
};

#[inline(always)]
fn usercopy(n: u64, to_user: bool) {
    if to_user {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    // One lookup of the thread's entry decides both cases below.
    let Some((f, in_call)) = window(pid_tgid) else {
        return;
    };
    if in_call {
        // Only copies inside a send call count, and only once the call has reached the socket
        // layer (its LSM hook marks the call): before that, sendmsg copies its iovec array in
        // (16 bytes per entry, through the same check), which is metadata, not data sent.
        // They are attributed at the call's exit, once we know the call went to a socket.
        // SAFETY: valid map value owned by the current task.
        unsafe {
            if syscall::is_send((*f).op) && (*f).sock_seen != 0 {
                (*f).copied += n;
                (*f).copy_calls += 1;
            }
        }
    } else if ENTRY
        .get_ptr(entry_key(pid_tgid, path::TCP_SENDMSG))
        .is_some()
    {
        // Between tracked system calls yet inside tcp_sendmsg: an io_uring send request this
        // thread issued (inline or from its task work). Its row is written now.
        record(
            &key(pid_tgid, path::COPY_FROM_USER, syscall::IO_URING, 0),
            1,
            n,
            false,
            None,
        );
    }
}

#[fentry(function = "__check_object_size")]
pub fn fe_usercopy(ctx: FEntryContext) -> i32 {
    let n: u64 = ctx.arg(1);
    let to_user: u8 = ctx.arg(2);
    usercopy(n, to_user != 0);
    0
}

#[kprobe]
pub fn kp_usercopy(ctx: ProbeContext) -> u32 {
    if let (Some(n), Some(to_user)) = (ctx.arg::<u64>(1), ctx.arg::<u64>(2)) {
        usercopy(n, to_user & 0xff != 0);
    }
    0
}

//! Processes to trace: a command started under our control, or existing pids.
use std::{
    ffi::{CString, OsStr},
    os::unix::{ffi::OsStrExt as _, process::ExitStatusExt as _},
    path::{Path, PathBuf},
    process::ExitStatus,
};

use crate::error::{Error, Result};

/// A child process that is forked but blocked before `execve` until [`GatedChild::release`],
/// so the tracer can be attached and the pid registered before the command runs its first
/// instruction: no event of the command is ever missed.
///
/// std's `Command::spawn` cannot do this: it waits for the exec to happen before returning the
/// pid. So this forks by hand, preparing every allocation before the fork so that the child only
/// makes async-signal-safe calls (close, read, execve, _exit).
pub struct GatedChild {
    pid: libc::pid_t,
    gate: Option<std::fs::File>,
    status: Option<ExitStatus>,
}

fn cstring(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| Error::Io(std::io::Error::other("argument contains a NUL byte")))
}

/// Resolve `program` like execvp would, but before forking.
fn resolve(program: &str) -> Result<PathBuf> {
    let is_exec = |p: &Path| {
        cstring(p.as_os_str())
            // SAFETY: valid C string.
            .map(|c| unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 && p.is_file())
            .unwrap_or(false)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return if is_exec(&p) {
            Ok(p)
        } else {
            Err(Error::Io(std::io::Error::other(format!(
                "cannot run {program}: not an executable file"
            ))))
        };
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
        .map(|d| d.join(program))
        .find(|p| is_exec(p))
        .ok_or_else(|| {
            Error::Io(std::io::Error::other(format!(
                "cannot run {program}: command not found in PATH"
            )))
        })
}

impl GatedChild {
    pub fn spawn(argv: &[String]) -> Result<GatedChild> {
        let program = argv
            .first()
            .ok_or_else(|| Error::Io(std::io::Error::other("no command given")))?;
        let path = cstring(resolve(program)?.as_os_str())?;
        let args = argv
            .iter()
            .map(|a| cstring(OsStr::new(a)))
            .collect::<Result<Vec<_>>>()?;
        let env = std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                cstring(OsStr::from_bytes(&kv))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut argp: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argp.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
        envp.push(std::ptr::null());

        let mut fds = [0; 2];
        // SAFETY: valid array of two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let (r, w) = (fds[0], fds[1]);
        // SAFETY: the child only calls async-signal-safe functions on memory prepared above.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            let e = std::io::Error::last_os_error();
            // SAFETY: closing our own fds.
            unsafe {
                libc::close(r);
                libc::close(w);
            }
            return Err(e.into());
        }
        if pid == 0 {
            // SAFETY: async-signal-safe calls only; never returns.
            unsafe {
                libc::close(w);
                let mut b = 0u8;
                loop {
                    let n = libc::read(r, (&mut b as *mut u8).cast(), 1);
                    if n == 1 {
                        break;
                    }
                    // EOF: the tracer went away without releasing us; never run untraced.
                    if n == 0 || *libc::__errno_location() != libc::EINTR {
                        libc::_exit(126);
                    }
                }
                libc::execve(path.as_ptr(), argp.as_ptr(), envp.as_ptr());
                libc::_exit(127);
            }
        }
        // SAFETY: closing our copy of the read end; `w` is ours to own.
        let gate = unsafe {
            libc::close(r);
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(w)
        };
        Ok(GatedChild {
            pid,
            gate: Some(gate),
            status: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Let the command exec.
    pub fn release(&mut self) -> Result<()> {
        if let Some(mut gate) = self.gate.take() {
            std::io::Write::write_all(&mut gate, &[1])?;
        }
        Ok(())
    }

    fn waitpid(&mut self, flags: libc::c_int) -> Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        loop {
            let mut status = 0;
            // SAFETY: valid pointer; our own child.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, flags) };
            if rc == self.pid {
                let s = ExitStatus::from_raw(status);
                self.status = Some(s);
                return Ok(Some(s));
            }
            if rc == 0 {
                return Ok(None);
            }
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(e.into());
            }
        }
    }

    /// Release the command (if not yet) and wait for it to exit.
    pub fn wait(&mut self) -> Result<ExitStatus> {
        self.release()?;
        Ok(self.waitpid(0)?.expect("blocking waitpid returns a status"))
    }

    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.waitpid(libc::WNOHANG)
    }

    /// SIGTERM the command if it still runs, and reap it.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        self.release()?;
        if self.try_wait()?.is_none() {
            // SAFETY: signalling our own unreaped child.
            unsafe { libc::kill(self.pid, libc::SIGTERM) };
        }
        self.wait()
    }

    /// Kill and reap the command (used when the tracer fails to start).
    pub fn kill(&mut self) {
        if self.status.is_none() {
            // SAFETY: signalling our own unreaped child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = self.waitpid(0);
        }
    }
}

impl Drop for GatedChild {
    fn drop(&mut self) {
        // Never leave an unreleased child blocked forever: closing the gate makes it exit.
        self.gate.take();
    }
}

/// Is `pid` a live (not zombie) process?
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 (after the parenthesised comm, which may contain spaces) is the state.
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The thread-group id of `pid` (which may name a thread), or a clear error.
pub fn tgid_of(pid: i32) -> Result<u32> {
    if pid <= 0 {
        return Err(Error::NoSuchProcess(pid));
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|_| Error::NoSuchProcess(pid))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(Error::NoSuchProcess(pid))
}

/// `comm` of a process or thread as the kernel has it now; `None` once it is gone.
pub fn try_comm(pid: u32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(s.trim_end_matches('\n').to_string())
}

/// `comm` of a process, for display.
pub fn comm(pid: u32) -> String {
    try_comm(pid).map_or_else(|| "?".into(), |s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_its_own_tgid() {
        let me = std::process::id();
        assert!(alive(me));
        assert_eq!(tgid_of(me as i32).unwrap(), me);
    }

    #[test]
    fn nonexistent_pid_is_a_clear_error() {
        // pid_max is at most 2^22, so this pid cannot exist.
        let e = tgid_of(1 << 23).unwrap_err();
        assert_eq!(e.to_string(), format!("no process with pid {}", 1 << 23));
        assert!(tgid_of(-5).is_err());
        assert!(!alive(1 << 23));
    }

    #[test]
    fn gated_child_runs_only_after_release() {
        let mut c = GatedChild::spawn(&["true".to_string()]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(c.try_wait().unwrap().is_none(), "ran before release");
        assert!(c.wait().unwrap().success());
    }
}

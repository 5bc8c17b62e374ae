//! Running one raw system call in a throwaway child process.
//!
//! Every attack runs in its own forked child, so that
//! - a call that unexpectedly succeeds (unshare, setns, personality, ptrace, a new keyring...)
//!   changes only the child, never the state that later checks observe;
//! - a filter that kills instead of returning an errno (SIGSYS) is reported, and the probe goes on.
//!
//! The probe is single-threaded, so fork is safe; the child only makes raw system calls,
//! writes its result to a pipe and `_exit`s, without allocating.

use crate::{errno, report, signals};
use libc::{c_int, c_long};

/// An attack returns this instead of a system call result when it could not set itself up
/// (errno says why); the parent reports it as such instead of as the call's verdict.
pub const SETUP_FAILED: c_long = c_long::MIN;

/// The child reports its return value, then its errno, through a pipe.
const RET_LEN: usize = std::mem::size_of::<c_long>();
const MESSAGE_LEN: usize = RET_LEN + std::mem::size_of::<i32>();

/// What happened to one isolated call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// The call succeeded with this return value.
    Returned(c_long),
    /// The call failed with this errno.
    Failed(i32),
    /// The child could not prepare the call (errno).
    SetupFailed(i32),
    /// Something else: the child died, or the probe could not fork.
    Broken(String),
}

impl Call {
    pub fn describe(&self) -> String {
        match self {
            Call::Returned(value) => format!("succeeded(ret {value})"),
            Call::Failed(errno) => errno::describe(*errno),
            Call::SetupFailed(errno) => format!("setup failed: {}", errno::describe(*errno)),
            Call::Broken(why) => why.clone(),
        }
    }

    pub fn errno(&self) -> Option<i32> {
        match self {
            Call::Failed(errno) => Some(*errno),
            _ => None,
        }
    }
}

/// Runs `call` in a forked child and reports its return value and errno.
pub fn isolated(call: fn() -> c_long) -> Call {
    let mut fds: [c_int; 2] = [-1, -1];
    // SAFETY: `fds` is a writable array of two c_int, as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Call::Broken(format!("pipe2 failed: {}", errno::describe(errno::last())));
    }
    let [read_end, write_end] = fds;
    // Nothing buffered may be duplicated into the child (it never flushes, but be tidy).
    report::flush();
    // SAFETY: the probe is single-threaded; the child below only makes raw system calls and
    // async-signal-safe libc calls, then `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let ret = call();
        let err = errno::last();
        let mut message = [0u8; MESSAGE_LEN];
        message[..RET_LEN].copy_from_slice(&ret.to_ne_bytes());
        message[RET_LEN..].copy_from_slice(&err.to_ne_bytes());
        // SAFETY: `message` is a valid buffer of `message.len()` bytes; `_exit` ends the child without running
        // any of the parent's atexit handlers or flushing its copied stdio buffers.
        unsafe {
            libc::write(write_end, message.as_ptr().cast(), message.len());
            libc::_exit(0);
        }
    }
    // SAFETY: closing our copy of the write end, which we own and no longer use.
    unsafe { libc::close(write_end) };
    if pid < 0 {
        let err = errno::last();
        // SAFETY: closing the read end, which we own.
        unsafe { libc::close(read_end) };
        return Call::Broken(format!("fork failed: {}", errno::describe(err)));
    }

    let mut message = [0u8; MESSAGE_LEN];
    let received = read_full(read_end, &mut message);
    // SAFETY: closing the read end, which we own.
    unsafe { libc::close(read_end) };
    let status = reap(pid);

    if received == message.len() {
        let mut ret = [0u8; RET_LEN];
        let mut err = [0u8; 4];
        ret.copy_from_slice(&message[..RET_LEN]);
        err.copy_from_slice(&message[RET_LEN..]);
        let ret = c_long::from_ne_bytes(ret);
        let err = i32::from_ne_bytes(err);
        return if ret == SETUP_FAILED {
            Call::SetupFailed(err)
        } else if ret == -1 {
            Call::Failed(err)
        } else {
            Call::Returned(ret)
        };
    }
    match status {
        Some(status) if libc::WIFSIGNALED(status) => Call::Broken(format!(
            "killed by {}",
            signals::describe(libc::WTERMSIG(status))
        )),
        Some(status) if libc::WIFEXITED(status) => Call::Broken(format!(
            "child exited with status {} without reporting",
            libc::WEXITSTATUS(status)
        )),
        _ => Call::Broken("child vanished without reporting".to_owned()),
    }
}

/// Reads until `buf` is full, EOF or an error; returns how many bytes arrived.
fn read_full(fd: c_int, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a valid writable buffer of `rest.len()` bytes.
        let n = unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) };
        if n > 0 {
            filled += n as usize;
        } else if n == 0 || errno::last() != libc::EINTR {
            break;
        }
    }
    filled
}

/// Waits for the child to end and returns its wait status. A child that stops (it may have
/// made itself a tracee of ours with PTRACE_TRACEME) is killed.
fn reap(pid: libc::pid_t) -> Option<c_int> {
    loop {
        let mut status: c_int = 0;
        // SAFETY: `status` is a valid c_int for waitpid to fill.
        let waited = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if waited == pid {
            if libc::WIFSTOPPED(status) {
                // SAFETY: `pid` is our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                continue;
            }
            return Some(status);
        }
        if waited == -1 && errno::last() != libc::EINTR {
            return None;
        }
    }
}

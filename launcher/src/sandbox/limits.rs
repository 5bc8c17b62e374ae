//! The sandbox's process limit: a fork bomb inside runs out of processes,
//! the host does not.
//!
//! The limit is `RLIMIT_NPROC`, set on each process that enters the sandbox
//! (the app and every `appbox enter`) after it joined the sandbox's user
//! namespace and took its final ids. Since Linux 5.14 the kernel charges
//! processes to a count per user namespace and uid, and checks the limit
//! against the count of the namespace the task lives in; the counts of
//! the namespaces above are checked against the limits in force where
//! each was created. Set inside the sandbox's namespace, the limit thus
//! counts this sandbox's tasks only, while the sandbox's tasks still count
//! towards the user's own limit on the host. Had it been set before the
//! namespace was made, it would also have become the cap on all of the
//! user's processes.
//!
//! A cgroup's `pids.max` would do the same, but needs a cgroup delegated to
//! the user (systemd's user manager), which many hosts running appbox lack;
//! the rlimit needs nothing. On kernels before 5.14 the rlimit counts all of
//! the user's processes, so there it caps the sandbox at the limit minus
//! what the user already runs: still bounded, only less precisely.
//!
//! At the limit, `fork`, `clone` and `pthread_create` in the sandbox fail
//! with `EAGAIN`; the app cannot raise the limit (that needs
//! `CAP_SYS_RESOURCE` on the host), and nothing outside is affected.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("cannot limit the sandbox to {max} processes")]
    Processes {
        max: u64,
        #[source]
        source: io::Error,
    },
}

/// Caps the calling process, and all it starts, at `max` tasks in its user
/// namespace: both the soft and the hard limit, so the app cannot raise it.
pub fn limit_processes(max: u64) -> Result<(), LimitsError> {
    let limit = libc::rlimit {
        rlim_cur: max,
        rlim_max: max,
    };
    // SAFETY: setrlimit reads the rlimit struct we pass by reference; it has
    // no other effect on memory.
    if unsafe { libc::setrlimit(libc::RLIMIT_NPROC, &limit) } != 0 {
        return Err(LimitsError::Processes {
            max,
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling process's `RLIMIT_NPROC` (soft, hard).
    fn process_limit() -> io::Result<(u64, u64)> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit struct into the one we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((limit.rlim_cur, limit.rlim_max))
    }

    /// In a child process, as lowering a limit is for good.
    #[test]
    fn the_limit_is_set_and_cannot_be_raised_again() {
        // SAFETY: the child only calls async-signal-safe functions
        // (setrlimit, getrlimit, _exit) before it exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            let code = match (limit_processes(1000), process_limit()) {
                (Ok(()), Ok((1000, 1000))) => {
                    let raised = libc::rlimit {
                        rlim_cur: 2000,
                        rlim_max: 2000,
                    };
                    // SAFETY: as in limit_processes. Root may raise its own
                    // hard limit; anyone else must be refused.
                    let ret = unsafe { libc::setrlimit(libc::RLIMIT_NPROC, &raised) };
                    // SAFETY: getuid cannot fail.
                    let root = unsafe { libc::getuid() } == 0;
                    if root || ret != 0 {
                        0
                    } else {
                        2
                    }
                }
                _ => 1,
            };
            // SAFETY: ends the forked child without running the test harness's exit code.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child we forked, writing its status into our int.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid);
        assert!(libc::WIFEXITED(status), "child status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "1: not set, 2: raised again");
    }
}

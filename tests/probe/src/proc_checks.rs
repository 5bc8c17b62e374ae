//! Checks of the process itself: credentials, capabilities, no_new_privs, the seccomp mode,
//! inherited fds, the pid namespace, signals, the hostname and the environment.

use crate::errno;
use crate::param;
use crate::report::{printable, Outcome};
use crate::sys::{self, Call};
use libc::c_long;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::ptr;

/// The value of `Key:` in /proc/self/status, trimmed.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        line.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

fn read_status() -> Result<String, Outcome> {
    std::fs::read_to_string("/proc/self/status").map_err(|err| {
        Outcome::fail(format!(
            "cannot read /proc/self/status: {}",
            errno::describe_io(&err)
        ))
    })
}

/// Every capability set must be empty.
pub fn caps() -> Outcome {
    let status = match read_status() {
        Ok(status) => status,
        Err(outcome) => return outcome,
    };
    caps_verdict(&status)
}

fn caps_verdict(status: &str) -> Outcome {
    const EMPTY: &str = "0000000000000000";
    let mut all_empty = true;
    let mut seen = Vec::new();
    for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        match status_field(status, key) {
            Some(value) => {
                all_empty &= value == EMPTY;
                seen.push(format!("{key}={value}"));
            }
            None => {
                all_empty = false;
                seen.push(format!("{key} missing"));
            }
        }
    }
    Outcome::verdict(all_empty, seen.join(" "))
}

/// `Key:` in /proc/self/status must be `expected`.
fn status_equals(key: &str, expected: &str) -> Outcome {
    let status = match read_status() {
        Ok(status) => status,
        Err(outcome) => return outcome,
    };
    match status_field(&status, key) {
        Some(value) => Outcome::verdict(value == expected, format!("{key}: {value}")),
        None => Outcome::fail(format!("no {key} line in /proc/self/status")),
    }
}

pub fn nnp() -> Outcome {
    status_equals("NoNewPrivs", "1")
}

pub fn seccomp_mode() -> Outcome {
    status_equals("Seccomp", "2")
}

/// No fd may be open besides 0, 1 and 2.
pub fn fds() -> Outcome {
    let dir = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir,
        Err(err) => {
            return Outcome::fail(format!(
                "cannot list /proc/self/fd: {}",
                errno::describe_io(&err)
            ))
        }
    };
    let listed: Vec<i32> = dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The directory's own fd was in the listing; it is closed now, so skip fds that no longer
    // exist.
    let mut extra = Vec::new();
    for fd in listed.into_iter().filter(|&fd| fd > 2) {
        // SAFETY: F_GETFD only queries the fd table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            continue;
        }
        let target = match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
            Ok(target) => printable(&target.to_string_lossy()),
            Err(err) => format!("? ({})", errno::describe_io(&err)),
        };
        extra.push(format!("{fd} -> {target}"));
    }
    if extra.is_empty() {
        Outcome::pass("only 0, 1, 2 open")
    } else {
        Outcome::fail(format!("extra fds: {}", extra.join(", ")))
    }
}

fn credentials() -> [(&'static str, libc::uid_t); 4] {
    // SAFETY: these calls cannot fail and have no side effects.
    unsafe {
        [
            ("uid", libc::getuid()),
            ("euid", libc::geteuid()),
            ("gid", libc::getgid()),
            ("egid", libc::getegid()),
        ]
    }
}

/// Neither the user nor the group may be root.
pub fn uid_unprivileged() -> Outcome {
    let ids = credentials();
    let detail: Vec<String> = ids
        .iter()
        .map(|(name, id)| format!("{name}={id}"))
        .collect();
    Outcome::verdict(ids.iter().all(|&(_, id)| id != 0), detail.join(" "))
}

/// The real and effective uid must be N.
pub fn uid(param: &OsStr) -> Outcome {
    let expected = match param::number::<libc::uid_t>(param, "a uid") {
        Ok(expected) => expected,
        Err(outcome) => return outcome,
    };
    let [(_, uid), (_, euid), ..] = credentials();
    Outcome::verdict(
        uid == expected && euid == expected,
        format!("uid={uid} euid={euid}, expected {expected}"),
    )
}

/// kill(PID, 0) must fail with ESRCH and /proc/PID must not exist.
pub fn no_pid(param: &OsStr) -> Outcome {
    let pid = match param::pid(param) {
        Ok(pid) => pid,
        Err(outcome) => return outcome,
    };
    // SAFETY: signal 0 only checks that the process exists.
    let kill = if unsafe { libc::kill(pid, 0) } == 0 {
        None
    } else {
        Some(errno::last())
    };
    let proc_entry = std::fs::symlink_metadata(format!("/proc/{pid}"));
    let kill_detail = match kill {
        Some(err) => format!("kill({pid}, 0): {}", errno::describe(err)),
        None => format!("kill({pid}, 0) succeeded"),
    };
    let proc_detail = match &proc_entry {
        Ok(_) => format!("/proc/{pid} exists"),
        Err(err) => format!("/proc/{pid}: {}", errno::describe_io(err)),
    };
    Outcome::verdict(
        kill == Some(libc::ESRCH) && proc_entry.is_err(),
        format!("{kill_detail}; {proc_detail}"),
    )
}

/// Our pid must be small and /proc must list few processes.
pub fn pidns() -> Outcome {
    let pid = std::process::id();
    let dir = match std::fs::read_dir("/proc") {
        Ok(dir) => dir,
        Err(err) => {
            return Outcome::fail(format!(
                "pid {pid}; cannot list /proc: {}",
                errno::describe_io(&err)
            ))
        }
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let listed: Vec<String> = pids.iter().map(u32::to_string).collect();
    Outcome::verdict(
        pid <= 10 && pids.len() < 20,
        format!(
            "pid {pid}; /proc lists {} pids: {}",
            pids.len(),
            listed.join(" ")
        ),
    )
}

/// PTRACE_ATTACH to pid 1 must fail. If it works, the child waits for the stop and detaches.
pub fn no_ptrace_init() -> Outcome {
    let call = sys::isolated(|| {
        // SAFETY: integer arguments and a valid status pointer; if the attach succeeds we
        // wait (bounded) for pid 1 to stop and detach again, leaving it running.
        unsafe {
            let ret = libc::syscall(
                libc::SYS_ptrace,
                libc::PTRACE_ATTACH as c_long,
                1 as c_long,
                0 as c_long,
                0 as c_long,
            );
            if ret == 0 {
                let pause = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 10_000_000,
                };
                for _ in 0..200 {
                    let mut status = 0;
                    if libc::waitpid(1, &mut status, libc::__WALL | libc::WNOHANG) == 1 {
                        break;
                    }
                    libc::nanosleep(&pause, ptr::null_mut());
                }
                libc::syscall(
                    libc::SYS_ptrace,
                    libc::PTRACE_DETACH as c_long,
                    1 as c_long,
                    0 as c_long,
                    0 as c_long,
                );
            }
            ret
        }
    });
    match call {
        Call::Failed(err) => Outcome::pass(format!(
            "PTRACE_ATTACH to pid 1 refused: {}",
            errno::describe(err)
        )),
        Call::Returned(_) => Outcome::fail("PTRACE_ATTACH to pid 1 succeeded (detached again)"),
        other => Outcome::fail(format!("PTRACE_ATTACH to pid 1: {}", other.describe())),
    }
}

/// kill(PID, SIGCONT) must fail.
pub fn signal_refused(param: &OsStr) -> Outcome {
    let pid = match param::pid(param) {
        Ok(pid) => pid,
        Err(outcome) => return outcome,
    };
    // SAFETY: SIGCONT is harmless even if it is delivered.
    if unsafe { libc::kill(pid, libc::SIGCONT) } == 0 {
        Outcome::fail(format!("kill({pid}, SIGCONT) succeeded"))
    } else {
        Outcome::pass(format!(
            "kill({pid}, SIGCONT): {}",
            errno::describe(errno::last())
        ))
    }
}

/// The namespace link of this process, such as `net:[4026531840]`.
fn namespace(kind: &str) -> Result<String, String> {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .map(|target| target.to_string_lossy().into_owned())
        .map_err(|err| format!("readlink /proc/self/ns/{kind}: {err}"))
}

/// `KIND:LINK`, where LINK is the host's namespace link (`net:[4026531840]`).
fn namespace_param(param: &OsStr) -> Result<(String, String), String> {
    let text = param.to_string_lossy();
    let (kind, link) = text
        .split_once('=')
        .ok_or_else(|| "expected KIND=LINK, such as net=net:[4026531840]".to_owned())?;
    Ok((kind.to_owned(), link.to_owned()))
}

/// `ns-private=KIND=LINK`: this process is in another namespace of KIND than LINK.
pub fn ns_private(param: &OsStr) -> Outcome {
    match namespace_param(param).and_then(|(kind, host)| Ok((namespace(&kind)?, host))) {
        Ok((own, host)) => Outcome::verdict(own != host, format!("own {own}, host {host}")),
        Err(why) => Outcome::fail(why),
    }
}

/// `ns-shared=KIND=LINK`: this process is in the namespace LINK.
pub fn ns_shared(param: &OsStr) -> Outcome {
    match namespace_param(param).and_then(|(kind, host)| Ok((namespace(&kind)?, host))) {
        Ok((own, host)) => Outcome::verdict(own == host, format!("own {own}, host {host}")),
        Err(why) => Outcome::fail(why),
    }
}

/// The probe leads its own session, so it has no controlling terminal to
/// push input into.
pub fn session_leader() -> Outcome {
    // SAFETY: getsid and getpid take no pointers.
    let (sid, pid) = unsafe { (libc::getsid(0), libc::getpid()) };
    Outcome::verdict(sid == pid, format!("session {sid}, pid {pid}"))
}

/// gethostname must equal NAME.
pub fn hostname(param: &OsStr) -> Outcome {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for the length passed; one byte is kept for the NUL.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) } != 0 {
        return Outcome::fail(format!(
            "gethostname failed: {}",
            errno::describe(errno::last())
        ));
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = &buf[..len];
    Outcome::verdict(
        name == param.as_bytes(),
        format!(
            "hostname {:?}, expected {:?}",
            printable(&String::from_utf8_lossy(name)),
            printable(&param.to_string_lossy())
        ),
    )
}

/// The variable must not be set.
pub fn env_absent(param: &OsStr) -> Outcome {
    let name = printable(&param.to_string_lossy());
    match std::env::var_os(param) {
        None => Outcome::pass(format!("{name} is not set")),
        Some(value) => Outcome::fail(format!(
            "{name} is set to {:?}",
            printable(&value.to_string_lossy())
        )),
    }
}

/// `VAR=VALUE`: the variable must be set to exactly VALUE.
pub fn env_equals(param: &OsStr) -> Outcome {
    let Some((name, expected)) = param::split_param(param, b'=') else {
        return Outcome::fail("expected VAR=VALUE");
    };
    if name.is_empty() {
        return Outcome::fail("expected VAR=VALUE");
    }
    let shown = printable(&name.to_string_lossy());
    let expected_shown = printable(&expected.to_string_lossy());
    match std::env::var_os(name) {
        None => Outcome::fail(format!("{shown} is not set, expected {expected_shown:?}")),
        Some(value) => Outcome::verdict(
            value == expected,
            format!(
                "{shown}={:?}, expected {expected_shown:?}",
                printable(&value.to_string_lossy())
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tappbox-probe\nUmask:\t0022\nState:\tR (running)\n\
        Uid:\t1000\t1000\t1000\t1000\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n\
        CapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nCapAmb:\t0000000000000000\n\
        NoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n";

    #[test]
    fn finds_status_fields() {
        assert_eq!(status_field(STATUS, "NoNewPrivs"), Some("1"));
        assert_eq!(status_field(STATUS, "Seccomp"), Some("2"));
        assert_eq!(status_field(STATUS, "Seccomp_filters"), Some("1"));
        assert_eq!(status_field(STATUS, "Uid"), Some("1000\t1000\t1000\t1000"));
        assert_eq!(status_field(STATUS, "Cap"), None);
        assert_eq!(status_field(STATUS, "Missing"), None);
    }

    #[test]
    fn caps_must_all_be_empty() {
        assert!(caps_verdict(STATUS).passed);
        let root = STATUS.replace("CapEff:\t0000000000000000", "CapEff:\t000001ffffffffff");
        let outcome = caps_verdict(&root);
        assert!(!outcome.passed);
        assert!(outcome.detail.contains("CapEff=000001ffffffffff"));
        let old_kernel = STATUS.replace("CapAmb:\t0000000000000000\n", "");
        assert!(!caps_verdict(&old_kernel).passed);
    }
}

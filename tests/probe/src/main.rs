//! appbox-probe: runs inside the appbox sandbox, attacks it, and reports what held.
//!
//! Usage: `appbox-probe ARG...`, where each ARG is `check` or `check=PARAM`. Checks run in
//! order; each prints one line, `ok <arg>: <detail>` or `FAIL <arg>: <detail>`, and the probe
//! ends with `probe: N passed, M failed`, exiting 0 only if nothing failed.
//!
//! Built statically, so that it runs in any runtime:
//! `cargo rustc -p appbox-probe --profile probe --bin appbox-probe -- -C target-feature=+crt-static`

#![deny(clippy::undocumented_unsafe_blocks)]

mod errno;
mod fs_checks;
mod modes;
mod net_checks;
mod param;
mod proc_checks;
mod report;
mod seccomp_checks;
mod signals;
mod sys;

use report::{printable, Outcome};
use std::ffi::{OsStr, OsString};

/// One check: it runs without a parameter, with one, or (like `env`) either way.
struct Check {
    name: &'static str,
    plain: Option<fn() -> Outcome>,
    with_param: Option<fn(&OsStr) -> Outcome>,
}

const fn plain(name: &'static str, run: fn() -> Outcome) -> Check {
    Check {
        name,
        plain: Some(run),
        with_param: None,
    }
}

const fn with_param(name: &'static str, run: fn(&OsStr) -> Outcome) -> Check {
    Check {
        name,
        plain: None,
        with_param: Some(run),
    }
}

/// Every check but `args`, which consumes the rest of the command line.
const CHECKS: &[Check] = &[
    // Attacks the seccomp filter must stop.
    plain("tiocsti", seccomp_checks::tiocsti),
    plain("tioclinux", seccomp_checks::tioclinux),
    plain("mount-api", seccomp_checks::mount_api),
    plain("clone3", seccomp_checks::clone3),
    plain("clone-newuser", seccomp_checks::clone_newuser),
    plain("syscalls", seccomp_checks::syscalls),
    plain("foreign-abi", seccomp_checks::foreign_abi),
    // The process.
    plain("caps", proc_checks::caps),
    plain("nnp", proc_checks::nnp),
    plain("seccomp-mode", proc_checks::seccomp_mode),
    plain("fds", proc_checks::fds),
    plain("uid-unprivileged", proc_checks::uid_unprivileged),
    with_param("uid", proc_checks::uid),
    with_param("no-pid", proc_checks::no_pid),
    plain("pidns", proc_checks::pidns),
    plain("no-ptrace-init", proc_checks::no_ptrace_init),
    with_param("signal-refused", proc_checks::signal_refused),
    with_param("hostname", proc_checks::hostname),
    plain("session-leader", proc_checks::session_leader),
    with_param("ns-private", proc_checks::ns_private),
    with_param("ns-shared", proc_checks::ns_shared),
    with_param("env-absent", proc_checks::env_absent),
    Check {
        name: "env",
        plain: Some(modes::env),
        with_param: Some(proc_checks::env_equals),
    },
    // The file system.
    with_param("hidden", fs_checks::hidden),
    with_param("exists", fs_checks::exists),
    with_param("rename-refused", fs_checks::rename_refused),
    with_param("readonly", fs_checks::readonly),
    with_param("writable", fs_checks::writable),
    with_param("unwritable", fs_checks::unwritable),
    with_param("readable", fs_checks::readable),
    with_param("unreadable", fs_checks::unreadable),
    with_param("file-contains", fs_checks::file_contains),
    // The network.
    plain("net-none", net_checks::net_none),
    plain("net-host", net_checks::net_host),
    with_param("tcp-refused", net_checks::tcp_refused),
    with_param("tcp-connects", net_checks::tcp_connects),
    with_param("abstract-refused", net_checks::abstract_refused),
    with_param("abstract-connects", net_checks::abstract_connects),
    with_param("unix-connects", net_checks::unix_connects),
    // Helper modes.
    with_param("exit", modes::exit),
    with_param("kill-self", modes::kill_self),
    with_param("sleep", modes::sleep),
    plain("cat", modes::cat),
    with_param("print", modes::print),
    with_param("eprint", modes::eprint),
    plain("isatty", modes::isatty),
    with_param("wait-signal", modes::wait_signal),
    plain("fork-and-exit", modes::fork_and_exit),
    with_param("fork-bomb", modes::fork_bomb),
];

/// Runs one argument that is not `args`.
fn run(arg: &OsStr) -> Outcome {
    let (name, param) = param::split_arg(arg);
    let Some(check) = name.and_then(|name| CHECKS.iter().find(|check| check.name == name)) else {
        return Outcome::fail("unknown check");
    };
    match (param, check.plain, check.with_param) {
        (None, Some(run), _) => run(),
        (Some(param), _, Some(run)) => run(param),
        (None, None, Some(_)) => Outcome::fail(format!("{} needs a parameter", check.name)),
        (Some(_), _, None) => Outcome::fail(format!("{} takes no parameter", check.name)),
        (None, None, None) => Outcome::fail("unknown check"),
    }
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
}

impl Tally {
    fn record(&mut self, arg: &OsStr, outcome: &Outcome) {
        let verdict = if outcome.passed {
            self.passed += 1;
            "ok"
        } else {
            self.failed += 1;
            "FAIL"
        };
        let label = printable(&arg.to_string_lossy());
        report::out(&format!("{verdict} {label}: {}", outcome.detail));
        for line in &outcome.after {
            report::out(line);
        }
    }
}

fn usage() -> String {
    let names: Vec<&str> = CHECKS.iter().map(|check| check.name).collect();
    format!(
        "usage: appbox-probe CHECK[=PARAM]...\nchecks: {} args\n",
        names.join(" ")
    )
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        report::err_bytes(usage().as_bytes());
        std::process::exit(2);
    }
    let mut tally = Tally::default();
    for (index, arg) in args.iter().enumerate() {
        if arg.as_os_str() == "args" {
            tally.record(arg, &modes::args(&args[index + 1..]));
            break;
        }
        tally.record(arg, &run(arg));
    }
    report::out(&format!(
        "probe: {} passed, {} failed",
        tally.passed, tally.failed
    ));
    report::flush();
    std::process::exit(if tally.failed == 0 { 0 } else { 1 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_are_unique() {
        for (index, check) in CHECKS.iter().enumerate() {
            assert!(
                CHECKS[index + 1..]
                    .iter()
                    .all(|other| other.name != check.name),
                "{} listed twice",
                check.name
            );
            assert!(check.plain.is_some() || check.with_param.is_some());
        }
    }

    #[test]
    fn rejects_bad_arguments_without_running_anything() {
        let unknown = run(OsStr::new("no-such-check"));
        assert_eq!(unknown, Outcome::fail("unknown check"));
        assert_eq!(run(OsStr::new("=x")), Outcome::fail("unknown check"));
        assert!(!run(OsStr::new("hidden")).passed);
        assert!(!run(OsStr::new("caps=1")).passed);
        assert!(!run(OsStr::new("uid=root")).passed);
        assert!(!run(OsStr::new("no-pid=-1")).passed);
        assert!(!run(OsStr::new("tcp-connects=8.8.8.8:53")).passed);
        assert!(!run(OsStr::new("kill-self=NOPE")).passed);
        assert!(!run(OsStr::new("exit=300")).passed);
        assert!(!run(OsStr::new("fork-bomb=lots")).passed);
    }

    #[test]
    fn simple_checks_work_in_process() {
        assert!(run(OsStr::new("hidden=/nonexistent/appbox-probe")).passed);
        assert!(!run(OsStr::new("hidden=/")).passed);
        assert!(run(OsStr::new("readable=/")).passed);
        assert!(!run(OsStr::new("unwritable=/nonexistent/appbox-probe")).passed);
        assert!(run(OsStr::new("env-absent=APPBOX_PROBE_SURELY_UNSET")).passed);
        assert!(!run(OsStr::new("env=APPBOX_PROBE_SURELY_UNSET=1")).passed);
    }
}

//! The executor: applies a [`SandboxPlan`] to the kernel.
//!
//! The calling process must be single-threaded. It clones a child into new
//! namespaces and stays behind as the monitor. The child becomes the sandbox's
//! pid 1: it builds the root, then forks the app and reaps until the app exits.
//! The app process confines itself in a fixed order: new session, no
//! capabilities, its final ids, the process limit, no_new_privs, Landlock, and
//! seccomp last, right before exec.

pub mod caps;
pub mod hostprep;
pub mod inject;
pub mod landlock;
pub mod limits;
pub mod mounts;
pub mod net;
pub mod seccomp;
pub mod sys;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use seccompiler::BpfProgram;

use crate::plan::SandboxPlan;

/// A protection layer that a test may switch off to prove the others matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    Mounts,
    Landlock,
    Seccomp,
}

impl std::str::FromStr for Layer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mounts" => Ok(Layer::Mounts),
            "landlock" => Ok(Layer::Landlock),
            "seccomp" => Ok(Layer::Seccomp),
            other => Err(format!(
                "unknown layer {other:?}; expected mounts, landlock or seccomp"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Landlock(#[from] landlock::LandlockError),
    #[error(transparent)]
    HostPrep(#[from] hostprep::HostPrepError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error(transparent)]
    Limits(#[from] limits::LimitsError),
    #[error("cannot {what}")]
    Sys {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("setting up the sandbox failed: {0}")]
    Setup(String),
    #[error("{message}")]
    Exec { message: String, code: i32 },
    #[error("interrupted by signal {0} while the sandbox was being set up")]
    Interrupted(i32),
}

fn sys_err(what: &'static str) -> impl FnOnce(nix::errno::Errno) -> SandboxError {
    move |e| SandboxError::Sys {
        what,
        source: e.into(),
    }
}

/// Signals the monitor passes on to the sandbox.
const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
    Signal::SIGALRM,
];

fn monitor_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(*signal);
    }
    set.add(Signal::SIGCHLD);
    set
}

/// How long the app runs before the monitor trims its own memory.
const TRIM_AFTER: std::time::Duration = std::time::Duration::from_millis(50);

/// A started sandbox, watched by this process.
pub struct Running {
    /// The sandbox's pid 1 (or, for `enter`, the entered process), in our pid namespace.
    pub pid: Pid,
    signals: SigSet,
}

impl Running {
    /// Forwards signals until the child exits, and returns its exit status as a
    /// shell would report it: the code, or 128 + the signal number.
    pub fn wait(self) -> i32 {
        // Short-lived apps are not worth trimming for; once the app has run for
        // a moment, the monitor gives back the memory only start-up needed.
        let mut trimmed = false;
        loop {
            let signal = if trimmed {
                self.signals.wait().ok()
            } else {
                let signal = sys::wait_signal_for(&self.signals, TRIM_AFTER);
                if signal.is_none() {
                    sys::release_startup_memory();
                    trimmed = true;
                }
                signal
            };
            let Some(signal) = signal else {
                continue;
            };
            if signal != Signal::SIGCHLD {
                let _ = kill(self.pid, signal);
                continue;
            }
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => return code,
                Ok(WaitStatus::Signaled(_, signal, _)) => return 128 + signal as i32,
                Err(nix::errno::Errno::ECHILD) => return 255,
                _ => {}
            }
        }
    }
}

/// Everything the app process needs, computed before the clone.
struct AppSetup<'a> {
    plan: &'a SandboxPlan,
    argv: Vec<CString>,
    envp: Vec<CString>,
    seccomp: Option<BpfProgram>,
    landlock: bool,
    umask: nix::sys::stat::Mode,
}

impl<'a> AppSetup<'a> {
    fn new(plan: &'a SandboxPlan, disabled: &BTreeSet<Layer>) -> Result<Self, SandboxError> {
        let cstr = |s: &str| {
            CString::new(s).map_err(|_| SandboxError::Setup(format!("{s:?} contains a NUL byte")))
        };
        let argv = plan
            .argv
            .iter()
            .map(|a| cstr(a))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = plan
            .env
            .iter()
            .map(|(k, v)| cstr(&format!("{k}={v}")))
            .collect::<Result<Vec<_>, _>>()?;
        let seccomp = if disabled.contains(&Layer::Seccomp) {
            None
        } else {
            Some(seccomp::compile(&plan.seccomp)?)
        };
        Ok(AppSetup {
            plan,
            argv,
            envp,
            seccomp,
            landlock: !disabled.contains(&Layer::Landlock),
            umask: nix::sys::stat::Mode::empty(),
        })
    }

    /// Confines the calling process and execs the app. Only returns on failure.
    fn confine_and_exec(&self, built: &mounts::BuiltRoot) -> SandboxError {
        match self.confine(built) {
            Ok(()) => {}
            Err(e) => return e,
        }
        let program = &self.argv[0];
        let err = nix::unistd::execve(program, &self.argv, &self.envp).unwrap_err();
        SandboxError::Exec {
            message: format!("cannot run {}: {}", program.to_string_lossy(), err.desc()),
            code: if err == nix::errno::Errno::ENOENT {
                127
            } else {
                126
            },
        }
    }

    fn confine(&self, built: &mounts::BuiltRoot) -> Result<(), SandboxError> {
        let plan = self.plan;
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
            .map_err(sys_err("reset the signal mask"))?;
        // A new session: the app has no controlling terminal to push input into.
        nix::unistd::setsid().map_err(sys_err("start a new session"))?;
        nix::sys::stat::umask(self.umask);
        caps::drop_bounding_set().map_err(|e| SandboxError::Setup(chain(&e)))?;
        let (uid, gid) = (plan.ids.app_uid, plan.ids.app_gid);
        if nix::unistd::getuid().as_raw() != uid {
            nix::unistd::setgroups(&[]).map_err(sys_err("clear supplementary groups"))?;
            nix::unistd::setresgid(gid.into(), gid.into(), gid.into())
                .map_err(sys_err("change group"))?;
            nix::unistd::setresuid(uid.into(), uid.into(), uid.into())
                .map_err(sys_err("change user"))?;
        }
        // Inside the sandbox's user namespace, so only its own tasks count.
        limits::limit_processes(plan.max_processes)?;
        // After the ids are final: changing them clears the parent-death signal.
        set_parent_death_signal()?;
        if nix::unistd::chdir(&plan.cwd).is_err() {
            nix::unistd::chdir("/").map_err(sys_err("enter /"))?;
        }
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(SandboxError::Sys {
                what: "set no_new_privs",
                source: io::Error::last_os_error(),
            });
        }
        if self.landlock {
            landlock::restrict_self(&plan.landlock, &built.anchors, &built.skipped)?;
        }
        caps::clear_all().map_err(|e| SandboxError::Setup(chain(&e)))?;
        sys::cloexec_from(3).map_err(|source| SandboxError::Sys {
            what: "close inherited descriptors",
            source,
        })?;
        if let Some(program) = &self.seccomp {
            seccomp::install(program)?;
        }
        Ok(())
    }
}

fn set_parent_death_signal() -> Result<(), SandboxError> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
        return Err(SandboxError::Sys {
            what: "set the parent-death signal",
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// An error with its causes, on one line, for passing across the error pipe.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys_err("create a pipe"))
}

/// Reports an error to the monitor and leaves. Used on the child side only.
fn fail(report: &OwnedFd, error: &SandboxError) -> ! {
    let code = match error {
        SandboxError::Exec { code, .. } => *code,
        _ => 1,
    };
    let mut file = std::fs::File::from(report.try_clone().unwrap_or_else(|_| sys::exit_now(code)));
    let text = match error {
        SandboxError::Setup(text) => text.clone(),
        other => chain(other),
    };
    let _ = file.write_all(text.as_bytes());
    sys::exit_now(code)
}

/// Reads what the child side reported before its exec; an empty report means
/// the app is running.
fn read_report(report: OwnedFd, pid: Pid) -> Result<(), SandboxError> {
    // An interrupt while the sandbox sets up ends the launch. The signals stay
    // blocked and are watched through a signalfd, so one that comes after the
    // app has started is left pending for the monitor's loop, which forwards it.
    let mut interrupts = monitor_signals();
    interrupts.remove(Signal::SIGCHLD);
    if let Ok(signals) = SignalFd::with_flags(&interrupts, SfdFlags::SFD_CLOEXEC) {
        let ready = loop {
            let mut fds = [
                PollFd::new(report.as_fd(), PollFlags::POLLIN),
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            ];
            match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                Err(nix::errno::Errno::EINTR) => continue,
                _ => break fds.map(|fd| fd.any().unwrap_or(false)),
            }
        };
        if let [false, true] = ready {
            let signal = signals
                .read_signal()
                .ok()
                .flatten()
                .map_or(libc::SIGTERM, |info| info.ssi_signo as i32);
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(SandboxError::Interrupted(signal));
        }
    }
    let mut text = String::new();
    let mut file = std::fs::File::from(report);
    let _ = file.read_to_string(&mut text);
    if text.is_empty() {
        return Ok(());
    }
    let status = waitpid(pid, None);
    let code = match status {
        Ok(WaitStatus::Exited(_, code)) => code,
        _ => 1,
    };
    if code == 126 || code == 127 {
        Err(SandboxError::Exec {
            message: text,
            code,
        })
    } else {
        Err(SandboxError::Setup(text))
    }
}

/// Launches the plan. On success the app is running under the returned monitor handle.
pub fn launch(
    plan: &SandboxPlan,
    home: &Path,
    disabled: &BTreeSet<Layer>,
) -> Result<Running, SandboxError> {
    landlock::require_abi_v1()?;
    let mut app = AppSetup::new(plan, disabled)?;
    let prepared = hostprep::prepare(home, &plan.host_dirs)?;
    match start(plan, &mut app, disabled) {
        Ok(running) => Ok(running),
        Err(e) => {
            prepared.roll_back();
            Err(e)
        }
    }
}

fn start(
    plan: &SandboxPlan,
    app: &mut AppSetup,
    disabled: &BTreeSet<Layer>,
) -> Result<Running, SandboxError> {
    let signals = monitor_signals();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None).map_err(sys_err("block signals"))?;

    let (go_read, go_write) = pipe()?;
    let (report_read, report_write) = pipe()?;
    let ns = &plan.namespaces;
    let mut flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID;
    for (wanted, flag) in [
        (ns.ipc, libc::CLONE_NEWIPC),
        (ns.uts, libc::CLONE_NEWUTS),
        (ns.cgroup, libc::CLONE_NEWCGROUP),
    ] {
        if wanted {
            flags |= flag;
        }
    }
    let pid = sys::clone_with_flags(flags as u64).map_err(|source| SandboxError::Sys {
        what: "create the sandbox's namespaces",
        source,
    })?;
    if pid == 0 {
        drop(go_write);
        drop(report_read);
        app.umask = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        sandbox_init(app, go_read, report_write, disabled);
    }
    let pid = Pid::from_raw(pid);
    drop(go_read);
    drop(report_write);

    let mapped = write_id_maps(pid, plan);
    let mut go = std::fs::File::from(go_write);
    if let Err(e) = mapped.and_then(|()| {
        go.write_all(b"1").map_err(|source| SandboxError::Sys {
            what: "start the sandbox",
            source,
        })
    }) {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        return Err(e);
    }
    drop(go);
    read_report(report_read, pid)?;
    Ok(Running { pid, signals })
}

fn write_id_maps(pid: Pid, plan: &SandboxPlan) -> Result<(), SandboxError> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let write = |name: &str, contents: String, what: &'static str| {
        std::fs::write(proc_dir.join(name), contents)
            .map_err(|source| SandboxError::Sys { what, source })
    };
    let lines = |ranges: &[crate::plan::IdRange]| {
        ranges
            .iter()
            .map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count))
            .collect::<String>()
    };
    write("uid_map", lines(&plan.ids.uid_map), "write the uid map")?;
    if plan.ids.deny_setgroups {
        write("setgroups", "deny".into(), "deny setgroups")?;
    }
    write("gid_map", lines(&plan.ids.gid_map), "write the gid map")
}

/// The sandbox's pid 1: waits for the id maps, builds the root, starts the app
/// and reaps until it exits. Setup errors go to the monitor through `report`.
fn sandbox_init(app: &AppSetup, go: OwnedFd, report: OwnedFd, disabled: &BTreeSet<Layer>) -> ! {
    let built = match init_setup(app, go, disabled) {
        Ok(built) => built,
        Err(e) => fail(&report, &e),
    };
    if let Err(e) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), None) {
        fail(&report, &sys_err("block signals")(e));
    }
    // SAFETY: this process is single-threaded (a clone of the single-threaded
    // monitor), so the child may run arbitrary code after fork.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let error = app.confine_and_exec(&built);
            fail(&report, &error);
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            // Our copy of the report pipe must close, so the monitor sees EOF as
            // soon as the app has exec'd.
            drop(report);
            reap_until_exit(child)
        }
        Err(e) => fail(&report, &sys_err("start the app process")(e)),
    }
}

fn init_setup(
    app: &AppSetup,
    go: OwnedFd,
    disabled: &BTreeSet<Layer>,
) -> Result<mounts::BuiltRoot, SandboxError> {
    let plan = app.plan;
    set_parent_death_signal()?;
    // Wait until the monitor has written our id maps; EOF means it died.
    let mut byte = [0u8; 1];
    let mut go = std::fs::File::from(go);
    if !matches!(go.read(&mut byte), Ok(1)) {
        sys::exit_now(1);
    }
    drop(go);
    // The network namespace is made in parallel with the root (see net.rs).
    let network = if plan.namespaces.net {
        Some(net::PrivateNetwork::start().map_err(|e| SandboxError::Setup(chain(&e)))?)
    } else {
        None
    };
    if plan.namespaces.uts {
        nix::unistd::sethostname(&plan.hostname).map_err(sys_err("set the hostname"))?;
    }
    let built = if disabled.contains(&Layer::Mounts) {
        mounts::BuiltRoot::default()
    } else {
        let sources = mounts::open_sources(&plan.mounts, &plan.hostname)
            .map_err(|e| SandboxError::Setup(chain(&e)))?;
        mounts::build_root(&plan.mounts, sources, (plan.ids.app_uid, plan.ids.app_gid))
            .map_err(|e| SandboxError::Setup(chain(&e)))?
    };
    if let Some(network) = network {
        network.join().map_err(|e| SandboxError::Setup(chain(&e)))?;
    }
    // pid 1 stays dumpable so `appbox enter` can join it through a pidfd (which
    // needs ptrace read access). The app still cannot touch it: pid 1 holds
    // capabilities the app lacks, seccomp refuses ptrace, and Landlock refuses
    // access to processes outside the app's domain.
    Ok(built)
}

/// pid 1's loop: forward every signal to the app, reap every child, and leave
/// with the app's status when it exits. Leaving kills whatever is left.
fn reap_until_exit(app: Pid) -> ! {
    let all = SigSet::all();
    loop {
        let Ok(signal) = all.wait() else {
            continue;
        };
        if signal != Signal::SIGCHLD {
            let _ = kill(app, signal);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == app => sys::exit_now(code),
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid == app => {
                    sys::exit_now(128 + signal as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// Joins the namespaces of a running sandbox through its pid 1's pidfd, and runs
/// `plan.argv` there under the same confinement as the app.
pub fn enter(plan: &SandboxPlan, pidfd: &OwnedFd) -> Result<Running, SandboxError> {
    landlock::require_abi_v1()?;
    // Only the namespaces the sandbox made: a shared one (share=ipc,
    // share=network) is the host's, which the sandbox's user namespace may
    // not enter.
    let ns = &plan.namespaces;
    let flags = [
        (ns.user, libc::CLONE_NEWUSER),
        (ns.mount, libc::CLONE_NEWNS),
        (ns.pid, libc::CLONE_NEWPID),
        (ns.ipc, libc::CLONE_NEWIPC),
        (ns.uts, libc::CLONE_NEWUTS),
        (ns.cgroup, libc::CLONE_NEWCGROUP),
        (ns.net, libc::CLONE_NEWNET),
    ]
    .iter()
    .filter(|(made, _)| *made)
    .fold(0, |flags, (_, flag)| flags | flag);
    // SAFETY: setns with a pidfd we own and namespace flags only.
    if unsafe { libc::setns(pidfd.as_fd().as_raw_fd(), flags) } != 0 {
        return Err(SandboxError::Sys {
            what: "join the sandbox's namespaces",
            source: io::Error::last_os_error(),
        });
    }
    // A bare command name is looked up in the sandbox's PATH, now that its
    // filesystem is ours; nothing is ever handed to a shell.
    let mut plan = plan.clone();
    if let Some(program) = plan.argv.first_mut() {
        if !program.contains('/') {
            let search = plan.env.get("PATH").cloned().unwrap_or_default();
            if let Some(found) = search
                .split(':')
                .map(|dir| Path::new(dir).join(&*program))
                .find(|candidate| {
                    nix::unistd::access(candidate, nix::unistd::AccessFlags::X_OK).is_ok()
                })
            {
                *program = found.display().to_string();
            }
        }
    }
    let app = AppSetup::new(&plan, &BTreeSet::new())?;
    let signals = monitor_signals();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None).map_err(sys_err("block signals"))?;
    let (report_read, report_write) = pipe()?;
    // SAFETY: the caller is single-threaded (setns into a user namespace has
    // already required that), so the child may run arbitrary code.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(report_read);
            let error = app.confine_and_exec(&mounts::BuiltRoot::default());
            fail(&report_write, &error);
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(report_write);
            read_report(report_read, child)?;
            Ok(Running {
                pid: child,
                signals,
            })
        }
        Err(e) => Err(sys_err("start the entered process")(e)),
    }
}

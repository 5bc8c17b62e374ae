//! One proxy per launch: a process forked from the monitor before the sandbox
//! exists, serving the socket that becomes the sandbox's session bus.
//!
//! Being its own single-threaded process keeps the monitor's signal loop as
//! it is, and the proxy dies with the monitor (parent-death signal). Its
//! socket lives in `$XDG_RUNTIME_DIR/appbox/bus/<monitor pid>/` (0700), so
//! only the sandbox, which gets the socket itself bind-mounted, reaches it.
//!
//! Peer records (see [`super::peers`]): only the proxy knows the unique
//! names of its upstream connections, so only the proxy can remove each
//! record by name. It therefore takes the signals that stop it (SIGTERM from
//! [`ProxyProcess`]'s drop or from the parent-death signal, and SIGINT,
//! SIGHUP, SIGQUIT) through a signalfd, which is `server::serve`'s stop
//! descriptor: `serve` returns, and dropping its connections removes their
//! records. A proxy killed outright (SIGKILL) or crashed cannot do that, so
//! the parent, which knows the instance number but not the names, then
//! sweeps every record that names its instance. Records a killed monitor
//! leaves behind name connections that are gone, and the bus never reuses
//! unique names, so they match no caller.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use super::peers::PeerRecords;
use super::policy::Policy;
use super::server;
use crate::private_dir::{create_private_dirs, PrivateDirError};
use crate::sandbox::sys;

/// The signals that stop the proxy; it takes them through a signalfd.
const STOP_SIGNALS: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the bus proxy")]
    Fork(#[source] nix::errno::Errno),
    #[error(transparent)]
    Dir(#[from] PrivateDirError),
}

/// The proxy's socket, bound before the sandbox exists (the sandbox mounts
/// it); connections wait in its backlog until the proxy is forked.
pub struct ProxySocket {
    /// Taken by `serve`, which also takes `dir` (leaving it empty).
    listener: Option<UnixListener>,
    dir: PathBuf,
}

/// A running proxy; dropping it stops the proxy and removes its socket and
/// its peer records.
pub struct ProxyProcess {
    pid: Pid,
    dir: PathBuf,
    peers: Option<PeerRecords>,
}

/// Where the proxy of the calling monitor puts its socket.
pub fn socket_path(runtime_dir: &Path) -> PathBuf {
    bus_dir(runtime_dir)
        .join(std::process::id().to_string())
        .join("bus")
}

fn bus_dir(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("appbox/bus")
}

impl ProxySocket {
    /// Listens on [`socket_path`].
    pub fn bind(runtime_dir: &Path) -> Result<Self, ProxyError> {
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| ProxyError::Io { what, path, source }
        };
        let parent = bus_dir(runtime_dir);
        // Made (0700) or opened one level at a time, refusing a symlink or a
        // level that is not the user's alone, as the instance registry does,
        // before anything is made or swept in it: nobody else can then
        // change what the paths below name.
        create_private_dirs(runtime_dir, &["appbox", "bus"])?;
        remove_stale(&parent);
        let socket = socket_path(runtime_dir);
        let dir = socket.parent().unwrap_or(&parent).to_owned();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io("create", &dir))?;
        let listener = UnixListener::bind(&socket).map_err(io("listen on", &socket))?;
        // Reached only through the bind mount into the sandbox, where the app
        // may run as another uid (65534 when root launches).
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))
            .map_err(io("open up", &socket))?;
        Ok(ProxySocket {
            listener: Some(listener),
            dir,
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("bus")
    }

    /// Forks the proxy, which relays to the real bus at `upstream` under
    /// `policy`, and records its upstream connections in `peers` (the
    /// instance's number; `None` records nothing). Forked once the app runs,
    /// so the launch does not wait for it. The caller must be
    /// single-threaded.
    pub fn serve(
        mut self,
        upstream: &Path,
        policy: Policy,
        peers: Option<PeerRecords>,
    ) -> Result<ProxyProcess, ProxyError> {
        let dir = std::mem::take(&mut self.dir);
        let Some(listener) = self.listener.take() else {
            return Err(ProxyError::Fork(nix::errno::Errno::EBADF));
        };
        // SAFETY: the caller is single-threaded, so the child may run any code.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                run_child(listener, upstream, policy, peers.as_ref())
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => Ok(ProxyProcess {
                pid: child,
                dir,
                peers,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(ProxyError::Fork(e))
            }
        }
    }
}

impl Drop for ProxySocket {
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn run_child(
    listener: UnixListener,
    upstream: &Path,
    policy: Policy,
    peers: Option<&PeerRecords>,
) -> ! {
    // The monitor blocks the signals it forwards. The proxy blocks only the
    // ones that stop it, which it reads from a signalfd, and dies of the rest.
    let mut stop_signals = SigSet::empty();
    for signal in STOP_SIGNALS {
        stop_signals.add(signal);
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&stop_signals), None);
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) };
    if nix::unistd::getppid().as_raw() == 1 {
        sys::exit_now(0);
    }
    // Nothing of the monitor's but stdio and the listener stays open.
    let keep = listener.as_raw_fd() as u32;
    let _ = sys::close_range(3, keep.saturating_sub(1).max(2));
    let _ = sys::close_range(keep + 1, u32::MAX);
    // Without a signalfd, the stop signals kill the proxy, and the parent's
    // sweep removes its records.
    let stop = SignalFd::with_flags(&stop_signals, SfdFlags::SFD_CLOEXEC).ok();
    if stop.is_none() {
        let _ =
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    }
    // A panic must not unwind into the monitor's code, which this process
    // shares until it exits. Unwinding still drops the connections and
    // their records.
    let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        server::serve(
            listener,
            upstream,
            policy,
            stop.as_ref().map(|fd| fd.as_fd()),
            peers,
        )
    }));
    let code = match served {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            eprintln!("appbox: the bus proxy stopped: {e}");
            1
        }
        Err(_) => 101,
    };
    sys::exit_now(code)
}

/// Removes the socket dirs of monitors that are gone (killed before they
/// could clean up).
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid as u32 != std::process::id() && kill(Pid::from_raw(pid), None).is_err() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = kill(self.pid, Signal::SIGTERM);
        // It ends at once, having removed its peer records; reaping it
        // leaves no zombie behind.
        let _ = nix::sys::wait::waitpid(self.pid, None);
        // What a proxy that was killed outright, or crashed, left behind.
        if let Some(peers) = &self.peers {
            peers.sweep();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::busproxy::peers::peers_dir;
    use crate::busproxy::policy::PORTAL_ALIASES;
    use crate::busproxy::testing::{have, start_daemon, ChildGuard, TempDir};
    use crate::permissions::Permissions;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// The records under `runtime`: (GUID, unique name, content).
    fn records(runtime: &Path) -> Vec<(String, String, String)> {
        let mut found = Vec::new();
        let Ok(guids) = std::fs::read_dir(peers_dir(runtime)) else {
            return found;
        };
        for guid in guids {
            let guid = guid.unwrap();
            for record in std::fs::read_dir(guid.path()).unwrap() {
                let record = record.unwrap();
                found.push((
                    guid.file_name().into_string().unwrap(),
                    record.file_name().into_string().unwrap(),
                    std::fs::read_to_string(record.path()).unwrap(),
                ));
            }
        }
        found
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether `pid` has exited (a zombie, not yet reaped: its pid cannot
    /// be reused before the drop of its `ProxyProcess` reaps it).
    fn is_zombie(pid: Pid) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let state = stat[stat.rfind(')')? + 1..].split_whitespace().next()?;
                Some(state == "Z")
            })
            .unwrap_or(true)
    }

    #[test]
    fn records_go_when_the_proxy_is_stopped_or_killed() {
        if !have("/usr/bin/gdbus") {
            return;
        }
        let daemon = start_daemon();
        for signal in [Signal::SIGTERM, Signal::SIGKILL] {
            let runtime = TempDir::new("runtime");
            let socket = ProxySocket::bind(&runtime.0).unwrap();
            let path = socket.path();
            // The test harness has other threads, which `serve` forbids: the
            // child only touches malloc (which glibc keeps usable across
            // fork) and descriptors until it exits.
            let proxy = socket
                .serve(
                    &daemon.socket,
                    Policy::new(&Permissions::default(), PORTAL_ALIASES),
                    Some(PeerRecords::new(&runtime.0, 77)),
                )
                .unwrap();
            // A client that stays connected, waiting for a name.
            let _client = ChildGuard::spawn(
                Command::new("/usr/bin/gdbus")
                    .args(["wait", "--session", "--timeout", "60", "org.example.Never"])
                    .env(
                        "DBUS_SESSION_BUS_ADDRESS",
                        format!("unix:path={}", path.display()),
                    )
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            );
            wait_until("the record is written", || records(&runtime.0).len() == 1);
            let (guid, name, content) = records(&runtime.0).remove(0);
            assert_eq!(guid.len(), 32);
            assert!(name.starts_with(":1."), "{name}");
            assert_eq!(content, "77\n");

            kill(proxy.pid, signal).unwrap();
            wait_until("the proxy exits", || is_zombie(proxy.pid));
            if signal == Signal::SIGTERM {
                // The proxy cleaned up after itself.
                assert_eq!(records(&runtime.0), vec![]);
            } else {
                // It could not; the parent sweeps.
                assert_eq!(records(&runtime.0).len(), 1);
            }
            drop(proxy);
            assert_eq!(records(&runtime.0), vec![]);
            assert!(!path.exists());
        }
    }
}

//! One proxy per launch: a process forked from the monitor before the sandbox
//! exists, serving the socket that becomes the sandbox's session bus.
//!
//! Being its own single-threaded process keeps the monitor's signal loop as
//! it is, and the proxy dies with the monitor (parent-death signal). Its
//! socket lives in `$XDG_RUNTIME_DIR/appbox/bus/<monitor pid>/` (0700), so
//! only the sandbox, which gets the socket itself bind-mounted, reaches it.

use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::policy::Policy;
use super::server;
use crate::sandbox::sys;

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
}

/// The proxy's socket, bound before the sandbox exists (the sandbox mounts
/// it); connections wait in its backlog until the proxy is forked.
pub struct ProxySocket {
    /// Taken by `serve`, which also takes `dir` (leaving it empty).
    listener: Option<UnixListener>,
    dir: PathBuf,
}

/// A running proxy; dropping it stops the proxy and removes its socket.
pub struct ProxyProcess {
    pid: Pid,
    dir: PathBuf,
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
        // Private from the start: the instance registry refuses an `appbox`
        // dir that others could enter.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&parent)
            .map_err(io("create", &parent))?;
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
    /// `policy`. Forked once the app runs, so the launch does not wait for
    /// it. The caller must be single-threaded.
    pub fn serve(mut self, upstream: &Path, policy: Policy) -> Result<ProxyProcess, ProxyError> {
        let dir = std::mem::take(&mut self.dir);
        let Some(listener) = self.listener.take() else {
            return Err(ProxyError::Fork(nix::errno::Errno::EBADF));
        };
        // SAFETY: the caller is single-threaded, so the child may run any code.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => run_child(listener, upstream, policy),
            Ok(nix::unistd::ForkResult::Parent { child }) => Ok(ProxyProcess { pid: child, dir }),
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

fn run_child(listener: UnixListener, upstream: &Path, policy: Policy) -> ! {
    // The monitor blocks the signals it forwards; the proxy must die of them.
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) };
    if nix::unistd::getppid().as_raw() == 1 {
        sys::exit_now(0);
    }
    // Nothing of the monitor's but stdio and the listener stays open.
    let keep = listener.as_raw_fd() as u32;
    let _ = sys::close_range(3, keep.saturating_sub(1).max(2));
    let _ = sys::close_range(keep + 1, u32::MAX);
    let code = match server::serve(listener, upstream, policy, None) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("appbox: the bus proxy stopped: {e}");
            1
        }
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
        // It ends at once; reaping it leaves no zombie behind.
        let _ = nix::sys::wait::waitpid(self.pid, None);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

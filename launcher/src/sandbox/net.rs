//! The sandbox's own network namespace, with `lo` up so apps can still talk to
//! themselves over loopback.
//!
//! Creating a network namespace is the slowest step of a launch (about 0.6 ms
//! here), so pid 1 does not wait for it: a helper child creates it while pid 1
//! builds the root, and pid 1 joins it afterwards, before the app starts. The
//! namespace is owned by the sandbox's user namespace, as if it had been made
//! by the first clone.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::sys;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot {what}")]
    Sys {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot set up the sandbox's network namespace: {0}")]
    Helper(String),
}

fn sys_err(what: &'static str) -> impl FnOnce(io::Error) -> NetError {
    move |source| NetError::Sys { what, source }
}

/// A network namespace being created by a helper child of pid 1.
pub struct PrivateNetwork {
    helper: OwnedFd,
    ready: std::fs::File,
    /// Keeps the helper, and so the namespace, alive until pid 1 has joined.
    _hold: OwnedFd,
}

impl PrivateNetwork {
    /// Forks the helper. The caller must be single-threaded.
    pub fn start() -> Result<Self, NetError> {
        let (ready_read, ready_write) = pipe()?;
        let (hold_read, hold_write) = pipe()?;
        // SAFETY: the caller is single-threaded, so the child may run any code.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                drop(ready_read);
                drop(hold_write);
                helper(ready_write, hold_read)
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                let helper =
                    sys::pidfd_open(child.as_raw()).map_err(sys_err("watch the network helper"))?;
                Ok(PrivateNetwork {
                    helper,
                    ready: std::fs::File::from(ready_read),
                    _hold: hold_write,
                })
            }
            Err(e) => Err(sys_err("start the network helper")(e.into())),
        }
    }

    /// Waits for the namespace and moves the calling process into it. The
    /// helper then exits on its own; pid 1 reaps it like any other child.
    pub fn join(mut self) -> Result<(), NetError> {
        let mut answer = Vec::new();
        self.ready
            .read_to_end(&mut answer)
            .map_err(sys_err("hear from the network helper"))?;
        match answer.as_slice() {
            [0] => {}
            [] => return Err(NetError::Helper("the helper died".into())),
            message => {
                return Err(NetError::Helper(
                    String::from_utf8_lossy(message).into_owned(),
                ))
            }
        }
        // SAFETY: setns with a pidfd we own and a namespace flag only.
        if unsafe { libc::setns(self.helper.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(sys_err("join the sandbox's network namespace")(
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

/// The helper child: makes the namespace, brings `lo` up, says so with one NUL
/// byte (or an error text), and stays until pid 1 closes the hold pipe.
fn helper(ready: OwnedFd, hold: OwnedFd) -> ! {
    let keep = [ready.as_raw_fd(), hold.as_raw_fd()];
    let result = close_all_but(&keep).and_then(|()| {
        // SAFETY: unshare with a namespace flag only.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(sys_err("create a network namespace")(
                io::Error::last_os_error(),
            ));
        }
        loopback_up()
    });
    let mut ready = std::fs::File::from(ready);
    let message = match result {
        Ok(()) => vec![0],
        Err(e) => super::chain(&e).into_bytes(),
    };
    let _ = ready.write_all(&message);
    drop(ready);
    if message != [0] {
        sys::exit_now(1);
    }
    let mut byte = [0u8; 1];
    let _ = std::fs::File::from(hold).read(&mut byte);
    sys::exit_now(0)
}

/// Closes every descriptor above stderr except `keep`, so the helper holds
/// nothing of pid 1's (the monitor waits for EOF on one of them).
fn close_all_but(keep: &[i32]) -> Result<(), NetError> {
    let mut keep = keep.to_vec();
    keep.sort_unstable();
    let mut first = 3;
    for &fd in &keep {
        if fd > first {
            sys::close_range(first as u32, fd as u32 - 1).map_err(sys_err("close descriptors"))?;
        }
        first = fd + 1;
    }
    sys::close_range(first as u32, u32::MAX).map_err(sys_err("close descriptors"))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), NetError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| sys_err("create a pipe")(e.into()))
}

fn loopback_up() -> Result<(), NetError> {
    let what = "bring up the loopback interface";
    // SAFETY: plain integer arguments; the result is checked below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(sys_err(what)(io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a new descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    set_loopback_up(socket.as_fd()).map_err(sys_err(what))
}

fn set_loopback_up(socket: BorrowedFd) -> io::Result<()> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `request` is a valid ifreq for SIOCGIFFLAGS/SIOCSIFFLAGS and outlives both calls.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(io::Error::last_os_error());
        }
        request.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

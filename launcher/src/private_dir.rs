//! appbox's directories under `$XDG_RUNTIME_DIR` (instance records, peer
//! records): opened one level at a time beneath the runtime dir, refusing
//! symlinks, and trusted only if each level is the user's alone.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::sandbox::hostprep::{open_dir_beneath, HostPrepError};
use crate::sandbox::sys::{openat2, RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS};

#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot create the directory {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: HostPrepError,
    },
    #[error(
        "{path} is not private to this user (owner {owner}, mode {mode:o}); refusing to trust it"
    )]
    NotPrivate {
        path: PathBuf,
        owner: u32,
        mode: u32,
    },
}

/// Refuses a directory or file that others could write, or that another
/// user owns; its status otherwise.
pub fn check_private(
    fd: BorrowedFd<'_>,
    path: &Path,
) -> Result<nix::sys::stat::FileStat, PrivateDirError> {
    let st = nix::sys::stat::fstat(fd).map_err(|e| PrivateDirError::Open {
        path: path.to_owned(),
        source: e.into(),
    })?;
    let uid = nix::unistd::geteuid().as_raw();
    if st.st_uid != uid || st.st_mode & 0o077 != 0 {
        return Err(PrivateDirError::NotPrivate {
            path: path.to_owned(),
            owner: st.st_uid,
            mode: st.st_mode & 0o7777,
        });
    }
    Ok(st)
}

/// Opens `base/names[0]/names[1]/…`, making missing levels (0700); each
/// level must be private to the user.
pub fn create_private_dirs(base: &Path, names: &[&str]) -> Result<OwnedFd, PrivateDirError> {
    // Creating, a level is never missing.
    open_private_dirs(base, names, true)?.ok_or_else(|| PrivateDirError::Open {
        path: base.to_owned(),
        source: io::ErrorKind::NotFound.into(),
    })
}

/// Opens `base/names[0]/names[1]/…`, each level private to the user. With
/// `create`, missing levels are made (0700); without, a missing level gives
/// `None`.
pub fn open_private_dirs(
    base: &Path,
    names: &[&str],
    create: bool,
) -> Result<Option<OwnedFd>, PrivateDirError> {
    let open_err = |path: &Path| {
        let path = path.to_owned();
        move |source| PrivateDirError::Open { path, source }
    };
    let mut dir = match openat2(
        None,
        base,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        RESOLVE_NO_SYMLINKS,
    ) {
        Ok(fd) => fd,
        Err(e) if !create && e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_err(base)(e)),
    };
    let mut shown = base.to_path_buf();
    for name in names {
        let next = if create {
            open_dir_beneath(dir.as_fd(), &shown, Path::new(name), 0o700, true).map_err(
                |source| PrivateDirError::Create {
                    path: shown.join(name),
                    source,
                },
            )?
        } else {
            match openat2(
                Some(dir.as_fd()),
                Path::new(name),
                libc::O_PATH | libc::O_DIRECTORY,
                0,
                RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
            ) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(open_err(&shown.join(name))(e)),
            }
        };
        shown.push(name);
        check_private(next.as_fd(), &shown)?;
        dir = next;
    }
    Ok(Some(dir))
}

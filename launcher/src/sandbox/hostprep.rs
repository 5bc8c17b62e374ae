//! Host-side preparation before the launch: the app's own home under
//! `~/.var/app/ID`, created fd-relative so a symlink the app planted on an
//! earlier run can never redirect it (CVE-2024-42472, GHSA-8688-9x26-hhxj).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use crate::plan::HostDir;
use crate::sandbox::sys::{openat2, RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS};

#[derive(Debug, thiserror::Error)]
pub enum HostPrepError {
    #[error("cannot open the home directory {path}")]
    Home {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing to use {path}: it is a symbolic link or not a directory; an app may have planted it. Move it away and try again")]
    NotADirectory { path: PathBuf },
    #[error("cannot create {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot hand {path} to the sandbox user")]
    Chown {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

const RESOLVE_STRICT: u64 = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

/// Opens (creating as needed) `rel` beneath `base`, one component at a time,
/// refusing any component that is a symlink or not a directory.
pub fn open_dir_beneath(
    base: BorrowedFd,
    base_path: &Path,
    rel: &Path,
    mode: u32,
    create: bool,
) -> Result<OwnedFd, HostPrepError> {
    open_dir_recording(base, base_path, rel, mode, create, &mut Vec::new())
}

/// A directory this launch created: its parent and its name.
type Created = (OwnedFd, std::ffi::OsString);

fn open_dir_recording(
    base: BorrowedFd,
    base_path: &Path,
    rel: &Path,
    mode: u32,
    create: bool,
    created: &mut Vec<Created>,
) -> Result<OwnedFd, HostPrepError> {
    let mut current: Option<OwnedFd> = None;
    let mut shown = base_path.to_path_buf();
    for component in rel.components() {
        let Component::Normal(name) = component else {
            return Err(HostPrepError::NotADirectory { path: shown });
        };
        shown.push(name);
        let parent = current.as_ref().map_or(base, |fd| fd.as_fd());
        if create {
            match nix::sys::stat::mkdirat(
                parent,
                name,
                nix::sys::stat::Mode::from_bits_truncate(mode),
            ) {
                Ok(()) => {
                    if let Ok(parent) = nix::unistd::dup(parent) {
                        created.push((parent, name.to_owned()));
                    }
                }
                Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => {
                    return Err(HostPrepError::Create {
                        path: shown,
                        source: e.into(),
                    })
                }
            }
        }
        let fd = openat2(
            Some(parent),
            Path::new(name),
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            RESOLVE_STRICT,
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR | libc::EXDEV) => HostPrepError::NotADirectory {
                path: shown.clone(),
            },
            _ => HostPrepError::Create {
                path: shown.clone(),
                source: e,
            },
        })?;
        current = Some(fd);
    }
    match current {
        Some(fd) => Ok(fd),
        None => nix::unistd::dup(base).map_err(|e| HostPrepError::Create {
            path: shown,
            source: e.into(),
        }),
    }
}

/// Directories created for one launch, removed again if the launch fails so
/// that a refused launch leaves the host as it was.
#[derive(Default)]
pub struct Prepared {
    created: Vec<Created>,
}

impl Prepared {
    pub fn roll_back(self) {
        for (parent, name) in self.created.into_iter().rev() {
            let _ = nix::unistd::unlinkat(
                parent.as_fd(),
                name.as_os_str(),
                nix::unistd::UnlinkatFlags::RemoveDir,
            );
        }
    }
}

/// Creates every planned directory under `home`.
pub fn prepare(home: &Path, dirs: &[HostDir]) -> Result<Prepared, HostPrepError> {
    let mut prepared = Prepared::default();
    match prepare_into(home, dirs, &mut prepared.created) {
        Ok(()) => Ok(prepared),
        Err(e) => {
            prepared.roll_back();
            Err(e)
        }
    }
}

fn prepare_into(
    home: &Path,
    dirs: &[HostDir],
    created: &mut Vec<Created>,
) -> Result<(), HostPrepError> {
    let home_fd = openat2(
        None,
        home,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        RESOLVE_NO_SYMLINKS,
    )
    .map_err(|source| HostPrepError::Home {
        path: home.to_owned(),
        source,
    })?;
    // Each directory is walked from the deepest one already opened above it.
    let mut opened: Vec<(&Path, OwnedFd)> = Vec::new();
    for dir in dirs {
        let (base_rel, base_fd) = opened
            .iter()
            .filter(|(path, _)| dir.path_in_home.starts_with(path))
            .max_by_key(|(path, _)| path.components().count())
            .map_or((Path::new(""), home_fd.as_fd()), |(path, fd)| {
                (*path, fd.as_fd())
            });
        let rest = dir
            .path_in_home
            .strip_prefix(base_rel)
            .unwrap_or(&dir.path_in_home);
        let before = created.len();
        let fd = open_dir_recording(base_fd, &home.join(base_rel), rest, 0o700, true, created)?;
        // Only what this launch made, or the app's own data, changes hands: an
        // existing directory of the user's stays the user's.
        let made_now = created.len() > before && !rest.as_os_str().is_empty();
        let hand_over = dir.chown_to.filter(|_| made_now || dir.chown_existing);
        if let Some((uid, gid)) = hand_over {
            nix::unistd::fchownat(
                fd.as_fd(),
                "",
                Some(uid.into()),
                Some(gid.into()),
                nix::fcntl::AtFlags::AT_EMPTY_PATH,
            )
            .map_err(|e| HostPrepError::Chown {
                path: home.join(&dir.path_in_home),
                source: e.into(),
            })?;
        }
        opened.push((&dir.path_in_home, fd));
    }
    Ok(())
}

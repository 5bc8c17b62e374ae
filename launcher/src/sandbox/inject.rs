//! Puts a granted host file into a running sandbox, and takes it out again,
//! with a bind mount made from outside: no FUSE (see DESIGN, "Files into a
//! running sandbox, without FUSE").
//!
//! [`inject`] and [`remove`] move the calling process into the sandbox's
//! namespaces for good, so they must run in a process of their own that does
//! nothing else afterwards, and that is single-threaded (setns into a user
//! namespace refuses a process with threads). `appbox document-mount` and
//! `appbox document-unmount` are such processes.
//!
//! The sequence, as verified on this kernel by an unprivileged user:
//! 1. setns into the sandbox's user namespace, through a pidfd of its pid 1;
//! 2. unshare the mount namespace: a private copy of the host's mounts, owned
//!    by that user namespace, where open_tree may clone a mount;
//! 3. open the host file there (open_tree refuses a file opened before the
//!    unshare with EINVAL), refusing symlinks, and check that it is the very
//!    file the portal opened when the user chose it (st_dev, st_ino), so a
//!    rename or symlink swapped in since then is refused;
//! 4. clone it as a detached mount, read-only unless the grant is writable;
//! 5. setns into the sandbox's mount namespace, create `<doc_id>/` (0555) and
//!    an empty `<name>` under its `/run/user/UID/doc/`, each fd-relative,
//!    beneath, without symlinks and without leaving the runtime dir's tmpfs,
//!    and attach the mount onto the file descriptor of that new empty file.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;

use crate::plan::{check_doc_id, check_document, documents_dir, DocumentMount, PlanError};
use crate::sandbox::sys::{
    change_mount_attrs, clone_tree, entry_names, is_mount_root, move_mount_onto, openat2,
    set_mount_attrs, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, RESOLVE_BENEATH,
    RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_NO_XDEV,
};

#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error(transparent)]
    BadDocument(#[from] PlanError),
    #[error("cannot inspect the chosen file's descriptor")]
    Chosen(#[source] io::Error),
    #[error("the chosen file is not a regular file; only regular files can be granted")]
    ChosenNotAFile,
    #[error("cannot {what}")]
    Join {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("refusing {path}: a component of the path is a symbolic link")]
    Symlink { path: PathBuf },
    #[error("cannot open {path}")]
    OpenHost {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing {path}: it is no longer the file that was chosen (it was renamed or replaced since)")]
    Swapped { path: PathBuf },
    #[error("{step} {path}")]
    Step {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing {path} in the sandbox: it is a symbolic link, not a directory, or on another file system; the app may have planted it")]
    Planted { path: PathBuf },
    #[error("{path} already exists in the sandbox; unmount document {doc_id} first")]
    Exists { path: PathBuf, doc_id: String },
    #[error("document {doc_id} is not in this sandbox")]
    NotFound { doc_id: String },
}

const STRICT: u64 = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
/// Strict, and never crossing into another mount: what is opened below the
/// sandbox's runtime dir lies on its private tmpfs, never on a bind of a host
/// directory.
const ON_TMPFS: u64 = STRICT | RESOLVE_NO_XDEV;

/// A file's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Identity {
    dev: u64,
    ino: u64,
}

/// What a descriptor is open on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Regular(Identity),
    Symlink,
    Other,
}

fn kind(fd: BorrowedFd) -> io::Result<Kind> {
    let st = nix::sys::stat::fstat(fd).map_err(io::Error::from)?;
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => Kind::Regular(Identity {
            dev: st.st_dev,
            ino: st.st_ino,
        }),
        libc::S_IFLNK => Kind::Symlink,
        _ => Kind::Other,
    })
}

fn join(what: &'static str) -> impl FnOnce(nix::errno::Errno) -> InjectError {
    move |e| {
        let source = io::Error::from(e);
        if e == nix::errno::Errno::EINVAL {
            InjectError::Join {
                what,
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{source} (the process must be single-threaded)"),
                ),
            }
        } else {
            InjectError::Join { what, source }
        }
    }
}

fn step<'p>(step: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> InjectError + 'p {
    move |source| InjectError::Step {
        step,
        path: path.to_owned(),
        source,
    }
}

/// Opens a directory that must not be a symlink, nor anything but a directory
/// on the runtime dir's tmpfs.
fn open_planted_dir(
    parent: BorrowedFd,
    name: &Path,
    shown: &Path,
    flags: i32,
) -> Result<OwnedFd, InjectError> {
    openat2(Some(parent), name, flags | libc::O_DIRECTORY, 0, ON_TMPFS).map_err(|e| {
        match e.raw_os_error() {
            Some(libc::ELOOP | libc::ENOTDIR | libc::EXDEV) => InjectError::Planted {
                path: shown.to_owned(),
            },
            _ => step("cannot open", shown)(e),
        }
    })
}

/// The sandbox's `/run/user/UID/doc`, opened in its mount namespace.
fn open_documents_dir(app_uid: u32) -> Result<(PathBuf, OwnedFd), InjectError> {
    let doc_path = documents_dir(app_uid);
    let root = openat2(None, Path::new("/"), libc::O_PATH | libc::O_DIRECTORY, 0, 0)
        .map_err(step("cannot open the sandbox's root", Path::new("/")))?;
    let runtime_path = doc_path.parent().unwrap_or(Path::new("/"));
    let relative = runtime_path.strip_prefix("/").unwrap_or(runtime_path);
    // The runtime dir is a tmpfs mount of its own: crossing into it is expected.
    let runtime = openat2(
        Some(root.as_fd()),
        relative,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        STRICT,
    )
    .map_err(step(
        "cannot open the sandbox's runtime directory",
        runtime_path,
    ))?;
    let doc = open_planted_dir(
        runtime.as_fd(),
        Path::new(crate::plan::DOCUMENTS_DIR),
        &doc_path,
        libc::O_PATH,
    )?;
    Ok((doc_path, doc))
}

/// Mounts the host file `doc.host_path` at `/run/user/<app_uid>/doc/<doc_id>/<name>`
/// in the running sandbox whose pid 1 `pidfd` names. `chosen` is a descriptor
/// (O_PATH is enough) of the file the user chose, opened by the portal at the
/// time: the path must still lead to that same regular file.
///
/// The calling process joins the sandbox's namespaces and stays there: run it
/// in a dedicated, single-threaded process.
pub fn inject(
    pidfd: BorrowedFd,
    app_uid: u32,
    doc: &DocumentMount,
    chosen: BorrowedFd,
) -> Result<(), InjectError> {
    check_document(doc)?;
    let Kind::Regular(wanted) = kind(chosen).map_err(InjectError::Chosen)? else {
        return Err(InjectError::ChosenNotAFile);
    };

    nix::sched::setns(pidfd, CloneFlags::CLONE_NEWUSER)
        .map_err(join("join the sandbox's user namespace"))?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNS)
        .map_err(join("make a private copy of the host's mounts"))?;

    let host = &doc.host_path;
    // O_NOFOLLOW: a final symlink is opened as itself, and refused below;
    // RESOLVE_NO_SYMLINKS refuses one anywhere before it with ELOOP.
    let source = openat2(
        None,
        host,
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
        RESOLVE_NO_SYMLINKS,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => InjectError::Symlink { path: host.clone() },
        _ => InjectError::OpenHost {
            path: host.clone(),
            source: e,
        },
    })?;
    match kind(source.as_fd()).map_err(|e| InjectError::OpenHost {
        path: host.clone(),
        source: e,
    })? {
        Kind::Regular(found) if found == wanted => {}
        Kind::Symlink => return Err(InjectError::Symlink { path: host.clone() }),
        _ => return Err(InjectError::Swapped { path: host.clone() }),
    }
    let tree = clone_tree(source.as_fd()).map_err(step("cannot copy the mount of", host))?;
    let attrs = if doc.writable {
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
    } else {
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV
    };
    set_mount_attrs(tree.as_fd(), attrs, true)
        .map_err(step("cannot restrict the mount of", host))?;
    drop(source);

    nix::sched::setns(pidfd, CloneFlags::CLONE_NEWNS)
        .map_err(join("join the sandbox's mount namespace"))?;
    let (doc_path, doc_dir) = open_documents_dir(app_uid)?;
    let id_path = doc_path.join(&doc.doc_id);
    let target_path = id_path.join(&doc.name);

    let created_dir = match nix::sys::stat::mkdirat(
        doc_dir.as_fd(),
        doc.doc_id.as_str(),
        nix::sys::stat::Mode::from_bits_truncate(0o555),
    ) {
        Ok(()) => true,
        Err(nix::errno::Errno::EEXIST) => false,
        Err(e) => return Err(step("cannot create", &id_path)(e.into())),
    };
    let result = attach(&tree, &doc_dir, doc, wanted, &id_path, &target_path);
    if result.is_err() && created_dir {
        let _ = nix::unistd::unlinkat(
            doc_dir.as_fd(),
            doc.doc_id.as_str(),
            nix::unistd::UnlinkatFlags::RemoveDir,
        );
    }
    result
}

/// Creates the empty mount point in `<doc_id>/` and attaches `tree` onto it.
fn attach(
    tree: &OwnedFd,
    doc_dir: &OwnedFd,
    doc: &DocumentMount,
    wanted: Identity,
    id_path: &Path,
    target_path: &Path,
) -> Result<(), InjectError> {
    let id_dir = open_planted_dir(
        doc_dir.as_fd(),
        Path::new(&doc.doc_id),
        id_path,
        libc::O_RDONLY,
    )?;
    // Read-only, whoever made it: GLib then writes in place instead of
    // creating a temporary file to rename over the mount point.
    nix::sys::stat::fchmod(&id_dir, nix::sys::stat::Mode::from_bits_truncate(0o555))
        .map_err(|e| step("cannot make read-only", id_path)(e.into()))?;
    // The same file, granted again (the launch mounted it already): at most
    // it becomes writable.
    if let Some(mounted) = mounted_document(id_dir.as_fd(), &doc.name, wanted) {
        if doc.writable {
            change_mount_attrs(mounted.as_fd(), 0, MOUNT_ATTR_RDONLY, false)
                .map_err(step("cannot make writable", target_path))?;
        }
        return Ok(());
    }
    // O_EXCL never follows a symlink and refuses anything already there.
    let target = openat2(
        Some(id_dir.as_fd()),
        Path::new(&doc.name),
        libc::O_RDONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        0o444,
        ON_TMPFS,
    )
    .map_err(|e| match e.raw_os_error() {
        // EXDEV: something is mounted there already.
        Some(libc::EEXIST | libc::EXDEV) => InjectError::Exists {
            path: target_path.to_owned(),
            doc_id: doc.doc_id.clone(),
        },
        Some(libc::ELOOP) => InjectError::Planted {
            path: target_path.to_owned(),
        },
        _ => step("cannot create", target_path)(e),
    })?;
    // The mount goes onto the very file just created, never through a path
    // the app could change in between.
    if let Err(e) = move_mount_onto(tree.as_fd(), target.as_fd()) {
        drop(target);
        let _ = nix::unistd::unlinkat(
            id_dir.as_fd(),
            doc.name.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        return Err(step("cannot attach the document at", target_path)(e));
    }
    Ok(())
}

/// The document mounted at `name` in `id_dir`, if it is the file `wanted`.
fn mounted_document(id_dir: BorrowedFd, name: &str, wanted: Identity) -> Option<OwnedFd> {
    let name = Path::new(name);
    if !is_mount_root(id_dir, name).ok()? {
        return None;
    }
    // Into the mount (no RESOLVE_NO_XDEV), but through no link.
    let fd = openat2(
        Some(id_dir),
        name,
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
        RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
    )
    .ok()?;
    match kind(fd.as_fd()).ok()? {
        Kind::Regular(found) if found == wanted => Some(fd),
        _ => None,
    }
}

/// Unmounts document `doc_id` from the running sandbox whose pid 1 `pidfd`
/// names, and removes its empty mount point and directory. The app keeps any
/// descriptor it already opened on the file.
///
/// Like [`inject`], this moves the calling process into the sandbox's
/// namespaces: run it in a dedicated, single-threaded process.
pub fn remove(pidfd: BorrowedFd, app_uid: u32, doc_id: &str) -> Result<(), InjectError> {
    check_doc_id(doc_id).map_err(|problem| PlanError::BadDocument {
        doc_id: crate::text::Escaped(doc_id).to_string(),
        name: String::new(),
        problem,
    })?;
    nix::sched::setns(pidfd, CloneFlags::CLONE_NEWUSER)
        .map_err(join("join the sandbox's user namespace"))?;
    nix::sched::setns(pidfd, CloneFlags::CLONE_NEWNS)
        .map_err(join("join the sandbox's mount namespace"))?;
    let (doc_path, doc_dir) = open_documents_dir(app_uid)?;
    let id_path = doc_path.join(doc_id);
    let id_dir =
        match open_planted_dir(doc_dir.as_fd(), Path::new(doc_id), &id_path, libc::O_RDONLY) {
            Err(InjectError::Step { source, .. })
                if source.raw_os_error() == Some(libc::ENOENT) =>
            {
                return Err(InjectError::NotFound {
                    doc_id: doc_id.to_owned(),
                })
            }
            other => other?,
        };
    // umount2 takes a path: a single name resolved from the document's
    // directory, never following a symlink.
    nix::unistd::fchdir(&id_dir).map_err(|e| step("cannot enter", &id_path)(e.into()))?;
    for name in entry_names(id_dir.as_fd()).map_err(step("cannot list", &id_path))? {
        let name = Path::new(OsStr::from_bytes(name.to_bytes()));
        let shown = id_path.join(name);
        let mut was_mounted = false;
        // Bounded: a mount point holds at most the mounts stacked on it.
        for _ in 0..16 {
            match is_mount_root(id_dir.as_fd(), name) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(step("cannot inspect", &shown)(e)),
            }
            nix::mount::umount2(
                name,
                nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW,
            )
            .map_err(|e| step("cannot unmount", &shown)(e.into()))?;
            was_mounted = true;
        }
        if was_mounted {
            let _ = nix::unistd::unlinkat(
                id_dir.as_fd(),
                name,
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
    }
    // Left in place if the app put something else there.
    match nix::unistd::unlinkat(
        doc_dir.as_fd(),
        doc_id,
        nix::unistd::UnlinkatFlags::RemoveDir,
    ) {
        Ok(()) | Err(nix::errno::Errno::ENOTEMPTY) => Ok(()),
        Err(e) => Err(step("cannot remove", &id_path)(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(doc_id: &str, name: &str, host_path: &str) -> DocumentMount {
        DocumentMount {
            doc_id: doc_id.to_owned(),
            name: name.to_owned(),
            host_path: PathBuf::from(host_path),
            writable: false,
        }
    }

    fn open(path: &Path, flags: i32) -> OwnedFd {
        openat2(None, path, flags, 0, 0).expect("open a test path")
    }

    // Each refusal below happens before any namespace is joined, so these run
    // safely inside the (multithreaded) test process.

    #[test]
    fn bad_documents_are_refused_before_anything_else() {
        let pidfd = open(Path::new("/"), libc::O_PATH);
        let chosen = open(Path::new("/proc/self/status"), libc::O_PATH);
        for bad in [
            doc("../../..", "x", "/etc/hostname"),
            doc("0123abcd", "..", "/etc/hostname"),
            doc("0123abcd", "a/b", "/etc/hostname"),
            doc("0123abcd", "x", "etc/hostname"),
            doc("0123abcd", "x", "/etc/../etc/hostname"),
        ] {
            let result = inject(pidfd.as_fd(), 1000, &bad, chosen.as_fd());
            assert!(
                matches!(result, Err(InjectError::BadDocument(_))),
                "{bad:?}: {result:?}"
            );
        }
        let result = remove(pidfd.as_fd(), 1000, "../../..");
        assert!(
            matches!(result, Err(InjectError::BadDocument(_))),
            "{result:?}"
        );
    }

    #[test]
    fn only_a_regular_chosen_file_is_accepted() {
        let pidfd = open(Path::new("/"), libc::O_PATH);
        let dir = open(Path::new("/"), libc::O_PATH | libc::O_DIRECTORY);
        let result = inject(
            pidfd.as_fd(),
            1000,
            &doc("0123abcd", "x", "/etc/hostname"),
            dir.as_fd(),
        );
        assert!(
            matches!(result, Err(InjectError::ChosenNotAFile)),
            "{result:?}"
        );
    }

    #[test]
    fn kinds_tell_files_symlinks_and_the_rest_apart() {
        let dir = std::env::temp_dir().join(format!("appbox-inject-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("file");
        std::fs::write(&file, "x").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink("file", &link).unwrap();
        let nofollow = libc::O_PATH | libc::O_NOFOLLOW;
        // Held open, so its inode cannot be reused for the file made below.
        let held = open(&file, nofollow);
        let a = kind(held.as_fd()).unwrap();
        let b = kind(open(&file, libc::O_RDONLY).as_fd()).unwrap();
        assert!(matches!(a, Kind::Regular(_)));
        assert_eq!(a, b, "the same file through two descriptors");
        assert_eq!(kind(open(&link, nofollow).as_fd()).unwrap(), Kind::Symlink);
        assert_eq!(kind(open(&dir, nofollow).as_fd()).unwrap(), Kind::Other);
        // A new file at the same path is another file.
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, "x").unwrap();
        let c = kind(open(&file, nofollow).as_fd()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_ne!(a, c);
    }
}

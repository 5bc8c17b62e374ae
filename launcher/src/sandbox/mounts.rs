//! Builds the sandbox's root from the plan's mount operations, then pivots into it.
//!
//! Every bind source is opened before anything is mounted, with the trust the plan
//! gives it. Every mount point is created and opened component by component under
//! the new root with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, and mounts are attached
//! to the opened descriptor, never to a path that could be swapped
//! (CVE-2026-87766). Nothing here runs outside the sandbox's own mount namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;

use crate::plan::{BindAccess, MountOp, SourceTrust};
use crate::sandbox::sys::{
    self, clone_tree, move_mount_onto, openat2, set_mount_attrs, FsContext, MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, RESOLVE_BENEATH,
    RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS,
};
use crate::xauth;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot share {path}: a component of the path is a symbolic link; grant the real path instead")]
    SymlinkInSource { path: PathBuf },
    #[error("cannot open {path} to share it")]
    OpenSource {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("mount point {path}: a component is a symbolic link or not a directory")]
    BadMountPoint { path: PathBuf },
    #[error("{step} {path}")]
    Step {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn step<'p>(step: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> MountError + 'p {
    move |source| MountError::Step {
        step,
        path: path.to_owned(),
        source,
    }
}

fn errno(e: nix::errno::Errno) -> io::Error {
    e.into()
}

/// The largest Xauthority file read; real ones hold a few cookies.
const XAUTHORITY_MAX: i64 = 64 * 1024;

/// What a mount operation needs from the host, fetched before the new root exists.
pub enum Source {
    None,
    Path(OwnedFd),
    Bytes(Vec<u8>),
    /// An optional source that does not exist on this host.
    Missing,
}

/// Opens every bind source and reads every host file the plan copies.
pub fn open_sources(mounts: &[MountOp], hostname: &str) -> Result<Vec<Source>, MountError> {
    mounts
        .iter()
        .map(|op| match op {
            MountOp::Bind {
                source,
                trust,
                optional,
                ..
            } => {
                let opened = match trust {
                    SourceTrust::System => openat2(None, source, libc::O_PATH, 0, 0),
                    SourceTrust::NoSymlinks | SourceTrust::RegularFile => openat2(
                        None,
                        source,
                        // No O_NOFOLLOW: with it, O_PATH would return a final
                        // symlink itself instead of failing with ELOOP.
                        libc::O_PATH,
                        0,
                        RESOLVE_NO_SYMLINKS,
                    ),
                };
                match opened {
                    Ok(fd) if *trust == SourceTrust::RegularFile && !is_regular_file(&fd) => {
                        eprintln!(
                            "appbox: note: {} is no longer a regular file; it is left out",
                            source.display()
                        );
                        Ok(Source::Missing)
                    }
                    Ok(fd) => Ok(Source::Path(fd)),
                    Err(e) if *optional && e.raw_os_error() == Some(libc::ENOENT) => {
                        Ok(Source::Missing)
                    }
                    // A granted document's path that now goes through a
                    // link leaves the document out, not the app.
                    Err(e)
                        if *trust == SourceTrust::RegularFile
                            && e.raw_os_error() == Some(libc::ELOOP) =>
                    {
                        eprintln!(
                            "appbox: note: {} now goes through a symbolic link; it is left out",
                            source.display()
                        );
                        Ok(Source::Missing)
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                        Err(MountError::SymlinkInSource {
                            path: source.clone(),
                        })
                    }
                    Err(e) => Err(MountError::OpenSource {
                        path: source.clone(),
                        source: e,
                    }),
                }
            }
            MountOp::Xauthority {
                source, display, ..
            } => {
                // Symlinks are followed (display managers link ~/.Xauthority into
                // their run dir): only the cookies for one display are copied out.
                // It must be a small regular file, so a FIFO or /dev/zero planted
                // there by an app cannot hang or exhaust the launch.
                let read = openat2(
                    None,
                    source,
                    libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
                    0,
                    0,
                )
                .and_then(|fd| {
                    let st = nix::sys::stat::fstat(&fd).map_err(io::Error::from)?;
                    if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size > XAUTHORITY_MAX {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "not a regular file of at most 64 KiB",
                        ));
                    }
                    let mut bytes = Vec::new();
                    io::Read::read_to_end(
                        &mut io::Read::take(std::fs::File::from(fd), XAUTHORITY_MAX as u64),
                        &mut bytes,
                    )?;
                    Ok(bytes)
                });
                let bytes = read.unwrap_or_else(|e| {
                    eprintln!(
                        "appbox: note: socket=x11: cannot read the X authority file {}: {e}; the app may not be allowed to connect",
                        source.display()
                    );
                    Vec::new()
                });
                Ok(Source::Bytes(xauth::filter_for_display(
                    &bytes, display, hostname,
                )))
            }
            _ => Ok(Source::None),
        })
        .collect()
}

fn is_regular_file(fd: &OwnedFd) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
}

const STRICT: u64 = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

/// The root of each mount attached while building, by target: Landlock rules
/// are anchored on these, so they name exactly what was mounted.
pub struct Anchor {
    pub fd: OwnedFd,
    pub is_dir: bool,
    /// Made read-only, recursively, by the launcher.
    pub read_only: bool,
}

/// What building the root produced.
#[derive(Default)]
pub struct BuiltRoot {
    /// Targets of optional binds that were skipped: their host side is missing.
    pub skipped: BTreeSet<PathBuf>,
    pub anchors: BTreeMap<PathBuf, Anchor>,
}

/// The new root while it is being built. Directories opened on the way are
/// cached, so a mount point's parents are walked once; the cache forgets a path
/// as soon as something is mounted on or above it.
struct NewRoot {
    fd: OwnedFd,
    dirs: BTreeMap<PathBuf, OwnedFd>,
    anchors: BTreeMap<PathBuf, Anchor>,
}

impl NewRoot {
    /// The nearest opened ancestor of `path` (or `path` itself).
    fn nearest(&self, path: &Path) -> (PathBuf, BorrowedFd<'_>) {
        for ancestor in path.ancestors() {
            if let Some(anchor) = self.anchors.get(ancestor).filter(|a| a.is_dir) {
                return (ancestor.to_path_buf(), anchor.fd.as_fd());
            }
            if let Some(fd) = self.dirs.get(ancestor) {
                return (ancestor.to_path_buf(), fd.as_fd());
            }
        }
        (PathBuf::from("/"), self.fd.as_fd())
    }

    /// Opens `path` (absolute inside the sandbox) as a directory, creating
    /// missing components with `mode`, each strictly beneath the last.
    fn dir(&mut self, path: &Path, mode: u32) -> Result<BorrowedFd<'_>, MountError> {
        let (mut walked, _) = self.nearest(path);
        let rest = path
            .strip_prefix(&walked)
            .map_err(|_| MountError::BadMountPoint {
                path: path.to_owned(),
            })?
            .to_path_buf();
        for component in rest.components() {
            let Component::Normal(name) = component else {
                return Err(MountError::BadMountPoint {
                    path: path.to_owned(),
                });
            };
            let parent = self.nearest(&walked).1;
            match nix::sys::stat::mkdirat(parent, name, Mode::from_bits_truncate(mode)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(step("creating mount point", path)(errno(e))),
            }
            let opened = openat2(
                Some(parent),
                Path::new(name),
                libc::O_PATH | libc::O_DIRECTORY,
                0,
                STRICT,
            )
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP | libc::ENOTDIR | libc::EXDEV) => MountError::BadMountPoint {
                    path: path.to_owned(),
                },
                _ => step("opening mount point", path)(e),
            })?;
            walked.push(name);
            self.dirs.insert(walked.clone(), opened);
        }
        Ok(self.nearest(path).1)
    }

    /// Records a mount attached at `path`: whatever was cached there or below
    /// is now hidden.
    fn mounted(&mut self, path: &Path, mount: OwnedFd, is_dir: bool, read_only: bool) {
        self.dirs.retain(|cached, _| !cached.starts_with(path));
        self.anchors.retain(|cached, _| !cached.starts_with(path));
        self.anchors.insert(
            path.to_owned(),
            Anchor {
                fd: mount,
                is_dir,
                read_only,
            },
        );
    }

    /// The parent directory of `path` and the final name.
    fn parent<'p>(
        &mut self,
        path: &'p Path,
    ) -> Result<(BorrowedFd<'_>, &'p std::ffi::OsStr), MountError> {
        let name = path.file_name().ok_or_else(|| MountError::BadMountPoint {
            path: path.to_owned(),
        })?;
        let parent = path.parent().unwrap_or(Path::new("/"));
        Ok((self.dir(parent, 0o755)?, name))
    }

    /// Opens `path` with `flags`, creating an empty file first if missing.
    fn file(&mut self, path: &Path, mode: u32, flags: i32) -> Result<OwnedFd, MountError> {
        let (parent, name) = self.parent(path)?;
        let open = |flags: i32| {
            openat2(
                Some(parent),
                Path::new(name),
                flags,
                // openat2 refuses a mode unless it creates.
                if flags & libc::O_CREAT != 0 { mode } else { 0 },
                STRICT,
            )
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP | libc::EXDEV) => MountError::BadMountPoint {
                    path: path.to_owned(),
                },
                _ => step("creating", path)(e),
            })
        };
        if flags & libc::O_PATH != 0 {
            // O_PATH cannot create: make an empty file first if there is none.
            match open(libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY) {
                Ok(_) => {}
                Err(MountError::Step { source, .. })
                    if source.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(e),
            }
            open(flags)
        } else {
            open(libc::O_CREAT | flags)
        }
    }

    fn write_file(
        &mut self,
        path: &Path,
        contents: &[u8],
        mode: u32,
    ) -> Result<std::fs::File, MountError> {
        let fd = self.file(path, mode, libc::O_WRONLY | libc::O_EXCL)?;
        let mut file = std::fs::File::from(fd);
        file.write_all(contents).map_err(step("writing", path))?;
        Ok(file)
    }
}

/// Mounts a fresh filesystem of `fstype` on the directory `path`.
fn mount_fresh(
    root: &mut NewRoot,
    fstype: &std::ffi::CStr,
    options: &[(&str, String)],
    attrs: u64,
    path: &Path,
    mode: u32,
) -> Result<(), MountError> {
    let context = FsContext::open(fstype).map_err(step("creating a filesystem for", path))?;
    for (key, value) in options {
        context
            .set_string(key, value)
            .map_err(step("configuring the filesystem for", path))?;
    }
    let mount = context.mount(attrs).map_err(step("mounting", path))?;
    let target = root.dir(path, mode)?;
    move_mount_onto(mount.as_fd(), target).map_err(step("attaching", path))?;
    root.mounted(path, mount, true, false);
    Ok(())
}

/// Where the new root is assembled before the pivot. It is this namespace's own
/// mount over the host's `/tmp`, so nothing outside ever sees it.
const STAGING: &str = "/tmp";

/// Builds the root and pivots into it. `app_owner` owns the files written for
/// the app, such as its Xauthority.
pub fn build_root(
    mounts: &[MountOp],
    sources: Vec<Source>,
    app_owner: (u32, u32),
) -> Result<BuiltRoot, MountError> {
    let root_path = Path::new("/");
    // Keep every mount event inside this namespace.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| step("making the mount tree private at", root_path)(errno(e)))?;

    let staging = Path::new(STAGING);
    let staging_fd = openat2(None, staging, libc::O_PATH | libc::O_DIRECTORY, 0, 0)
        .map_err(step("opening", staging))?;
    let root_mount = {
        let context =
            FsContext::open(c"tmpfs").map_err(step("creating the root filesystem at", staging))?;
        context
            .set_string("mode", "0755".to_owned().as_str())
            .map_err(step("configuring the root filesystem at", staging))?;
        context
            .mount(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
            .map_err(step("mounting the root filesystem at", staging))?
    };
    move_mount_onto(root_mount.as_fd(), staging_fd.as_fd())
        .map_err(step("attaching the root filesystem at", staging))?;
    let mut root = NewRoot {
        fd: root_mount,
        dirs: BTreeMap::new(),
        anchors: BTreeMap::new(),
    };

    let mut skipped = BTreeSet::new();
    for (op, source) in mounts.iter().zip(sources) {
        apply(&mut root, op, source, app_owner, &mut skipped)?;
    }
    // Drop the cached directories; only the mount anchors are kept.
    let NewRoot {
        fd: root_fd,
        anchors,
        ..
    } = root;

    // pivot_root(".", ".") stacks the old root on the new one; detaching it
    // leaves only the new root, with no path back to the host.
    nix::unistd::fchdir(root_fd.as_fd()).map_err(|e| step("entering", staging)(errno(e)))?;
    sys::pivot_root(Path::new("."), Path::new(".")).map_err(step("pivoting into", staging))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| step("detaching the host root from", root_path)(errno(e)))?;
    nix::unistd::chdir("/").map_err(|e| step("entering", root_path)(errno(e)))?;
    let new_root = openat2(None, root_path, libc::O_PATH | libc::O_DIRECTORY, 0, 0)
        .map_err(step("opening", root_path))?;
    set_mount_attrs(
        new_root.as_fd(),
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        false,
    )
    .map_err(step("making read-only", root_path))?;
    Ok(BuiltRoot { skipped, anchors })
}

fn apply(
    root: &mut NewRoot,
    op: &MountOp,
    source: Source,
    app_owner: (u32, u32),
    skipped: &mut BTreeSet<PathBuf>,
) -> Result<(), MountError> {
    match op {
        MountOp::Dir { path, mode } => {
            let fd = root.dir(path, *mode)?;
            // mkdirat honours only the permission bits; set sticky bits explicitly.
            nix::sys::stat::fchmodat(
                fd,
                ".",
                Mode::from_bits_truncate(*mode),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| step("setting the mode of", path)(errno(e)))?;
        }
        MountOp::Tmpfs { path, mode, owner } => {
            let mut options = vec![("mode", format!("{mode:o}"))];
            if let Some((uid, gid)) = owner {
                options.push(("uid", uid.to_string()));
                options.push(("gid", gid.to_string()));
            }
            mount_fresh(
                root,
                c"tmpfs",
                &options,
                MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                path,
                0o755,
            )?;
        }
        MountOp::Bind { dest, access, .. } => {
            let source = match source {
                Source::Path(fd) => fd,
                _ => {
                    skipped.insert(dest.clone());
                    return Ok(());
                }
            };
            let is_dir = nix::sys::stat::fstat(source.as_fd())
                .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                .map_err(|e| step("inspecting the source of", dest)(errno(e)))?;
            let tree = clone_tree(source.as_fd()).map_err(step("copying the mount for", dest))?;
            let attrs = match access {
                BindAccess::ReadOnly => MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                BindAccess::ReadWrite => MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                BindAccess::Device => MOUNT_ATTR_NOSUID,
            };
            set_mount_attrs(tree.as_fd(), attrs, true).map_err(step("restricting", dest))?;
            if is_dir {
                let target = root.dir(dest, 0o755)?;
                move_mount_onto(tree.as_fd(), target).map_err(step("attaching", dest))?;
            } else {
                let target = root.file(dest, 0o644, libc::O_PATH)?;
                move_mount_onto(tree.as_fd(), target.as_fd()).map_err(step("attaching", dest))?;
            }
            root.mounted(dest, tree, is_dir, *access == BindAccess::ReadOnly);
        }
        MountOp::Proc { path } => mount_fresh(
            root,
            c"proc",
            &[],
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
            path,
            0o555,
        )?,
        MountOp::Devpts { path } => mount_fresh(
            root,
            c"devpts",
            &[("ptmxmode", "0666".into()), ("mode", "0620".into())],
            MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
            path,
            0o755,
        )?,
        MountOp::Symlink { target, path } => {
            let (parent, name) = root.parent(path)?;
            nix::unistd::symlinkat(target.as_path(), parent, name)
                .map_err(|e| step("creating the symlink", path)(errno(e)))?;
        }
        MountOp::File {
            path,
            contents,
            mode,
        } => {
            root.write_file(path, contents.as_bytes(), *mode)?;
        }
        MountOp::Xauthority { path, .. } => {
            let bytes = match source {
                Source::Bytes(bytes) => bytes,
                _ => Vec::new(),
            };
            let file = root.write_file(path, &bytes, 0o600)?;
            let (uid, gid) = app_owner;
            nix::unistd::fchown(&file, Some(uid.into()), Some(gid.into()))
                .map_err(|e| step("handing to the app", path)(errno(e)))?;
        }
    }
    Ok(())
}

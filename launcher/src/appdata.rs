//! The data apps keep in `~/.var/app/ID`: how much each holds, and deleting
//! it. The app wrote everything in there (and with `filesystem=home` it can
//! replace `~/.var` itself), so every step is relative to a directory
//! descriptor and follows no symlink: a planted link is removed or counted
//! as a link, never entered.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::fcntl::AtFlags;
use nix::sys::stat::{fstatat, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::appid::AppId;
use crate::sandbox::sys::{entry_names, openat2, RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS};

#[derive(Debug, thiserror::Error)]
pub enum AppDataError {
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One app's data directory and the disk space it takes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppData {
    pub id: String,
    pub bytes: u64,
}

/// Where the apps' data lives under `home`.
fn data_root(home: &Path) -> PathBuf {
    home.join(".var/app")
}

/// The error for a failure to `what` the path `path`.
fn io_error(what: &'static str, path: PathBuf) -> impl FnOnce(io::Error) -> AppDataError {
    move |source| AppDataError::Io { what, path, source }
}

/// `~/.var/app`, or `None` when no app has kept data yet.
fn open_root(home: &Path) -> Result<Option<OwnedFd>, AppDataError> {
    let home_fd = openat2(None, home, libc::O_RDONLY | libc::O_DIRECTORY, 0, 0)
        .map_err(io_error("open", data_root(home)))?;
    match openat2(
        Some(home_fd.as_fd()),
        Path::new(".var/app"),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
        RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(io_error("open", data_root(home))(e)),
    }
}

/// Every app data directory under `home`, with its size; entries whose name
/// is not an app id are not appbox's and are left out.
pub fn list(home: &Path) -> Result<Vec<AppData>, AppDataError> {
    let Some(root) = open_root(home)? else {
        return Ok(Vec::new());
    };
    let mut all = Vec::new();
    for name in entry_names(root.as_fd()).map_err(io_error("read", data_root(home)))? {
        let Some(id) = name.to_str().ok().filter(|id| AppId::parse(id).is_ok()) else {
            continue;
        };
        let path = data_root(home).join(id);
        let bytes = match open_dir(&root, &name) {
            Ok(dir) => disk_usage(dir).map_err(io_error("measure", path))?,
            // A file or link where a directory belongs holds no app data.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(io_error("open", path)(e)),
        };
        all.push(AppData {
            id: id.to_owned(),
            bytes,
        });
    }
    all.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(all)
}

/// Deletes `~/.var/app/ID` and everything in it. Whether there was anything.
pub fn delete(home: &Path, id: &AppId) -> Result<bool, AppDataError> {
    let Some(root) = open_root(home)? else {
        return Ok(false);
    };
    let name = CString::new(id.as_str())
        .map_err(|_| io_error("name", data_root(home))(io::ErrorKind::InvalidInput.into()))?;
    remove_tree(&root, &name).map_err(io_error("delete", data_root(home).join(id.as_str())))
}

/// Opens the directory `name` in `parent`, refusing a symlink.
fn open_dir(parent: &OwnedFd, name: &CStr) -> io::Result<OwnedFd> {
    openat2(
        Some(parent.as_fd()),
        Path::new(OsStr::from_bytes(name.to_bytes())),
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
        RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
    )
}

/// What an entry is, not following a symlink; `None` when it is gone.
fn stat(dir: &OwnedFd, name: &CStr) -> io::Result<Option<nix::sys::stat::FileStat>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(stat)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn is_dir(stat: &nix::sys::stat::FileStat) -> bool {
    SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

/// The disk space of a tree, in bytes. Walked with a stack rather than
/// recursion, so a deep tree cannot exhaust ours; a directory is opened only
/// when its turn comes, so the descriptors held grow with the tree's depth,
/// not its width.
fn disk_usage(top: OwnedFd) -> io::Result<u64> {
    let mut total = 0u64;
    let mut pending: Vec<(Rc<OwnedFd>, CString)> = Vec::new();
    let mut next = Some(top);
    loop {
        if let Some(dir) = next.take() {
            let dir = Rc::new(dir);
            for name in entry_names(dir.as_fd())? {
                let Some(stat) = stat(&dir, &name)? else {
                    continue;
                };
                total = total.saturating_add(u64::try_from(stat.st_blocks).unwrap_or(0) * 512);
                if is_dir(&stat) {
                    pending.push((Rc::clone(&dir), name));
                }
            }
        }
        let Some((parent, name)) = pending.pop() else {
            return Ok(total);
        };
        match open_dir(&parent, &name) {
            Ok(sub) => next = Some(sub),
            // Replaced since the stat: it is not ours to count.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Removes `name` in `parent` and all below it. Each directory is emptied
/// through its own descriptor before it is removed from its parent's.
fn remove_tree(parent: &OwnedFd, name: &CStr) -> io::Result<bool> {
    let Some(top) = stat(parent, name)? else {
        return Ok(false);
    };
    if !is_dir(&top) {
        unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)?;
        return Ok(true);
    }
    // Each frame: an open directory, its name in the frame below, and the
    // entries still to remove.
    let first = open_dir(parent, name)?;
    let first_names = entry_names(first.as_fd())?;
    let mut frames = vec![(first, name.to_owned(), first_names)];
    loop {
        let Some((_, _, entries)) = frames.last_mut() else {
            return Ok(true);
        };
        if let Some(entry) = entries.pop() {
            let Some((dir, _, _)) = frames.last() else {
                return Ok(true);
            };
            match stat(dir, &entry)? {
                None => {}
                Some(stat) if is_dir(&stat) => {
                    let sub = open_dir(dir, &entry)?;
                    let sub_names = entry_names(sub.as_fd())?;
                    frames.push((sub, entry, sub_names));
                }
                Some(_) => unlink_entry(dir, &entry, UnlinkatFlags::NoRemoveDir)?,
            }
            continue;
        }
        let Some((_, done, _)) = frames.pop() else {
            return Ok(true);
        };
        let holder = frames.last().map_or(parent, |(fd, _, _)| fd);
        unlink_entry(holder, &done, UnlinkatFlags::RemoveDir)?;
    }
}

fn unlink_entry(dir: &OwnedFd, name: &CStr, flags: UnlinkatFlags) -> io::Result<()> {
    match unlinkat(dir, name, flags) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A scratch home, removed on drop.
    struct Home(PathBuf);

    impl Home {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Home {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn home() -> Home {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("appbox-appdata-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Home(dir)
    }

    #[test]
    fn lists_sizes_and_deletes_without_following_links() {
        let home = home();
        let outside = home.path().join("precious");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"keep").unwrap();

        let data = home.path().join(".var/app/org.example.App");
        std::fs::create_dir_all(data.join("a/b/c")).unwrap();
        std::fs::write(data.join("a/b/c/file"), vec![1u8; 10_000]).unwrap();
        symlink(&outside, data.join("link")).unwrap();
        symlink(&outside, data.join("a/b/link")).unwrap();
        // Not an app id: not ours.
        std::fs::create_dir_all(home.path().join(".var/app/not an id")).unwrap();

        let listed = list(home.path()).unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].id, "org.example.App");
        assert!(listed[0].bytes >= 10_000, "{listed:?}");

        let id = AppId::parse("org.example.App").unwrap();
        assert!(delete(home.path(), &id).unwrap());
        assert!(!data.exists());
        assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"keep");
        assert!(!delete(home.path(), &id).unwrap());
    }

    #[test]
    fn a_var_that_is_a_symlink_is_refused() {
        let home = home();
        let elsewhere = home.path().join("elsewhere");
        std::fs::create_dir_all(elsewhere.join("app/org.example.App")).unwrap();
        symlink(&elsewhere, home.path().join(".var")).unwrap();
        let id = AppId::parse("org.example.App").unwrap();
        assert!(delete(home.path(), &id).is_err());
        assert!(list(home.path()).is_err());
        assert!(elsewhere.join("app/org.example.App").is_dir());
    }

    #[test]
    fn a_deep_tree_is_measured_and_removed() {
        let home = home();
        let mut deep = home.path().join(".var/app/org.example.Deep");
        for _ in 0..300 {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        let listed = list(home.path()).unwrap();
        assert!(listed[0].bytes > 0);
        let id = AppId::parse("org.example.Deep").unwrap();
        assert!(delete(home.path(), &id).unwrap());
        assert!(list(home.path()).unwrap().is_empty());
    }
}

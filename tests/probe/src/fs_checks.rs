//! Checks of the file system view: what is hidden, read-only, writable or readable.

use crate::errno;
use crate::param;
use crate::report::{printable, Outcome};
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

fn show(path: &Path) -> String {
    printable(&path.to_string_lossy())
}

/// A name inside `dir` that is unique to this process.
fn scratch(dir: &Path, stem: &str) -> PathBuf {
    dir.join(format!("{stem}-{}", std::process::id()))
}

/// Creates a new file (O_CREAT|O_EXCL|O_WRONLY, never following a symlink).
fn create_new(path: &Path) -> io::Result<fs::File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// lstat(PATH) must fail.
pub fn hidden(param: &OsStr) -> Outcome {
    let path = Path::new(param);
    match fs::symlink_metadata(path) {
        Ok(meta) => Outcome::fail(format!(
            "{} visible (mode {:o})",
            show(path),
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions())
        )),
        Err(err) => Outcome::pass(format!(
            "lstat {}: {}",
            show(path),
            errno::describe_io(&err)
        )),
    }
}

/// lstat(PATH) must succeed: the path is visible.
pub fn exists(param: &OsStr) -> Outcome {
    let path = Path::new(param);
    match fs::symlink_metadata(path) {
        Ok(meta) => Outcome::pass(format!(
            "{} visible (mode {:o})",
            show(path),
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions())
        )),
        Err(err) => Outcome::fail(format!(
            "lstat {}: {}",
            show(path),
            errno::describe_io(&err)
        )),
    }
}

/// Renaming PATH (to PATH.moved) must fail: it is a mount point or read-only.
pub fn rename_refused(param: &OsStr) -> Outcome {
    let path = Path::new(param);
    let mut moved = param.to_owned();
    moved.push(".moved");
    match fs::rename(path, &moved) {
        Ok(()) => {
            let _ = fs::rename(&moved, path);
            Outcome::fail(format!("renamed {} away (and back)", show(path)))
        }
        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
            Outcome::fail(format!("{} does not exist", show(path)))
        }
        Err(err) => Outcome::pass(format!(
            "rename {}: {}",
            show(path),
            errno::describe_io(&err)
        )),
    }
}

fn is_refusal(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EROFS | libc::EACCES | libc::EPERM)
    )
}

/// Creating a file and a directory in PATH must fail with EROFS, EACCES or EPERM.
pub fn readonly(param: &OsStr) -> Outcome {
    let dir = Path::new(param);
    let file = scratch(dir, ".appbox-probe");
    let subdir = scratch(dir, ".appbox-probe-dir");
    let mut passed = true;
    let file_detail = match create_new(&file) {
        Ok(_) => {
            passed = false;
            let cleanup = fs::remove_file(&file).map_or_else(
                |err| format!(", unlink failed: {}", errno::describe_io(&err)),
                |()| String::new(),
            );
            format!("created {}{cleanup}", show(&file))
        }
        Err(err) => {
            passed &= is_refusal(&err);
            format!("create file: {}", errno::describe_io(&err))
        }
    };
    let dir_detail = match fs::DirBuilder::new().mode(0o700).create(&subdir) {
        Ok(()) => {
            passed = false;
            let cleanup = fs::remove_dir(&subdir).map_or_else(
                |err| format!(", rmdir failed: {}", errno::describe_io(&err)),
                |()| String::new(),
            );
            format!("created {}{cleanup}", show(&subdir))
        }
        Err(err) => {
            passed &= is_refusal(&err);
            format!("mkdir: {}", errno::describe_io(&err))
        }
    };
    Outcome::verdict(
        passed,
        format!("{}: {file_detail}; {dir_detail}", show(dir)),
    )
}

/// Creating and unlinking a file in PATH must succeed.
pub fn writable(param: &OsStr) -> Outcome {
    let file = scratch(Path::new(param), ".appbox-probe");
    if let Err(err) = create_new(&file) {
        return Outcome::fail(format!(
            "create {}: {}",
            show(&file),
            errno::describe_io(&err)
        ));
    }
    match fs::remove_file(&file) {
        Ok(()) => Outcome::pass(format!("created and removed {}", show(&file))),
        Err(err) => Outcome::fail(format!(
            "created {} but unlink failed: {}",
            show(&file),
            errno::describe_io(&err)
        )),
    }
}

/// The existing file PATH can be neither opened for writing (O_WRONLY|O_APPEND, so nothing
/// is truncated), truncated (to its own length, so nothing is lost) nor unlinked: all must
/// fail with EROFS, EACCES or EPERM.
pub fn unwritable(param: &OsStr) -> Outcome {
    let path = Path::new(param);
    let length = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata.len(),
        Err(err) => {
            return Outcome::fail(format!(
                "lstat {}: {}",
                show(path),
                errno::describe_io(&err)
            ))
        }
    };
    let mut passed = true;
    let open_detail = match OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(_) => {
            passed = false;
            "opened for writing".to_owned()
        }
        Err(err) => {
            passed &= is_refusal(&err);
            format!("open for writing: {}", errno::describe_io(&err))
        }
    };
    let truncate_detail = match truncate(path, length) {
        Ok(()) => {
            passed = false;
            "truncated it".to_owned()
        }
        Err(err) => {
            passed &= is_refusal(&err);
            format!("truncate: {}", errno::describe_io(&err))
        }
    };
    let unlink_detail = match fs::remove_file(path) {
        Ok(()) => {
            passed = false;
            "unlinked it".to_owned()
        }
        Err(err) => {
            passed &= is_refusal(&err);
            format!("unlink: {}", errno::describe_io(&err))
        }
    };
    Outcome::verdict(
        passed,
        format!(
            "{}: {open_detail}; {truncate_detail}; {unlink_detail}",
            show(path)
        ),
    )
}

/// truncate(2), which needs no open file and so meets Landlock's truncate right alone.
fn truncate(path: &Path, length: u64) -> io::Result<()> {
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let length =
        libc::off_t::try_from(length).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: a NUL-terminated path that outlives the call.
    if unsafe { libc::truncate(path.as_ptr(), length) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Opens PATH read-only. O_NONBLOCK keeps a FIFO from hanging us and O_NOCTTY keeps a tty
/// from becoming our controlling terminal.
fn open_read(path: &Path) -> io::Result<fs::File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// open(PATH, O_RDONLY) must succeed.
pub fn readable(param: &OsStr) -> Outcome {
    let path = Path::new(param);
    match open_read(path) {
        Ok(_) => Outcome::pass(format!("opened {}", show(path))),
        Err(err) => Outcome::fail(format!("open {}: {}", show(path), errno::describe_io(&err))),
    }
}

/// open(PATH, O_RDONLY) must fail.
pub fn unreadable(param: &OsStr) -> Outcome {
    let path = Path::new(param);
    match open_read(path) {
        Ok(_) => Outcome::fail(format!("opened {}", show(path))),
        Err(err) => Outcome::pass(format!("open {}: {}", show(path), errno::describe_io(&err))),
    }
}

/// `PATH:TEXT`: the file exists and contains TEXT (split at the first `:`).
pub fn file_contains(param: &OsStr) -> Outcome {
    let Some((path, text)) = param::split_param(param, b':') else {
        return Outcome::fail("expected PATH:TEXT");
    };
    let path = Path::new(path);
    let wanted = printable(&text.to_string_lossy());
    match fs::read(path) {
        Ok(content) => Outcome::verdict(
            contains(&content, text.as_bytes()),
            format!(
                "{} ({} bytes), looking for {wanted:?}",
                show(path),
                content.len()
            ),
        ),
        Err(err) => Outcome::fail(format!("read {}: {}", show(path), errno::describe_io(&err))),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_substrings() {
        assert!(contains(b"ID=debian\n", b"debian"));
        assert!(contains(b"abc", b""));
        assert!(!contains(b"ab", b"abc"));
        assert!(!contains(b"", b"a"));
    }
}

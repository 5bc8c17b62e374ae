//! Thin, safe wrappers for the system calls that libc and nix do not wrap: the
//! new mount API, openat2, pidfds and close_range. Each returns `io::Result` and
//! owns any descriptor it creates.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use std::os::unix::ffi::OsStrExt;

pub const RESOLVE_NO_XDEV: u64 = 0x01;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;

pub const OPEN_TREE_CLONE: u32 = 0x1;
pub const AT_RECURSIVE: u32 = 0x8000;
pub const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
pub const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
pub const FSOPEN_CLOEXEC: u32 = 0x1;
pub const FSMOUNT_CLOEXEC: u32 = 0x1;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;

pub fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn fd_result(ret: libc::c_long) -> io::Result<OwnedFd> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
    }
}

fn unit_result(ret: libc::c_long) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2): opens `path` relative to `dir` (or the cwd when `None`) with
/// `resolve` restrictions such as RESOLVE_NO_SYMLINKS.
pub fn openat2(
    dir: Option<BorrowedFd>,
    path: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let c_path = cstring(path)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: mode as u64,
        resolve,
    };
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: `c_path` and `how` outlive the call; the size matches the struct.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            c_path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    fd_result(ret)
}

/// open_tree(2) with OPEN_TREE_CLONE|AT_RECURSIVE on an already open path: a
/// detached copy of the mount tree at `fd`.
pub fn clone_tree(fd: BorrowedFd) -> io::Result<OwnedFd> {
    let empty = c"";
    // SAFETY: plain integer and static string arguments.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            fd.as_raw_fd(),
            empty.as_ptr(),
            (OPEN_TREE_CLONE | AT_RECURSIVE | libc::AT_EMPTY_PATH as u32 | libc::O_CLOEXEC as u32)
                as libc::c_uint,
        )
    };
    fd_result(ret)
}

/// Attaches the detached mount `tree` on top of the open path `target`.
pub fn move_mount_onto(tree: BorrowedFd, target: BorrowedFd) -> io::Result<()> {
    let empty = c"";
    // SAFETY: plain integer and static string arguments.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    unit_result(ret)
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) on the mount at `fd`, recursively when `recursive`.
pub fn set_mount_attrs(fd: BorrowedFd, attr_set: u64, recursive: bool) -> io::Result<()> {
    change_mount_attrs(fd, attr_set, 0, recursive)
}

/// mount_setattr(2) setting `attr_set` and clearing `attr_clr`.
pub fn change_mount_attrs(
    fd: BorrowedFd,
    attr_set: u64,
    attr_clr: u64,
    recursive: bool,
) -> io::Result<()> {
    let attr = MountAttr {
        attr_set,
        attr_clr,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    let empty = c"";
    // SAFETY: `attr` outlives the call and its size is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    unit_result(ret)
}

/// A filesystem context from fsopen(2), configured and turned into a detached mount.
pub struct FsContext(OwnedFd);

impl FsContext {
    pub fn open(fstype: &std::ffi::CStr) -> io::Result<Self> {
        // SAFETY: `fstype` is a valid C string for the duration of the call.
        let ret = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
        fd_result(ret).map(FsContext)
    }

    pub fn set_string(&self, key: &str, value: &str) -> io::Result<()> {
        let key = CString::new(key)?;
        let value = CString::new(value)?;
        // SAFETY: both strings outlive the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.0.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        };
        unit_result(ret)
    }

    /// Creates the superblock and returns a detached mount of it.
    pub fn mount(self, attrs: u64) -> io::Result<OwnedFd> {
        // SAFETY: no pointers are passed.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.0.as_raw_fd(),
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_char>(),
                0,
            )
        };
        unit_result(ret)?;
        // SAFETY: no pointers are passed.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                self.0.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                attrs,
            )
        };
        fd_result(ret)
    }
}

/// The names in a directory, without `.` and `..`. Listed through a new
/// descriptor of the directory, so `dir`'s own position is left alone.
pub fn entry_names(dir: BorrowedFd) -> io::Result<Vec<CString>> {
    let listing = nix::dir::Dir::openat(
        dir,
        ".",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in listing {
        let name = entry?.file_name().to_owned();
        if !matches!(name.to_bytes(), b"." | b"..") {
            names.push(name);
        }
    }
    Ok(names)
}

/// Whether `name` in `dir` (not followed if it is a symlink) is the root of a
/// mount, by statx(2)'s STATX_ATTR_MOUNT_ROOT (Linux 5.8).
pub fn is_mount_root(dir: BorrowedFd, name: &Path) -> io::Result<bool> {
    let c_name = cstring(name)?;
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c_name` and `stx` outlive the call; the kernel writes only into `stx`.
    let ret = unsafe {
        libc::statx(
            dir.as_raw_fd(),
            c_name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT,
            libc::STATX_TYPE,
            &mut stx,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let flag = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if stx.stx_attributes_mask & flag == 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this kernel does not report mount roots (Linux 5.8 or later is needed)",
        ));
    }
    Ok(stx.stx_attributes & flag != 0)
}

/// pivot_root(2).
pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let new_root = cstring(new_root)?;
    let put_old = cstring(put_old)?;
    // SAFETY: both strings outlive the call.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    unit_result(ret)
}

/// pidfd_open(2).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    fd_result(ret)
}

/// pidfd_send_signal(2).
pub fn pidfd_send_signal(pidfd: BorrowedFd, signal: i32) -> io::Result<()> {
    // SAFETY: a null siginfo asks the kernel to fill in a default one.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    unit_result(ret)
}

/// Closes the descriptors `first..=last`.
pub fn close_range(first: u32, last: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
    unit_result(ret)
}

/// Marks every descriptor from `first` on close-on-exec, so nothing but stdio
/// survives into the app.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    unit_result(ret)
}

/// clone(2) without a new stack, which behaves like fork(2) with namespace flags.
/// Returns 0 in the child and the child's pid in the parent.
///
/// The caller must be single-threaded, as for fork.
pub fn clone_with_flags(flags: u64) -> io::Result<i32> {
    // SAFETY: with a null stack the child runs on a copy of the parent's stack, as
    // after fork; the caller guarantees no other thread exists.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as u64,
            std::ptr::null::<u8>(),
            std::ptr::null::<i32>(),
            std::ptr::null::<i32>(),
            0,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as i32)
    }
}

/// Leaves the process immediately, without running destructors or flushing
/// stdio buffers that the other side of a fork also owns.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// Drops this process's resident copies of executable file pages, and returns
/// free heap to the kernel. The monitor calls it once the app runs: from then
/// on it only waits and forwards signals, so the few pages it still needs fault
/// back in and the rest of the launcher's code stops counting against its RSS.
pub fn release_startup_memory() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for (range, droppable) in clean_file_mappings(&smaps) {
        if !droppable {
            continue;
        }
        // SAFETY: the range is a private, read-only file mapping of this
        // process with no anonymous (copied-on-write) pages, so its pages equal
        // the file's; MADV_DONTNEED only drops the page table entries, and later
        // accesses fault them back in from the unchanged file.
        unsafe {
            libc::madvise(
                range.start as *mut libc::c_void,
                range.end - range.start,
                libc::MADV_DONTNEED,
            )
        };
    }
    // SAFETY: malloc_trim only returns unused heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
}

/// Every mapping in `/proc/self/smaps` format, and whether it is a read-only,
/// private file mapping without anonymous pages (relocated data is anonymous).
fn clean_file_mappings(smaps: &str) -> Vec<(std::ops::Range<usize>, bool)> {
    let mut mappings: Vec<(std::ops::Range<usize>, bool)> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some(kb) = line.strip_prefix("Anonymous:") {
            if kb.trim() != "0 kB" {
                if let Some(last) = mappings.last_mut() {
                    last.1 = false;
                }
            }
            continue;
        }
        let Some((start, end)) = first.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        let perms = fields.next().unwrap_or("");
        let inode = fields.nth(2).unwrap_or("0");
        let readonly_private =
            perms.starts_with('r') && perms.ends_with('p') && !perms.contains('w');
        mappings.push((start..end, readonly_private && inode != "0"));
    }
    mappings
}

/// Waits up to `timeout` for one of the blocked `signals`; `None` on timeout or
/// interruption.
pub fn wait_signal_for(
    signals: &nix::sys::signal::SigSet,
    timeout: std::time::Duration,
) -> Option<nix::sys::signal::Signal> {
    let timeout = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: the set and timeout outlive the call; no siginfo is requested.
    let ret = unsafe { libc::sigtimedwait(signals.as_ref(), std::ptr::null_mut(), &timeout) };
    nix::sys::signal::Signal::try_from(ret).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_file_mappings_are_dropped() {
        let smaps = "\
55a000-55b000 r--p 00000000 fe:00 123 /usr/bin/appbox
Rss:                   4 kB
Anonymous:             0 kB
55b000-55c000 r-xp 00001000 fe:00 123 /usr/bin/appbox
Anonymous:             0 kB
55c000-55d000 r--p 00002000 fe:00 123 /usr/bin/appbox
Anonymous:             4 kB
55d000-55e000 rw-p 00003000 fe:00 123 /usr/bin/appbox
Anonymous:             4 kB
7f0000-7f1000 r--p 00000000 00:00 0 
Anonymous:             0 kB
";
        let verdicts: Vec<bool> = clean_file_mappings(smaps)
            .into_iter()
            .map(|m| m.1)
            .collect();
        assert_eq!(verdicts, [true, true, false, false, false]);
    }
}

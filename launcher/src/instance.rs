//! Records of running sandboxes, kept by their monitors under
//! `$XDG_RUNTIME_DIR/appbox/instances/N/` (0700, owned by the user).
//!
//! Nothing inside a sandbox can reach this directory. `ps`, `kill` and `enter`
//! trust only these records and the kernel: a record names pid 1 of the sandbox
//! and that process's start time, and a pidfd opened on the pid is accepted only
//! if the start time still matches (CVE-2022-31214).

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::SandboxPlan;
use crate::private_dir::{create_private_dirs, PrivateDirError};
use crate::sandbox::sys::{self, openat2, RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS};

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(transparent)]
    Dir(#[from] PrivateDirError),
    #[error("cannot write the instance record {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no running instance matches {0}; see `appbox ps`")]
    NotFound(String),
    #[error("{0} matches several instances; name one by its instance number from `appbox ps`")]
    Ambiguous(String),
    #[error("instance {0} has exited")]
    Gone(u64),
    #[error("cannot signal instance {instance}")]
    Signal {
        instance: u64,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub instance: u64,
    pub app_id: String,
    /// The sandbox's pid 1, in the host's pid namespace.
    pub pid: i32,
    /// pid 1's start time in clock ticks since boot, from /proc/PID/stat.
    pub start_time: u64,
    /// The `appbox run` process that watches the sandbox.
    pub monitor_pid: i32,
    /// Seconds since the epoch.
    pub started_at: u64,
    /// The plan the sandbox runs under, so `enter` can apply the same confinement.
    pub plan: SandboxPlan,
}

/// The start time of a process, field 22 of /proc/PID/stat.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

pub struct Registry {
    path: PathBuf,
    dir: OwnedFd,
}

impl Registry {
    /// Opens (creating as needed) the registry under `runtime_dir` and checks
    /// that it is private to the calling user.
    pub fn open(runtime_dir: &Path) -> Result<Self, InstanceError> {
        let path = runtime_dir.join("appbox/instances");
        let dir = create_private_dirs(runtime_dir, &["appbox", "instances"])?;
        Ok(Registry { path, dir })
    }

    /// Writes a record under a fresh instance number. The record is removed
    /// when the returned guard is dropped. It is written under a temporary name
    /// and renamed into place, so readers never see half a record.
    pub fn create(&self, mut record: InstanceRecord) -> Result<InstanceGuard<'_>, InstanceError> {
        loop {
            let instance = random_instance_number();
            let name = instance.to_string();
            let staging = format!(".new-{name}");
            let write_err = |source: io::Error| InstanceError::Write {
                path: self.path.join(&name),
                source,
            };
            nix::sys::stat::mkdirat(
                self.dir.as_fd(),
                staging.as_str(),
                nix::sys::stat::Mode::from_bits_truncate(0o700),
            )
            .map_err(|e| write_err(e.into()))?;
            record.instance = instance;
            let written = openat2(
                Some(self.dir.as_fd()),
                &Path::new(&staging).join("info.json"),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                0o600,
                RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
            )
            .and_then(|fd| {
                let json = serde_json::to_vec(&record)?;
                std::fs::File::from(fd).write_all(&json)
            });
            if let Err(e) = written {
                self.remove(&staging);
                return Err(write_err(e));
            }
            match nix::fcntl::renameat(
                self.dir.as_fd(),
                staging.as_str(),
                self.dir.as_fd(),
                name.as_str(),
            ) {
                Ok(()) => {
                    return Ok(InstanceGuard {
                        registry: self,
                        name,
                        number: instance,
                    })
                }
                Err(nix::errno::Errno::EEXIST | nix::errno::Errno::ENOTEMPTY) => {
                    self.remove(&staging);
                }
                Err(e) => {
                    self.remove(&staging);
                    return Err(write_err(e.into()));
                }
            }
        }
    }

    fn remove(&self, name: &str) {
        let flags = nix::unistd::UnlinkatFlags::NoRemoveDir;
        let _ = nix::unistd::unlinkat(
            self.dir.as_fd(),
            Path::new(name).join("info.json").as_path(),
            flags,
        );
        let _ = nix::unistd::unlinkat(
            self.dir.as_fd(),
            name,
            nix::unistd::UnlinkatFlags::RemoveDir,
        );
    }

    /// Every live instance. Records whose pid 1 is gone, or is now another
    /// process, are removed.
    pub fn list(&self) -> Vec<InstanceRecord> {
        let Ok(dir) = nix::dir::Dir::openat(
            self.dir.as_fd(),
            ".",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        ) else {
            return Vec::new();
        };
        let names: Vec<String> = dir
            .into_iter()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().ok().map(str::to_owned))
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty())
            .collect();
        let mut records = Vec::new();
        for name in names {
            match self.read(&name) {
                Some(record) if process_start_time(record.pid) == Some(record.start_time) => {
                    records.push(record)
                }
                _ => self.remove(&name),
            }
        }
        records.sort_by_key(|r| r.started_at);
        records
    }

    fn read(&self, name: &str) -> Option<InstanceRecord> {
        let fd = openat2(
            Some(self.dir.as_fd()),
            &Path::new(name).join("info.json"),
            libc::O_RDONLY,
            0,
            RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
        )
        .ok()?;
        let mut text = Vec::new();
        io::Read::read_to_end(&mut std::fs::File::from(fd), &mut text).ok()?;
        let record: InstanceRecord = serde_json::from_slice(&text).ok()?;
        // Only records the monitor wrote carry a valid id; anything else was forged.
        crate::appid::AppId::parse(&record.app_id).ok()?;
        Some(record)
    }

    /// Finds the one live instance that `query` names: an instance number or an app id.
    pub fn find(&self, query: &str) -> Result<InstanceRecord, InstanceError> {
        let mut matches = self.find_all(query);
        match matches.len() {
            0 => Err(InstanceError::NotFound(query.to_owned())),
            1 => Ok(matches.remove(0)),
            _ => Err(InstanceError::Ambiguous(query.to_owned())),
        }
    }

    /// Every live instance of an app id, or the one instance with that number.
    pub fn find_all(&self, query: &str) -> Vec<InstanceRecord> {
        self.list()
            .into_iter()
            .filter(|r| r.instance.to_string() == query || r.app_id == query)
            .collect()
    }
}

/// Opens a pidfd on the record's pid 1 and checks that it is still the same
/// process, by the start time the monitor recorded.
pub fn verified_pidfd(record: &InstanceRecord) -> Result<OwnedFd, InstanceError> {
    let pidfd = sys::pidfd_open(record.pid).map_err(|_| InstanceError::Gone(record.instance))?;
    // Checked after opening: if the pid was reused before pidfd_open, the start
    // time differs now; if it is reused later, the pidfd still names the old process.
    if process_start_time(record.pid) != Some(record.start_time) {
        return Err(InstanceError::Gone(record.instance));
    }
    Ok(pidfd)
}

/// Sends `signal` to the sandbox's pid 1 through a verified pidfd.
pub fn signal(record: &InstanceRecord, signal: i32) -> Result<(), InstanceError> {
    let pidfd = verified_pidfd(record)?;
    sys::pidfd_send_signal(pidfd.as_fd(), signal).map_err(|source| InstanceError::Signal {
        instance: record.instance,
        source,
    })
}

fn random_instance_number() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: the buffer is valid for its length.
    let filled = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    let value = if filled == 8 {
        u64::from_ne_bytes(bytes)
    } else {
        u64::from(std::process::id()) << 20
            ^ std::time::UNIX_EPOCH
                .elapsed()
                .map_or(0, |d| d.as_nanos() as u64)
    };
    // Ten digits, like Flatpak's instance ids.
    1_000_000_000 + value % 9_000_000_000
}

pub struct InstanceGuard<'a> {
    registry: &'a Registry,
    name: String,
    number: u64,
}

impl InstanceGuard<'_> {
    pub fn instance(&self) -> &str {
        &self.name
    }

    /// The instance number, which [`InstanceGuard::instance`] spells.
    pub fn number(&self) -> u64 {
        self.number
    }
}

impl Drop for InstanceGuard<'_> {
    fn drop(&mut self) {
        self.registry.remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_this_process_is_readable() {
        let own = process_start_time(std::process::id() as i32);
        assert!(own.is_some());
        assert_eq!(process_start_time(-5), None);
    }
}

//! Peer records: which sandbox instance each of the proxies' upstream
//! connections belongs to, for appbox's portal.
//!
//! The portal sees a caller as a unique name on the real bus (`:1.42`),
//! which is the upstream connection a proxy opened for one app connection.
//! When the bus answers that connection's Hello, the proxy writes
//! `$XDG_RUNTIME_DIR/appbox/peers/<bus guid>/<unique name>`, holding the
//! instance number in decimal and a newline. The portal reads it back with
//! [`lookup_peer`], and takes the app from the instance's record. So the
//! portal learns who calls from appbox's own records: never from a PID, and
//! never from anything the app wrote.
//!
//! The bus GUID is the one the bus sent in its SASL `OK` line to the
//! proxy's upstream connection. dbus-daemon sends each listening address's
//! own GUID there (GetId answers with another ID, the bus's, which is the
//! same on every address). So the portal must use the GUID its own
//! connection got, on the same address as the proxies. Unique names are
//! never reused while a bus runs, and another bus has another GUID, so a
//! record cannot name the wrong connection.
//!
//! The directories are 0700 and the files 0600, all owned by the user.
//! Everything is opened relative to the runtime dir, one level at a time,
//! refusing symlinks. A record is written under a temporary name and renamed
//! into place. It is removed when its connection closes, and when the proxy
//! stops (see `instance.rs`).

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::private_dir::{check_private, open_private_dirs, PrivateDirError};
use crate::sandbox::sys::{openat2, RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS};

/// The longest record: 20 digits and a newline fit well within it.
pub const MAX_RECORD_LEN: u64 = 32;
/// `DBUS_MAXIMUM_NAME_LENGTH`.
const MAX_NAME_LEN: usize = 255;
const RESOLVE_STRICT: u64 = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{0:?} is not a unique bus name")]
    BadName(String),
    #[error("{0:?} is not a bus GUID (32 hex digits)")]
    BadGuid(String),
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Private(#[from] PrivateDirError),
    #[error("{path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("{path} does not hold an instance number")]
    BadRecord { path: PathBuf },
    #[error("cannot write the peer record {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A unique bus name as the bus hands them out: `:` and at least two
/// `.`-separated elements of `[A-Za-z0-9_-]`, at most 255 bytes. Stricter
/// than dbus-daemon's check (which lets `:abc` pass), and never a path: no
/// `/`, no empty element, no `..`.
pub fn is_unique_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(':') else {
        return false;
    };
    name.len() <= MAX_NAME_LEN
        && rest.split('.').count() >= 2
        && rest.split('.').all(|element| {
            !element.is_empty()
                && element
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        })
}

/// A bus GUID, 32 hex digits, in the lowercase the records use.
fn normal_guid(guid: &str) -> Result<String, PeerError> {
    if guid.len() == 32 && guid.bytes().all(|c| c.is_ascii_hexdigit()) {
        Ok(guid.to_ascii_lowercase())
    } else {
        Err(PeerError::BadGuid(guid.to_owned()))
    }
}

fn check_name(name: &str) -> Result<(), PeerError> {
    if is_unique_name(name) {
        Ok(())
    } else {
        Err(PeerError::BadName(name.to_owned()))
    }
}

/// `$XDG_RUNTIME_DIR/appbox/peers`.
pub fn peers_dir(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("appbox/peers")
}

/// Opens `runtime_dir/appbox/peers` and below it each of `rest`.
fn open_dirs(
    runtime_dir: &Path,
    rest: &[&str],
    create: bool,
) -> Result<Option<OwnedFd>, PeerError> {
    let names: Vec<&str> = ["appbox", "peers"].iter().chain(rest).copied().collect();
    Ok(open_private_dirs(runtime_dir, &names, create)?)
}

/// Reads the record `name` in `dir`: a private regular file holding an
/// instance number. `None` if there is none.
fn read_record(dir: BorrowedFd<'_>, shown: &Path, name: &str) -> Result<Option<u64>, PeerError> {
    let path = shown.join(name);
    // O_NONBLOCK: a FIFO planted there must not hang the reader.
    let fd = match openat2(
        Some(dir),
        Path::new(name),
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
        0,
        RESOLVE_STRICT,
    ) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PeerError::Open { path, source }),
    };
    let st = check_private(fd.as_fd(), &path)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(PeerError::NotAFile { path });
    }
    let bad = || PeerError::BadRecord { path: path.clone() };
    if st.st_size < 0 || st.st_size as u64 > MAX_RECORD_LEN {
        return Err(bad());
    }
    let mut text = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_RECORD_LEN + 1)
        .read_to_end(&mut text)
        .map_err(|source| PeerError::Open {
            path: path.clone(),
            source,
        })?;
    parse_record(&text).map(Some).ok_or_else(bad)
}

/// Decimal digits and a newline, as [`PeerRecords::write`] writes them.
fn parse_record(text: &[u8]) -> Option<u64> {
    let digits = text.strip_suffix(b"\n")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The instance whose proxy made the connection `unique_name` on the bus
/// whose GUID is `bus_guid`, or `None` if no proxy did (a host app, or a
/// connection that has closed). Both names are checked strictly, and the
/// record must be a private regular file of this user's, reached without
/// symlinks.
pub fn lookup_peer(
    runtime_dir: &Path,
    bus_guid: &str,
    unique_name: &str,
) -> Result<Option<u64>, PeerError> {
    check_name(unique_name)?;
    let guid = normal_guid(bus_guid)?;
    let Some(dir) = open_dirs(runtime_dir, &[&guid], false)? else {
        return Ok(None);
    };
    read_record(
        dir.as_fd(),
        &peers_dir(runtime_dir).join(&guid),
        unique_name,
    )
}

/// Where one proxy writes its records, and the instance they name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRecords {
    runtime_dir: PathBuf,
    instance: u64,
}

impl PeerRecords {
    pub fn new(runtime_dir: &Path, instance: u64) -> PeerRecords {
        PeerRecords {
            runtime_dir: runtime_dir.to_owned(),
            instance,
        }
    }

    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Records that the connection `unique_name`, on the bus whose GUID is
    /// `bus_guid`, belongs to this instance. The record is removed when the
    /// returned [`PeerRecord`] is dropped.
    pub fn write(&self, bus_guid: &str, unique_name: &str) -> Result<PeerRecord, PeerError> {
        check_name(unique_name)?;
        let guid = normal_guid(bus_guid)?;
        let shown = peers_dir(&self.runtime_dir).join(&guid);
        let path = shown.join(unique_name);
        let dir =
            open_dirs(&self.runtime_dir, &[&guid], true)?.ok_or_else(|| PeerError::Write {
                path: path.clone(),
                source: io::ErrorKind::NotFound.into(),
            })?;
        let write_err = |source: io::Error| PeerError::Write {
            path: path.clone(),
            source,
        };
        // Unique names are never reused on one bus, so only a proxy that
        // died in this very spot can have left the temporary name behind.
        let staging = format!(".new-{unique_name}");
        let create = || {
            openat2(
                Some(dir.as_fd()),
                Path::new(&staging),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                0o600,
                RESOLVE_STRICT,
            )
        };
        let fd = match create() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                unlink(dir.as_fd(), &staging);
                create()
            }
            other => other,
        }
        .map_err(write_err)?;
        let written = std::fs::File::from(fd).write_all(format!("{}\n", self.instance).as_bytes());
        if let Err(e) = written {
            unlink(dir.as_fd(), &staging);
            return Err(write_err(e));
        }
        if let Err(e) =
            nix::fcntl::renameat(dir.as_fd(), staging.as_str(), dir.as_fd(), unique_name)
        {
            unlink(dir.as_fd(), &staging);
            return Err(write_err(e.into()));
        }
        Ok(PeerRecord {
            dir,
            name: unique_name.to_owned(),
        })
    }

    /// Removes every record that names this instance: what a proxy that
    /// could not clean up (killed, or crashed) left behind. Instance numbers
    /// are unique among running instances, so no other proxy's record goes.
    pub fn sweep(&self) {
        let Ok(Some(peers)) = open_dirs(&self.runtime_dir, &[], false) else {
            return;
        };
        for guid in dir_names(peers.as_fd()) {
            if normal_guid(&guid).ok().as_deref() != Some(guid.as_str()) {
                continue;
            }
            let Ok(Some(dir)) = open_dirs(&self.runtime_dir, &[&guid], false) else {
                continue;
            };
            let shown = peers_dir(&self.runtime_dir).join(&guid);
            for name in dir_names(dir.as_fd()) {
                if is_unique_name(&name)
                    && matches!(read_record(dir.as_fd(), &shown, &name), Ok(Some(n)) if n == self.instance)
                {
                    unlink(dir.as_fd(), &name);
                }
            }
        }
    }
}

/// The entries of a directory, but `.` and `..`; names that are not UTF-8
/// are left out.
fn dir_names(dir: BorrowedFd<'_>) -> Vec<String> {
    let Ok(listing) = nix::dir::Dir::openat(
        dir,
        ".",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    ) else {
        return Vec::new();
    };
    listing
        .into_iter()
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().to_str().ok().map(str::to_owned))
        .filter(|name| name != "." && name != "..")
        .collect()
}

fn unlink(dir: BorrowedFd<'_>, name: &str) {
    let _ = nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
}

/// One written record, removed on drop.
#[derive(Debug)]
pub struct PeerRecord {
    /// The GUID's directory.
    dir: OwnedFd,
    name: String,
}

impl PeerRecord {
    pub fn unique_name(&self) -> &str {
        &self.name
    }
}

impl Drop for PeerRecord {
    fn drop(&mut self) {
        unlink(self.dir.as_fd(), &self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::busproxy::testing::TempDir;
    use std::os::unix::fs::{symlink, DirBuilderExt, MetadataExt, PermissionsExt};

    const GUID: &str = "46c763c17c125a7e6b57090d6b0a1133";

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn unique_names_are_checked_strictly() {
        for good in [
            ":1.42",
            ":1.0",
            ":a-b.c_d.9",
            &format!(":1.{}", "2".repeat(252)),
        ] {
            assert!(is_unique_name(good), "{good:?}");
        }
        for bad in [
            "",
            ":",
            ":1",
            ":1.",
            ":.1",
            ":1..2",
            "1.42",
            "org.example.App",
            "../x",
            ":1.2/..",
            ":1.2/x",
            ":../..",
            ":1.2\0",
            ":1.2 ",
            ":1.é",
            &format!(":1.{}", "2".repeat(253)),
        ] {
            assert!(!is_unique_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_record_is_written_privately_read_back_and_removed() {
        let runtime = TempDir::new("peers");
        let records = PeerRecords::new(&runtime.0, 1_234_567_890);
        assert_eq!(lookup_peer(&runtime.0, GUID, ":1.42").unwrap(), None);
        let record = records.write(GUID, ":1.42").unwrap();
        assert_eq!(record.unique_name(), ":1.42");
        let dir = peers_dir(&runtime.0).join(GUID);
        let file = dir.join(":1.42");
        assert_eq!(std::fs::read(&file).unwrap(), b"1234567890\n");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&peers_dir(&runtime.0)), 0o700);
        assert_eq!(mode(&runtime.0.join("appbox")), 0o700);
        // Nothing else was left in the directory.
        assert_eq!(dir_entries(&dir), vec![":1.42".to_owned()]);
        assert_eq!(
            lookup_peer(&runtime.0, GUID, ":1.42").unwrap(),
            Some(1_234_567_890)
        );
        // The GUID is read in either case; other names and buses are not found.
        assert_eq!(
            lookup_peer(&runtime.0, &GUID.to_ascii_uppercase(), ":1.42").unwrap(),
            Some(1_234_567_890)
        );
        assert_eq!(lookup_peer(&runtime.0, GUID, ":1.43").unwrap(), None);
        let other = "0123456789abcdef0123456789abcdef";
        assert_eq!(lookup_peer(&runtime.0, other, ":1.42").unwrap(), None);
        // A second connection of the same instance, and one of another.
        let second = records.write(GUID, ":1.43").unwrap();
        let theirs = PeerRecords::new(&runtime.0, 42)
            .write(GUID, ":1.44")
            .unwrap();
        assert_eq!(lookup_peer(&runtime.0, GUID, ":1.44").unwrap(), Some(42));
        drop(record);
        assert_eq!(lookup_peer(&runtime.0, GUID, ":1.42").unwrap(), None);
        assert!(!file.exists());
        // The sweep takes this instance's records only.
        std::mem::forget(second);
        records.sweep();
        assert_eq!(lookup_peer(&runtime.0, GUID, ":1.43").unwrap(), None);
        assert_eq!(lookup_peer(&runtime.0, GUID, ":1.44").unwrap(), Some(42));
        drop(theirs);
        assert_eq!(dir_entries(&dir), Vec::<String>::new());
        // A missing runtime dir is no record either.
        assert_eq!(
            lookup_peer(&runtime.0.join("missing"), GUID, ":1.42").unwrap(),
            None
        );
    }

    fn dir_entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn hostile_names_and_guids_are_errors_never_paths() {
        let runtime = TempDir::new("peers");
        let records = PeerRecords::new(&runtime.0, 7);
        let _record = records.write(GUID, ":1.42").unwrap();
        // Something a path could reach, if names were paths.
        std::fs::write(peers_dir(&runtime.0).join("x"), "7\n").unwrap();
        for name in ["../x", ":1.2/..", "", ":1.42/", "..", ".", ":1.42\n", "x"] {
            assert!(
                matches!(
                    lookup_peer(&runtime.0, GUID, name),
                    Err(PeerError::BadName(_))
                ),
                "{name:?}"
            );
            assert!(records.write(GUID, name).is_err(), "{name:?}");
        }
        for guid in [
            "",
            "..",
            "../peers",
            &GUID[..31],
            &format!("{GUID}0"),
            &format!("{}g", &GUID[..31]),
            &format!("{}/", &GUID[..31]),
        ] {
            assert!(
                matches!(
                    lookup_peer(&runtime.0, guid, ":1.42"),
                    Err(PeerError::BadGuid(_))
                ),
                "{guid:?}"
            );
            assert!(records.write(guid, ":1.42").is_err(), "{guid:?}");
        }
    }

    #[test]
    fn symlinks_and_strange_files_are_refused() {
        let runtime = TempDir::new("peers");
        let elsewhere = TempDir::new("elsewhere");
        let records = PeerRecords::new(&runtime.0, 7);
        let _record = records.write(GUID, ":1.1").unwrap();
        let dir = peers_dir(&runtime.0).join(GUID);

        // A symlinked record, to a file that looks right.
        std::fs::write(elsewhere.0.join("record"), "7\n").unwrap();
        std::fs::set_permissions(
            elsewhere.0.join("record"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        symlink(elsewhere.0.join("record"), dir.join(":1.2")).unwrap();
        assert!(matches!(
            lookup_peer(&runtime.0, GUID, ":1.2"),
            Err(PeerError::Open { .. })
        ));
        // A directory, a FIFO, a file open to others, an oversized or odd one.
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir.join(":1.3"))
            .unwrap();
        assert!(matches!(
            lookup_peer(&runtime.0, GUID, ":1.3"),
            Err(PeerError::NotAFile { .. })
        ));
        nix::unistd::mkfifo(
            &dir.join(":1.4"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        assert!(matches!(
            lookup_peer(&runtime.0, GUID, ":1.4"),
            Err(PeerError::NotAFile { .. })
        ));
        let plant = |name: &str, text: &[u8], mode: u32| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        plant(":1.5", b"7\n", 0o644);
        assert!(matches!(
            lookup_peer(&runtime.0, GUID, ":1.5"),
            Err(PeerError::Private(PrivateDirError::NotPrivate { .. }))
        ));
        plant(":1.6", format!("{}\n", "7".repeat(40)).as_bytes(), 0o600);
        for (name, text) in [
            (":1.7", &b"7"[..]),
            (":1.8", b"+7\n"),
            (":1.9", b" 7\n"),
            (":1.10", b"7\n\n"),
            (":1.11", b"\n"),
            (":1.12", b"99999999999999999999\n"),
            (":1.13", b"0x7\n"),
        ] {
            plant(name, text, 0o600);
        }
        for name in [
            ":1.6", ":1.7", ":1.8", ":1.9", ":1.10", ":1.11", ":1.12", ":1.13",
        ] {
            assert!(
                matches!(
                    lookup_peer(&runtime.0, GUID, name),
                    Err(PeerError::BadRecord { .. })
                ),
                "{name}"
            );
        }
        plant(":1.14", b"0\n", 0o400);
        assert_eq!(lookup_peer(&runtime.0, GUID, ":1.14").unwrap(), Some(0));

        // A GUID directory that is a symlink, or open to others.
        let other = "0123456789abcdef0123456789abcdef";
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(elsewhere.0.join(other))
            .unwrap();
        symlink(elsewhere.0.join(other), peers_dir(&runtime.0).join(other)).unwrap();
        assert!(lookup_peer(&runtime.0, other, ":1.1").is_err());
        assert!(records.write(other, ":1.1").is_err());
        assert_eq!(
            std::fs::read_dir(elsewhere.0.join(other)).unwrap().count(),
            0
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(
            lookup_peer(&runtime.0, GUID, ":1.1"),
            Err(PeerError::Private(PrivateDirError::NotPrivate { .. }))
        ));
        assert!(records.write(GUID, ":1.15").is_err());
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

        // A symlinked `peers` or `appbox` directory.
        let runtime2 = TempDir::new("peers");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(runtime2.0.join("appbox"))
            .unwrap();
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(elsewhere.0.join("peers"))
            .unwrap();
        symlink(elsewhere.0.join("peers"), peers_dir(&runtime2.0)).unwrap();
        assert!(lookup_peer(&runtime2.0, GUID, ":1.1").is_err());
        assert!(PeerRecords::new(&runtime2.0, 7)
            .write(GUID, ":1.1")
            .is_err());
        assert_eq!(
            std::fs::read_dir(elsewhere.0.join("peers"))
                .unwrap()
                .count(),
            0
        );
        let runtime3 = TempDir::new("peers");
        symlink(&elsewhere.0, runtime3.0.join("appbox")).unwrap();
        assert!(lookup_peer(&runtime3.0, GUID, ":1.1").is_err());
        assert!(PeerRecords::new(&runtime3.0, 7)
            .write(GUID, ":1.1")
            .is_err());
    }

    #[test]
    fn a_stale_temporary_file_does_not_stop_a_write() {
        let runtime = TempDir::new("peers");
        let records = PeerRecords::new(&runtime.0, 9);
        let first = records.write(GUID, ":1.1").unwrap();
        let dir = peers_dir(&runtime.0).join(GUID);
        std::fs::write(dir.join(".new-:1.2"), "junk").unwrap();
        let _second = records.write(GUID, ":1.2").unwrap();
        assert_eq!(lookup_peer(&runtime.0, GUID, ":1.2").unwrap(), Some(9));
        assert!(!dir.join(".new-:1.2").exists());
        drop(first);
    }
}

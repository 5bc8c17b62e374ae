//! Carrying out a choice: the chosen host files become documents of the
//! calling app, and appear in its running sandbox.
//!
//! The portal is multithreaded, and joining a sandbox's user namespace needs
//! a single-threaded process, so the mount is made by `appbox
//! document-mount`, exec'd fresh. It gets the file the user chose as an
//! O_PATH descriptor (fd 3), opened here at the time of the choice, and
//! refuses to mount anything that is not that same file.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use appbox::documents::{DocId, DocumentError, DocumentStore};
pub use appbox::portal_dialog::file_uri;
use appbox::sandbox::sys::{openat2, RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS};

use crate::identity::Caller;

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} is not a regular file; only files can be handed to apps")]
    NotAFile(PathBuf),
    #[error("{0} is not a clean absolute path")]
    NotClean(PathBuf),
    #[error("{0} goes through a symbolic link; appbox hands out files only by their real path")]
    Symlink(PathBuf),
    #[error(transparent)]
    Store(#[from] DocumentError),
    #[error("cannot run {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot put {path} into the sandbox of {app}: {reason}")]
    Mount {
        path: PathBuf,
        app: String,
        reason: String,
    },
}

/// A file the user chose, held open since the choice.
pub struct Chosen {
    /// Absolute, with symlinks resolved once, at the choice.
    pub path: PathBuf,
    file: OwnedFd,
}

impl Chosen {
    /// Opens a file chosen for reading: it must exist and be a regular file.
    pub fn existing(path: &Path) -> Result<Chosen, GrantError> {
        // No O_NOFOLLOW: with it, O_PATH would open a final symlink itself
        // instead of failing with ELOOP.
        let file = open_by_real_path(path, libc::O_PATH)?;
        let chosen = Chosen {
            path: path.to_owned(),
            file,
        };
        chosen.check_regular()?;
        Ok(chosen)
    }

    /// Opens a file chosen for saving, creating it empty if it does not
    /// exist yet: a bind mount needs a file to mount. An existing file is
    /// left as it is; the app writes it.
    pub fn for_saving(path: &Path) -> Result<Chosen, GrantError> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(GrantError::NotAFile(path.to_owned()));
        };
        let dir = open_by_real_path(parent, libc::O_PATH | libc::O_DIRECTORY)?;
        let open_err = |source| GrantError::Open {
            path: path.to_owned(),
            source,
        };
        let beneath = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
        let name = Path::new(name);
        drop(
            openat2(
                Some(dir.as_fd()),
                name,
                libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW,
                0o644,
                beneath,
            )
            .map_err(open_err)?,
        );
        let file = openat2(
            Some(dir.as_fd()),
            name,
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
            beneath,
        )
        .map_err(open_err)?;
        let chosen = Chosen {
            path: path.to_owned(),
            file,
        };
        chosen.check_regular()?;
        Ok(chosen)
    }

    fn check_regular(&self) -> Result<(), GrantError> {
        let st = nix::sys::stat::fstat(&self.file).map_err(|e| GrantError::Open {
            path: self.path.clone(),
            source: e.into(),
        })?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(GrantError::NotAFile(self.path.clone()));
        }
        Ok(())
    }
}

/// Opens what the user chose by its path as given, which must be absolute
/// and clean and go through no symbolic link at all: an app that can write
/// somewhere along the path could otherwise swap a directory for a link
/// between the choice and the grant, and be handed another file
/// (CVE-2026-34078).
fn open_by_real_path(path: &Path, flags: i32) -> Result<OwnedFd, GrantError> {
    if !appbox::hostfacts::clean_absolute(path) {
        return Err(GrantError::NotClean(path.to_owned()));
    }
    openat2(None, path, flags, 0, RESOLVE_NO_SYMLINKS).map_err(|source| {
        if source.raw_os_error() == Some(libc::ELOOP) {
            GrantError::Symlink(path.to_owned())
        } else {
            GrantError::Open {
                path: path.to_owned(),
                source,
            }
        }
    })
}

/// The environment of the mount helper: only what it needs to find the
/// user's records, none of the portal's own (which the session set, and
/// which could carry LD_PRELOAD and the like; CVE-2021-21261).
fn helper_env() -> Vec<(&'static str, std::ffi::OsString)> {
    let mut env = vec![("PATH", "/usr/bin:/bin".into())];
    for name in ["HOME", "XDG_RUNTIME_DIR"] {
        if let Some(value) = std::env::var_os(name) {
            env.push((name, value));
        }
    }
    env
}

/// Records grants and mounts them.
pub struct Granter {
    store: DocumentStore,
    /// The `appbox` binary, which makes the mounts.
    appbox: PathBuf,
}

impl Granter {
    pub fn new(store: DocumentStore, appbox: PathBuf) -> Granter {
        Granter { store, appbox }
    }

    pub fn store(&self) -> &DocumentStore {
        &self.store
    }

    /// Grants `chosen` to the caller and mounts it into its sandbox; the URI
    /// the app opens. A grant that cannot be mounted is taken back, unless
    /// the app held it already.
    pub fn grant(
        &self,
        caller: &Caller,
        chosen: &Chosen,
        writable: bool,
    ) -> Result<String, GrantError> {
        let app = &caller.app_id;
        let (id, had_it) = self.store.update(|docs| {
            let had_it = docs
                .documents
                .values()
                .any(|doc| doc.path == chosen.path && doc.apps.contains_key(app));
            Ok((docs.grant(&chosen.path, app, writable)?, had_it))
        })?;
        let name = chosen
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if let Err(e) = self.mount(caller, chosen, &id, &name, writable) {
            if !had_it {
                let _ = self.store.update(|docs| Ok(docs.revoke(&id, Some(app))));
            }
            return Err(e);
        }
        Ok(file_uri(&caller.doc_dir.join(id.as_str()).join(&name)))
    }

    fn mount(
        &self,
        caller: &Caller,
        chosen: &Chosen,
        id: &DocId,
        name: &str,
        writable: bool,
    ) -> Result<(), GrantError> {
        let mut command = Command::new(&self.appbox);
        command
            .env_clear()
            .envs(helper_env())
            .arg("document-mount")
            .arg("--instance")
            .arg(caller.instance.to_string())
            .arg("--doc-id")
            .arg(id.as_str())
            .arg("--name")
            .arg(name)
            .arg("--path")
            .arg(&chosen.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if writable {
            command.arg("--writable");
        }
        let fd = chosen.file.as_raw_fd();
        // SAFETY: between fork and exec this only calls dup2 (async-signal-safe)
        // on a descriptor that stays open for the whole spawn.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(fd, 3) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let output = command.output().map_err(|source| GrantError::Spawn {
            program: self.appbox.clone(),
            source,
        })?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(GrantError::Mount {
            path: chosen.path.clone(),
            app: caller.app_id.to_string(),
            reason: stderr
                .trim()
                .strip_prefix("appbox: error: ")
                .unwrap_or(stderr.trim())
                .to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helper_gets_no_environment_of_the_portal_but_its_paths() {
        std::env::set_var("LD_PRELOAD", "/evil.so");
        let env = helper_env();
        assert!(env
            .iter()
            .all(|(name, _)| ["PATH", "HOME", "XDG_RUNTIME_DIR"].contains(name)));
        std::env::remove_var("LD_PRELOAD");
    }

    #[test]
    fn uris_encode_everything_but_unreserved_bytes() {
        assert_eq!(
            file_uri(Path::new("/run/user/1000/doc/0a1b2c3d/notes.txt")),
            "file:///run/user/1000/doc/0a1b2c3d/notes.txt"
        );
        assert_eq!(
            file_uri(Path::new("/d/a b%#?ä")),
            "file:///d/a%20b%25%23%3F%C3%A4"
        );
    }

    #[test]
    fn chosen_files_must_be_regular_and_saving_creates_them() {
        let dir = std::env::temp_dir().join(format!("appbox-grant-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(
            Chosen::existing(&dir),
            Err(GrantError::NotAFile(_))
        ));
        assert!(Chosen::existing(&dir.join("missing")).is_err());
        let new = dir.join("new.txt");
        let chosen = Chosen::for_saving(&new).unwrap();
        assert_eq!(chosen.path, new);
        assert_eq!(std::fs::read(&new).unwrap(), b"");
        std::fs::write(&new, b"kept").unwrap();
        Chosen::for_saving(&new).unwrap();
        assert_eq!(std::fs::read(&new).unwrap(), b"kept");
        // A symlink anywhere on the path is refused, for opening and saving.
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();
        assert!(Chosen::for_saving(&dir.join("link")).is_err());
        assert!(matches!(
            Chosen::existing(&dir.join("link")),
            Err(GrantError::Symlink(_))
        ));
        std::os::unix::fs::symlink(&dir, dir.join("dirlink")).unwrap();
        assert!(matches!(
            Chosen::existing(&dir.join("dirlink/new.txt")),
            Err(GrantError::Symlink(_))
        ));
        assert!(matches!(
            Chosen::for_saving(&dir.join("dirlink/other.txt")),
            Err(GrantError::Symlink(_))
        ));
        assert!(!dir.join("other.txt").exists());
        assert!(matches!(
            Chosen::existing(&dir.join("x/../new.txt")),
            Err(GrantError::NotClean(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

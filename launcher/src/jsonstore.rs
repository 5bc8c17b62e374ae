//! Small JSON files that several processes change: the portal's grants and
//! answers. Every change is a locked read-modify-write of the whole file,
//! written beside it and renamed into place, so the portal and the CLI never
//! lose each other's changes and a crash leaves the old file or the new one.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Bigger than any real store: a file this size is damage, not data.
const MAX_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is damaged ({reason}); move it away to start afresh")]
    Damaged { path: PathBuf, reason: String },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io { what, path, source }
}

fn damaged(path: &Path, reason: impl ToString) -> StoreError {
    StoreError::Damaged {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The contents of `path`, or the default when it does not exist yet.
pub fn load<T: DeserializeOwned + Default>(path: &Path) -> Result<T, StoreError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(T::default()),
        Err(e) => return Err(io("read", path)(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io("read", path))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(damaged(path, format!("larger than {MAX_BYTES} bytes")));
    }
    serde_json::from_slice(&bytes).map_err(|e| damaged(path, e))
}

/// Takes an exclusive lock on the file `path` (made if need be), waiting for
/// whoever holds it; it is released when the returned file closes.
pub fn lock_file(path: &Path) -> io::Result<File> {
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    // SAFETY: flock on a descriptor we own; it is released when `lock` closes.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lock)
}

/// Changes the contents of `path` under its lock (`path` with `.lock`) and
/// writes them back atomically; nothing is written if `change` fails.
pub fn update<T, R, E>(path: &Path, change: impl FnOnce(&mut T) -> Result<R, E>) -> Result<R, E>
where
    T: DeserializeOwned + Serialize + Default,
    E: From<StoreError>,
{
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(io("create the directory of", path))?;
    let _lock = lock_file(&path.with_extension("lock")).map_err(io("lock", path))?;
    let mut contents: T = load(path)?;
    let result = change(&mut contents)?;
    let mut bytes = serde_json::to_vec_pretty(&contents).map_err(|e| damaged(path, e))?;
    bytes.push(b'\n');
    crate::store::write_atomically(path, &bytes).map_err(io("write", path))?;
    Ok(result)
}

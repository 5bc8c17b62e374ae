//! `org.freedesktop.portal.OpenURI`: OpenURI, OpenFile and OpenDirectory.
//!
//! The target goes to the host's default handler, `/usr/bin/xdg-open` (or
//! the program named by [`URI_HANDLER_ENV`] in the portal's own
//! environment, for tests), as its one argument. Apps may open links
//! without asking; each open is logged with the app id.
//!
//! - **URIs** must be RFC 3986 URIs with a scheme of `[a-z][a-z0-9+.-]*`
//!   (compared without case), only the characters RFC 3986 allows, and no
//!   control characters. `file:` URIs are refused: files reach the handler
//!   only through OpenFile, as a descriptor, as xdg-desktop-portal requires.
//! - **Files** come as descriptors from inside the sandbox. The portal reads
//!   the descriptor's path (`/proc/self/fd/N`), which is the path inside the
//!   sandbox, and maps it to the host: a document under the app's
//!   `$XDG_RUNTIME_DIR/doc/<id>/<name>` is the host file the document store
//!   recorded for that app; any other path must be the same path on the
//!   host. Either way, the host path is opened without following any
//!   symbolic link and must be the very file of the descriptor (same device
//!   and inode), so the app can only name files it holds. OpenFile takes
//!   regular files that are not executable and not `.desktop` files;
//!   OpenDirectory takes a directory, or a file whose directory it opens.
//!   The handler gets a `file://` URI of the host path; it opens the file
//!   by that path, so a file the app can rename between the check and the
//!   open may be another one by then, just as with xdg-desktop-portal's
//!   host handlers.
//! - **The handler's environment** is rebuilt from the portal's own, never
//!   the app's: only [`PASSED_ENV`] and `LC_*`, with `PATH`,
//!   `XDG_DATA_DIRS` and `XDG_CONFIG_DIRS` set to the host's defaults
//!   (CVE-2021-21261, CVE-2020-11934). It runs in its own session, with
//!   stdin and stdout on `/dev/null`, and is reaped by a thread of its own.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use appbox::appid::AppId;
use appbox::documents::{DocId, Documents};
use appbox::sandbox::sys::{openat2, RESOLVE_NO_SYMLINKS};
use zbus::message::Header;
use zbus::{interface, Connection, OwnedObjectPath, OwnedVariant};

use crate::error::PortalError;
use crate::identity::Caller;
use crate::request::{self, Response};
use crate::service::Portal;

/// Names the handler program (absolute). Read once, from the portal's own
/// environment, which no sandbox can set.
pub const URI_HANDLER_ENV: &str = "APPBOX_PORTAL_URI_HANDLER";
pub const DEFAULT_URI_HANDLER: &str = "/usr/bin/xdg-open";

/// What host-side helpers get from the portal's environment, besides `LC_*`.
pub const PASSED_ENV: &[&str] = &[
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XAUTHORITY",
    "XDG_RUNTIME_DIR",
    "DBUS_SESSION_BUS_ADDRESS",
    "XDG_CURRENT_DESKTOP",
    "XDG_SESSION_TYPE",
];
/// Set to these whatever the portal had.
pub const FIXED_ENV: &[(&str, &str)] = &[
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("XDG_DATA_DIRS", "/usr/local/share:/usr/share"),
    ("XDG_CONFIG_DIRS", "/etc/xdg"),
];

/// The longest URI the portal hands on.
pub const MAX_URI_LEN: usize = 16 * 1024;

/// The environment of a host-side helper, from `portal_env` (the portal's
/// own): the allowlist and the fixed host defaults, nothing else.
pub fn host_env(
    portal_env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = portal_env
        .into_iter()
        .filter(|(name, _)| {
            let Some(name) = name.to_str() else {
                return false;
            };
            PASSED_ENV.contains(&name) || is_locale_var(name)
        })
        .collect();
    env.extend(
        FIXED_ENV
            .iter()
            .map(|(name, value)| (OsString::from(name), OsString::from(value))),
    );
    env.sort();
    env
}

/// `LC_ALL`, `LC_CTYPE` and the like.
fn is_locale_var(name: &str) -> bool {
    name.strip_prefix("LC_").is_some_and(|rest| {
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
    })
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    #[error("the URI is empty")]
    Empty,
    #[error("the URI is longer than {MAX_URI_LEN} bytes")]
    TooLong,
    #[error("the URI contains control characters")]
    Control,
    #[error("the URI has no scheme (like https:)")]
    NoScheme,
    #[error("the URI's scheme {0:?} is not [a-z][a-z0-9+.-]*")]
    BadScheme(String),
    #[error("file: URIs are refused; pass the file as a descriptor to OpenFile")]
    FileScheme,
    #[error("the URI has nothing after its scheme")]
    NoBody,
    #[error("the URI has {0:?} at byte {1}, which RFC 3986 does not allow (percent-encode it)")]
    BadChar(char, usize),
    #[error("the URI has a % not followed by two hex digits at byte {0}")]
    BadPercent(usize),
}

/// Checks a URI for OpenURI and returns it with its scheme in lowercase.
pub fn check_uri(uri: &str) -> Result<String, UriError> {
    if uri.is_empty() {
        return Err(UriError::Empty);
    }
    if uri.len() > MAX_URI_LEN {
        return Err(UriError::TooLong);
    }
    if uri.chars().any(char::is_control) {
        return Err(UriError::Control);
    }
    let (scheme, rest) = uri.split_once(':').ok_or(UriError::NoScheme)?;
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b));
    if !scheme_ok {
        return Err(UriError::BadScheme(scheme.to_owned()));
    }
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "file" {
        return Err(UriError::FileScheme);
    }
    if rest.is_empty() {
        return Err(UriError::NoBody);
    }
    let bytes = rest.as_bytes();
    let offset = scheme.len() + 1;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return Err(UriError::BadPercent(offset + i));
            }
            i += 3;
            continue;
        }
        let allowed = b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b);
        if !allowed {
            let c = rest[i..].chars().next().unwrap_or('?');
            return Err(UriError::BadChar(c, offset + i));
        }
        i += 1;
    }
    Ok(format!("{scheme}:{rest}"))
}

/// Why a file descriptor cannot be opened on the host.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot inspect the file descriptor")]
    Stat(#[source] io::Error),
    #[error(
        "the file descriptor is open for writing only; pass one opened for reading or with O_PATH"
    )]
    WriteOnly,
    #[error("the file descriptor is not a regular file")]
    NotAFile,
    #[error("the file descriptor is neither a regular file nor a directory")]
    NotAFileOrDirectory,
    #[error("{0} is executable; the portal does not hand programs to the host's handler")]
    Executable(PathBuf),
    #[error("the file descriptor has no usable path ({0:?})")]
    NoPath(PathBuf),
    #[error("{0} is not one of the app's documents")]
    NotADocument(PathBuf),
    #[error("{path} does not exist on the host the way the sandbox sees it")]
    NotOnHost {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0} on the host is not the file of the descriptor")]
    Mismatch(PathBuf),
}

/// What the handler is asked to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Uri(String),
    /// A host path: a file, or the directory to show.
    Path(PathBuf),
}

impl Target {
    /// The handler's one argument.
    pub fn argument(&self) -> String {
        match self {
            Target::Uri(uri) => uri.clone(),
            Target::Path(path) => crate::grant::file_uri(path),
        }
    }
}

/// The host file behind `fd`, a descriptor the app sent. `doc_dir` is the
/// app's document directory as its sandbox sees it, and `docs` the
/// document store. With `directory`, the directory to show: the
/// descriptor's own, or the one holding its file.
pub fn host_target(
    fd: BorrowedFd<'_>,
    app: &AppId,
    doc_dir: &Path,
    docs: impl FnOnce() -> Option<Documents>,
    directory: bool,
) -> Result<PathBuf, FileError> {
    let st = nix::sys::stat::fstat(fd).map_err(|e| FileError::Stat(e.into()))?;
    let kind = st.st_mode & libc::S_IFMT;
    let is_dir = kind == libc::S_IFDIR;
    if kind != libc::S_IFREG && !(directory && is_dir) {
        return Err(if directory {
            FileError::NotAFileOrDirectory
        } else {
            FileError::NotAFile
        });
    }
    // SAFETY: F_GETFL on a descriptor we hold; it reads no memory of ours.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(FileError::Stat(io::Error::last_os_error()));
    }
    if flags & libc::O_PATH == 0 && flags & libc::O_ACCMODE == libc::O_WRONLY {
        return Err(FileError::WriteOnly);
    }
    let seen =
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(FileError::Stat)?;
    if !appbox::hostfacts::clean_absolute(&seen) || seen.file_name().is_none() && !is_dir {
        return Err(FileError::NoPath(seen));
    }
    let host = match seen.strip_prefix(doc_dir) {
        Ok(rel) => document_path(&seen, rel, app, docs)?,
        Err(_) => seen.clone(),
    };
    let on_host = openat2(
        None,
        &host,
        libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        0,
        RESOLVE_NO_SYMLINKS,
    )
    .map_err(|source| FileError::NotOnHost {
        path: host.clone(),
        source,
    })?;
    let host_st = nix::sys::stat::fstat(on_host.as_fd()).map_err(|e| FileError::Stat(e.into()))?;
    if (host_st.st_dev, host_st.st_ino) != (st.st_dev, st.st_ino) {
        return Err(FileError::Mismatch(host));
    }
    if is_dir {
        return Ok(host);
    }
    if directory {
        return host
            .parent()
            .map(Path::to_owned)
            .ok_or(FileError::NoPath(host));
    }
    let desktop_file = host
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("desktop"));
    if st.st_mode & 0o111 != 0 || desktop_file {
        return Err(FileError::Executable(host));
    }
    Ok(host)
}

/// The host file of the document at `<doc_dir>/<rel>`, if it is the app's.
fn document_path(
    seen: &Path,
    rel: &Path,
    app: &AppId,
    docs: impl FnOnce() -> Option<Documents>,
) -> Result<PathBuf, FileError> {
    let not_a_doc = || FileError::NotADocument(seen.to_owned());
    let mut parts = rel.iter();
    let (Some(id), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(not_a_doc());
    };
    let id = id
        .to_str()
        .and_then(|id| DocId::parse(id).ok())
        .ok_or_else(not_a_doc)?;
    let docs = docs().ok_or_else(not_a_doc)?;
    let doc = docs.documents.get(&id).ok_or_else(not_a_doc)?;
    if !doc.apps.contains_key(app) || OsStr::new(doc.name()) != name {
        return Err(not_a_doc());
    }
    Ok(doc.path.clone())
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{URI_HANDLER_ENV} must name a program by its absolute path, not {0:?}")]
    NotAbsolute(OsString),
    #[error("cannot start {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The host's handler for URIs and files, with the environment it gets.
pub struct Handler {
    program: Result<PathBuf, OsString>,
    env: Vec<(OsString, OsString)>,
}

impl Handler {
    /// The handler named by the portal's environment, with an environment
    /// made from the portal's. A bad [`URI_HANDLER_ENV`] is reported here
    /// and makes every open fail.
    pub fn from_env() -> Handler {
        let program = match std::env::var_os(URI_HANDLER_ENV) {
            None => Ok(PathBuf::from(DEFAULT_URI_HANDLER)),
            Some(value) if Path::new(&value).is_absolute() => {
                eprintln!(
                    "appbox-portal: opening URIs with {} (from {URI_HANDLER_ENV})",
                    Path::new(&value).display()
                );
                Ok(PathBuf::from(value))
            }
            Some(value) => {
                eprintln!(
                    "appbox-portal: error: {}",
                    HandlerError::NotAbsolute(value.clone())
                );
                Err(value)
            }
        };
        Handler {
            program,
            env: host_env(std::env::vars_os()),
        }
    }

    pub fn new(program: PathBuf, env: Vec<(OsString, OsString)>) -> Handler {
        Handler {
            program: Ok(program),
            env,
        }
    }

    /// Starts the handler on `target`, detached, and returns its pid once
    /// it runs. A thread of its own reaps it.
    pub fn open(&self, target: &Target) -> Result<u32, HandlerError> {
        let program = self
            .program
            .as_ref()
            .map_err(|value| HandlerError::NotAbsolute(value.clone()))?;
        let mut cmd = Command::new(program);
        cmd.arg(target.argument())
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // SAFETY: the closure runs in the forked child before exec and only
        // calls setsid, which is async-signal-safe and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| HandlerError::Spawn {
            program: program.clone(),
            source,
        })?;
        let pid = child.id();
        let name = program.display().to_string();
        let reaper = std::thread::Builder::new()
            .name("appbox-uri-reaper".into())
            .spawn(move || match child.wait() {
                Ok(status) if !status.success() => {
                    eprintln!("appbox-portal: {name} ended with {status}");
                }
                Ok(_) => {}
                Err(e) => eprintln!("appbox-portal: cannot wait for {name}: {e}"),
            });
        if let Err(e) = reaper {
            eprintln!("appbox-portal: cannot start a thread to reap the URI handler: {e}");
        }
        Ok(pid)
    }
}

pub struct OpenUri {
    portal: Arc<Portal>,
    handler: Arc<Handler>,
}

impl OpenUri {
    pub fn new(portal: Arc<Portal>, handler: Handler) -> OpenUri {
        OpenUri {
            portal,
            handler: Arc::new(handler),
        }
    }
}

type Options = HashMap<String, OwnedVariant>;

#[interface(name = "org.freedesktop.portal.OpenURI")]
impl OpenUri {
    #[zbus(name = "OpenURI")]
    async fn open_uri(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        parent_window: &str,
        uri: &str,
        options: Options,
    ) -> Result<OwnedObjectPath, PortalError> {
        let _ = parent_window;
        let caller = self.portal.caller(&header)?;
        let uri = check_uri(uri).map_err(|e| PortalError::InvalidArgument(e.to_string()))?;
        self.start(connection, caller, &options, Target::Uri(uri))
            .await
    }

    async fn open_file(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        parent_window: &str,
        fd: zbus::Fd<'_>,
        options: Options,
    ) -> Result<OwnedObjectPath, PortalError> {
        let _ = parent_window;
        let caller = self.portal.caller(&header)?;
        let path = self.file(&caller, fd.as_fd(), false)?;
        self.start(connection, caller, &options, Target::Path(path))
            .await
    }

    async fn open_directory(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        parent_window: &str,
        fd: zbus::Fd<'_>,
        options: Options,
    ) -> Result<OwnedObjectPath, PortalError> {
        let _ = parent_window;
        let caller = self.portal.caller(&header)?;
        let path = self.file(&caller, fd.as_fd(), true)?;
        self.start(connection, caller, &options, Target::Path(path))
            .await
    }

    #[zbus(property(emits_changed_signal = "const"), name = "version")]
    fn version(&self) -> u32 {
        4
    }
}

impl OpenUri {
    fn file(
        &self,
        caller: &Caller,
        fd: BorrowedFd<'_>,
        directory: bool,
    ) -> Result<PathBuf, PortalError> {
        let store = self.portal.granter().store();
        host_target(
            fd,
            &caller.app_id,
            &caller.doc_dir,
            || store.load().ok(),
            directory,
        )
        .map_err(|e| match e {
            FileError::Stat(_) => PortalError::Failed(appbox::sandbox::chain(&e)),
            FileError::Executable(_)
            | FileError::NotADocument(_)
            | FileError::NotOnHost { .. }
            | FileError::Mismatch(_) => PortalError::NotAllowed(appbox::sandbox::chain(&e)),
            _ => PortalError::InvalidArgument(appbox::sandbox::chain(&e)),
        })
    }

    /// Exports the Request, then starts the handler and answers on it.
    async fn start(
        &self,
        connection: &Connection,
        caller: Caller,
        options: &Options,
        target: Target,
    ) -> Result<OwnedObjectPath, PortalError> {
        let token = match options.get("handle_token").map(|v| &**v) {
            None => None,
            Some(zbus::Variant::Str(token)) => Some(token.to_string()),
            Some(_) => {
                return Err(PortalError::InvalidArgument(
                    "option handle_token must be a string".into(),
                ))
            }
        };
        let sender = caller.unique_name.clone();
        let path = request::handle_path(&sender, token.as_deref())?;
        let on_close = request::export(connection.object_server(), &path, &sender).await?;
        let what = match &target {
            Target::Uri(uri) => uri.clone(),
            Target::Path(path) => format!("{path:?}"),
        };
        eprintln!("appbox-portal: {} opens {what}", caller.app_id);
        let handler = self.handler.clone();
        let connection = connection.clone();
        let handle = path.clone();
        let app_id = caller.app_id.to_string();
        tokio::spawn(async move {
            let work = tokio::task::spawn_blocking(move || handler.open(&target));
            tokio::select! {
                _ = on_close => request::remove(&connection, &path).await,
                done = work => {
                    let response = match done {
                        Ok(Ok(_pid)) => Response::Success,
                        Ok(Err(e)) => {
                            eprintln!(
                                "appbox-portal: cannot open {what} for {app_id}: {}",
                                appbox::sandbox::chain(&e)
                            );
                            Response::Other
                        }
                        Err(_) => Response::Other,
                    };
                    request::respond(&connection, &path, &sender, response, HashMap::new()).await;
                }
            }
        });
        Ok(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;

    #[test]
    fn helpers_get_only_the_allowlist_and_host_defaults() {
        let portal_env = [
            ("HOME", "/home/u"),
            ("LANG", "de_DE.UTF-8"),
            ("LC_TIME", "C"),
            ("LC_", "x"),
            ("LC_lower", "x"),
            ("LD_PRELOAD", "/evil.so"),
            ("LD_LIBRARY_PATH", "/evil"),
            ("GIO_EXTRA_MODULES", "/evil"),
            ("GTK_MODULES", "evil"),
            ("PYTHONPATH", "/evil"),
            ("PATH", "/evil/bin:/usr/bin"),
            ("XDG_DATA_DIRS", "/evil/share"),
            ("XDG_CONFIG_DIRS", "/evil/etc"),
            ("DISPLAY", ":0"),
            ("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/1/bus"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = host_env(portal_env);
        let get = |name: &str| {
            env.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.to_str().unwrap().to_owned())
        };
        let names: Vec<&str> = env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "DBUS_SESSION_BUS_ADDRESS",
                "DISPLAY",
                "HOME",
                "LANG",
                "LC_TIME",
                "PATH",
                "XDG_CONFIG_DIRS",
                "XDG_DATA_DIRS"
            ]
        );
        assert_eq!(get("PATH").unwrap(), "/usr/local/bin:/usr/bin:/bin");
        assert_eq!(get("XDG_DATA_DIRS").unwrap(), "/usr/local/share:/usr/share");
        assert_eq!(get("XDG_CONFIG_DIRS").unwrap(), "/etc/xdg");
    }

    #[test]
    fn uris_are_checked_as_rfc_3986_with_a_plain_scheme() {
        for good in [
            "https://example.org/a?b=c#d",
            "mailto:someone@example.org",
            "HTTP://EXAMPLE.org/%20x",
            "irc://[::1]:6667/chan",
            "x-scheme.a+b-c:opaque",
        ] {
            let checked = check_uri(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(checked.to_lowercase(), good.to_lowercase());
        }
        assert_eq!(check_uri("HTTPS://x").unwrap(), "https://x");
        let cases: &[(&str, UriError)] = &[
            ("", UriError::Empty),
            ("file:///etc/passwd", UriError::FileScheme),
            ("FILE:///etc/passwd", UriError::FileScheme),
            ("File:/etc/passwd", UriError::FileScheme),
            ("https://a\nb", UriError::Control),
            ("https://a\u{1b}[31m", UriError::Control),
            ("https://a\u{85}", UriError::Control),
            ("https://a\0", UriError::Control),
            ("/etc/passwd", UriError::NoScheme),
            ("-x:y", UriError::BadScheme("-x".into())),
            ("1http://x", UriError::BadScheme("1http".into())),
            ("ht tp://x", UriError::BadScheme("ht tp".into())),
            ("https:", UriError::NoBody),
            ("https://a b", UriError::BadChar(' ', 9)),
            ("https://ä", UriError::BadChar('ä', 8)),
            ("https://a\"b", UriError::BadChar('"', 9)),
            ("https://a%2", UriError::BadPercent(9)),
            ("https://a%zz", UriError::BadPercent(9)),
        ];
        for (bad, error) in cases {
            assert_eq!(check_uri(bad).as_ref(), Err(error), "{bad:?}");
        }
        assert_eq!(
            check_uri(&format!("https://{}", "a".repeat(MAX_URI_LEN))),
            Err(UriError::TooLong)
        );
    }

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp_dir(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("appbox-openuri-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(std::fs::canonicalize(&dir).unwrap())
    }

    fn open(path: &Path, flags: i32) -> OwnedFd {
        openat2(None, path, flags | libc::O_CLOEXEC, 0, 0).unwrap()
    }

    fn app() -> AppId {
        AppId::parse("org.example.App").unwrap()
    }

    fn target(
        fd: &OwnedFd,
        doc_dir: &Path,
        docs: Option<Documents>,
        directory: bool,
    ) -> Result<PathBuf, FileError> {
        host_target(fd.as_fd(), &app(), doc_dir, || docs, directory)
    }

    #[test]
    fn files_are_the_same_file_on_the_host() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("files");
        let doc_dir = dir.0.join("doc");
        let file = dir.0.join("notes.txt");
        std::fs::write(&file, "x").unwrap();
        let fd = open(&file, libc::O_RDONLY);
        assert_eq!(target(&fd, &doc_dir, None, false).unwrap(), file);
        // OpenDirectory shows the file's directory; O_PATH is enough.
        let fd = open(&file, libc::O_PATH);
        assert_eq!(target(&fd, &doc_dir, None, true).unwrap(), dir.0);
        let fd = open(&dir.0, libc::O_RDONLY | libc::O_DIRECTORY);
        assert_eq!(target(&fd, &doc_dir, None, true).unwrap(), dir.0);
        assert!(matches!(
            target(&fd, &doc_dir, None, false),
            Err(FileError::NotAFile)
        ));
        let fd = open(&file, libc::O_WRONLY);
        assert!(matches!(
            target(&fd, &doc_dir, None, false),
            Err(FileError::WriteOnly)
        ));
        // Programs and launchers are not opened.
        let program = dir.0.join("run.sh");
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let fd = open(&program, libc::O_RDONLY);
        assert!(matches!(
            target(&fd, &doc_dir, None, false),
            Err(FileError::Executable(_))
        ));
        let launcher = dir.0.join("evil.desktop");
        std::fs::write(&launcher, "[Desktop Entry]\n").unwrap();
        let fd = open(&launcher, libc::O_RDONLY);
        assert!(matches!(
            target(&fd, &doc_dir, None, false),
            Err(FileError::Executable(_))
        ));
        // A renamed file is found where it is now.
        let fd = open(&file, libc::O_RDONLY);
        std::fs::rename(&file, dir.0.join("moved")).unwrap();
        assert_eq!(
            target(&fd, &doc_dir, None, false).unwrap(),
            dir.0.join("moved")
        );
        // Deleted: no path on the host at all.
        let gone = dir.0.join("gone");
        std::fs::write(&gone, "x").unwrap();
        let fd = open(&gone, libc::O_RDONLY);
        std::fs::remove_file(&gone).unwrap();
        assert!(target(&fd, &doc_dir, None, false).is_err());
    }

    #[test]
    fn documents_are_mapped_through_the_store_for_their_app_only() {
        let dir = temp_dir("docs");
        let host = dir.0.join("host");
        std::fs::create_dir(&host).unwrap();
        let chosen = host.join("report.txt");
        std::fs::write(&chosen, "x").unwrap();
        let mut docs = Documents::default();
        let id = docs.grant(&chosen, &app(), false).unwrap();
        // The sandbox's view: the document's mount point. Here a hard link
        // stands in for the bind mount: the same inode at the doc path.
        let doc_dir = dir.0.join("doc");
        let in_doc = doc_dir.join(id.as_str()).join("report.txt");
        std::fs::create_dir_all(in_doc.parent().unwrap()).unwrap();
        std::fs::hard_link(&chosen, &in_doc).unwrap();
        let fd = open(&in_doc, libc::O_RDONLY);
        assert_eq!(
            target(&fd, &doc_dir, Some(docs.clone()), false).unwrap(),
            chosen
        );
        // The store's file replaced on the host: not the file the app holds.
        let fd_before = open(&in_doc, libc::O_RDONLY);
        std::fs::rename(&chosen, host.join("old")).unwrap();
        std::fs::write(&chosen, "new").unwrap();
        assert!(matches!(
            target(&fd_before, &doc_dir, Some(docs.clone()), false),
            Err(FileError::Mismatch(_))
        ));
        std::fs::remove_file(&chosen).unwrap();
        std::fs::rename(host.join("old"), &chosen).unwrap();
        // Another app's document is not this app's to open.
        let other = AppId::parse("org.example.Other").unwrap();
        let err = host_target(fd.as_fd(), &other, &doc_dir, || Some(docs.clone()), false);
        assert!(matches!(err, Err(FileError::NotADocument(_))), "{err:?}");
        // Under the doc dir, but not a document.
        let stray = doc_dir.join("stray.txt");
        std::fs::write(&stray, "x").unwrap();
        let fd = open(&stray, libc::O_RDONLY);
        assert!(matches!(
            target(&fd, &doc_dir, Some(docs), false),
            Err(FileError::NotADocument(_))
        ));
    }

    #[test]
    fn file_targets_become_file_uris() {
        assert_eq!(
            Target::Path(PathBuf::from("/home/u/a b.txt")).argument(),
            "file:///home/u/a%20b.txt"
        );
        assert_eq!(Target::Uri("https://x".into()).argument(), "https://x");
    }

    #[test]
    fn the_handler_starts_or_says_why_not() {
        let dir = temp_dir("handler");
        let handler = Handler::new(PathBuf::from("/usr/bin/true"), vec![]);
        let pid = handler.open(&Target::Uri("https://x".into())).unwrap();
        // Reaped once it ends: no zombie is left under /proc.
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let start = std::time::Instant::now();
        while proc_dir.exists() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "the handler {pid} was not reaped: {:?}",
                std::fs::read_to_string(proc_dir.join("stat"))
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let missing = Handler::new(dir.0.join("missing"), vec![]);
        let err = missing.open(&Target::Uri("https://x".into())).unwrap_err();
        assert!(matches!(err, HandlerError::Spawn { .. }), "{err:?}");
        assert!(err.to_string().contains("missing"), "{err}");
    }
}

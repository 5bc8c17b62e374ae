//! What bundles (`bundle.rs`) and OCI images (`oci.rs`) share. Both carry a
//! commit in ostree-ext's tar format: a repository embedded under
//! `sysroot/ostree/repo/`, the commit object first, right after it the
//! commit's detached metadata (the signatures), then every other object.
//!
//! ostree-ext's importer asserts on tar entries that end early (and release
//! builds abort on panics) and bounds nothing, so every stream is scanned
//! here before it sees one, and after an import every object the commit
//! reaches must be present. Also here: which commit an export takes, what an
//! import brought, and the staging files and directories of both.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::appid::AppId;
use crate::store::build::ref_name;
use crate::store::bundle::{ImportedBundle, MAX_ENTRIES, MAX_UNPACKED_BYTES};
use crate::store::catalog::{self, CatalogError, Entry, EntryKind};
use crate::store::manifest::Kind;
use crate::store::repo::{Repo, RepoError};

/// ostree's own limit on a metadata object (commit, dirtree, dirmeta,
/// detached metadata).
const MAX_METADATA_BYTES: u64 = 10 << 20;
/// ostree-ext keeps every extended-attribute set it reads in memory.
const MAX_XATTRS_BYTES: u64 = 64 << 20;
/// Where the tar stream keeps its repository; other entries are ignored.
const REPO_PREFIX: &str = "sysroot/ostree/repo";

pub(crate) const NO_CANCEL: Option<&ostree_ext::gio::Cancellable> = None;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The errors of the shared code. `BundleError` and `OciError` have each of
/// these variants, alike (see [`impl_from_common_error`]).
#[derive(Debug)]
pub(crate) enum CommonError {
    Repo(RepoError),
    InvalidId {
        id: String,
        reason: String,
    },
    NotInRepo {
        app_ref: String,
        runtime_ref: String,
        repo: PathBuf,
    },
    NoEntry {
        commit: String,
    },
    BadEntry {
        commit: String,
        source: CatalogError,
    },
    WrongEntry {
        commit: String,
        ref_name: String,
        described: String,
    },
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    Runtime(String),
}

impl From<RepoError> for CommonError {
    fn from(error: RepoError) -> Self {
        CommonError::Repo(error)
    }
}

/// `impl From<CommonError> for $error`, an error enum with the same variants.
/// A macro because the two public enums must stay as they are.
macro_rules! impl_from_common_error {
    ($error:ident) => {
        impl From<$crate::store::ostree_tar::CommonError> for $error {
            fn from(error: $crate::store::ostree_tar::CommonError) -> Self {
                use $crate::store::ostree_tar::CommonError as E;
                match error {
                    E::Repo(source) => Self::Repo(source),
                    E::InvalidId { id, reason } => Self::InvalidId { id, reason },
                    E::NotInRepo {
                        app_ref,
                        runtime_ref,
                        repo,
                    } => Self::NotInRepo {
                        app_ref,
                        runtime_ref,
                        repo,
                    },
                    E::NoEntry { commit } => Self::NoEntry { commit },
                    E::BadEntry { commit, source } => Self::BadEntry { commit, source },
                    E::WrongEntry {
                        commit,
                        ref_name,
                        described,
                    } => Self::WrongEntry {
                        commit,
                        ref_name,
                        described,
                    },
                    E::Io { what, path, source } => Self::Io { what, path, source },
                    E::Runtime(message) => Self::Runtime(message),
                }
            }
        }
    };
}
pub(crate) use impl_from_common_error;

/// For `map_err`: the I/O error of doing `what` to `path`.
pub(crate) fn io_error<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> CommonError + 'a {
    move |source| CommonError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// What a bundle or an image is, for the wording of messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Whole {
    Bundle,
    Image,
}

impl Whole {
    /// Text from a bundle or an image (or from a library or a registry
    /// quoting it) made safe for an error message: control and bidi
    /// characters escaped, at most 300 characters. An image's text is mostly
    /// skopeo's and registries' (longer, ending in newlines): trimmed, 600.
    pub(crate) fn clean(self, text: &str) -> String {
        let (text, limit) = match self {
            Whole::Bundle => (text, 300),
            Whole::Image => (text.trim(), 600),
        };
        let mut out = String::new();
        for (index, c) in text.chars().enumerate() {
            if index == limit {
                out.push('…');
                break;
            }
            let invisible = matches!(
                c,
                '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'
            );
            if c.is_control() || invisible {
                out.extend(c.escape_unicode());
            } else {
                out.push(c);
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Commits
// ---------------------------------------------------------------------------

/// The commit that `app/ID/ARCH/stable` (or else `runtime/ID/ARCH/stable`)
/// points to in `repo`, with its catalog entry (which must describe it), and
/// its detached metadata: what an export carries.
pub(crate) fn commit_to_export(
    repo: &Repo,
    id: &str,
) -> Result<(ImportedBundle, Option<Vec<u8>>), CommonError> {
    AppId::parse(id).map_err(|e| CommonError::InvalidId {
        id: id.to_owned(),
        reason: e.to_string(),
    })?;
    let app_ref = ref_name(Kind::App, id);
    let runtime_ref = ref_name(Kind::Runtime, id);
    let (ref_name, kind, commit) = if let Some(commit) = repo.resolve(&app_ref)? {
        (app_ref, EntryKind::App, commit)
    } else if let Some(commit) = repo.resolve(&runtime_ref)? {
        (runtime_ref, EntryKind::Runtime, commit)
    } else {
        return Err(CommonError::NotInRepo {
            app_ref,
            runtime_ref,
            repo: repo.path().to_owned(),
        });
    };
    let entry = read_entry(repo, &commit)?;
    if entry.id != id || entry.kind != kind {
        return Err(CommonError::WrongEntry {
            described: format!("{} ({})", entry.id, kind_name(entry.kind)),
            commit,
            ref_name,
        });
    }
    let detached = repo.detached_metadata(&commit)?;
    Ok((
        ImportedBundle {
            commit,
            ref_name,
            entry,
        },
        detached,
    ))
}

/// What an import brought: the commit, its catalog entry, and the ref the
/// entry names (the file's or image's name counts for nothing).
pub(crate) fn imported(repo: &Repo, commit: String) -> Result<ImportedBundle, CommonError> {
    let entry = read_entry(repo, &commit)?;
    let kind = match entry.kind {
        EntryKind::App => Kind::App,
        EntryKind::Runtime => Kind::Runtime,
    };
    Ok(ImportedBundle {
        commit,
        ref_name: ref_name(kind, &entry.id),
        entry,
    })
}

fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::App => "app",
        EntryKind::Runtime => "runtime",
    }
}

/// The commit's catalog entry, parsed and checked.
fn read_entry(repo: &Repo, commit: &str) -> Result<Entry, CommonError> {
    let json = repo
        .commit_string(commit, catalog::COMMIT_KEY)?
        .ok_or_else(|| CommonError::NoEntry {
            commit: commit.to_owned(),
        })?;
    Entry::parse(&json).map_err(|source| CommonError::BadEntry {
        commit: commit.to_owned(),
        source,
    })
}

/// Checks that every object `commit` reaches is in the repository: ostree-ext
/// marks the commit complete without checking. An incomplete commit is marked
/// partial again, so nothing takes it for whole. Errs with the reason.
pub(crate) fn check_complete(repo: &Repo, commit: &str) -> Result<(), String> {
    let ostree = repo.ostree();
    let reason = match ostree.traverse_commit(commit, 0, NO_CANCEL) {
        Err(e) => Some(e.to_string()),
        Ok(objects) => {
            let missing = objects
                .iter()
                .filter(|object| {
                    !ostree
                        .has_object(object.object_type(), object.checksum(), NO_CANCEL)
                        .unwrap_or(false)
                })
                .count();
            (missing > 0).then(|| format!("{missing} of its {} objects are missing", objects.len()))
        }
    };
    match reason {
        None => Ok(()),
        Some(reason) => {
            let _ = ostree.mark_commit_partial(commit, true);
            Err(reason)
        }
    }
}

/// Errs when called inside a tokio runtime: ostree-ext's async code runs on a
/// runtime of our own, which cannot start inside another.
pub(crate) fn not_in_runtime(what: &str) -> Result<(), CommonError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(CommonError::Runtime(format!(
            "{what} was called inside a tokio runtime; call it from a blocking thread"
        )));
    }
    Ok(())
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CommonError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommonError::Runtime(e.to_string()))
}

// ---------------------------------------------------------------------------
// Staging
// ---------------------------------------------------------------------------

/// A file or directory of ours, removed when dropped (also on errors and
/// panics).
pub(crate) struct Staging {
    path: PathBuf,
    directory: bool,
}

impl Staging {
    /// Takes charge of the file `path`, which the caller creates.
    pub(crate) fn adopt(path: PathBuf) -> Self {
        Staging {
            path,
            directory: false,
        }
    }

    /// A new empty file (mode 0600) `PREFIX-PID-N` + `suffix` in `dir`.
    pub(crate) fn new_file(dir: &Path, prefix: &str, suffix: &str) -> Result<Self, CommonError> {
        Self::create(dir, prefix, suffix, false)
    }

    /// A new private directory (mode 0700) `PREFIX-PID-N` in `dir`.
    pub(crate) fn new_dir(dir: &Path, prefix: &str) -> Result<Self, CommonError> {
        Self::create(dir, prefix, "", true)
    }

    fn create(
        dir: &Path,
        prefix: &str,
        suffix: &str,
        directory: bool,
    ) -> Result<Self, CommonError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let path = dir.join(format!(
                "{prefix}-{}-{}{suffix}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let created = if directory {
                fs::DirBuilder::new().mode(0o700).create(&path)
            } else {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map(drop)
            };
            match created {
                Ok(()) => return Ok(Staging { path, directory }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error("create", &path)(e)),
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Never remove_dir_all on an adopted path: it may be someone's directory.
        let _ = if self.directory {
            fs::remove_dir_all(&self.path)
        } else {
            fs::remove_file(&self.path)
        };
    }
}

// ---------------------------------------------------------------------------
// The scan
// ---------------------------------------------------------------------------

/// Which stream of a bundle or an image a tar stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A bundle, or the first layer of an image: the commit, its detached
    /// metadata, the metadata objects and (unchunked) all content.
    Commit,
    /// A further layer of a chunked image: content objects only.
    Objects,
}

/// What the streams of one bundle or image may take together; a bundle is
/// one stream.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    entries: u64,
    unpacked: u64,
    xattrs: u64,
}

/// What the scan of a stream found.
#[derive(Debug, Default)]
pub(crate) struct Scanned {
    /// Always there in a [`Role::Commit`] stream.
    pub(crate) commit: Option<String>,
    /// The detached metadata's bytes, when the stream carries it.
    pub(crate) commitmeta: Option<Vec<u8>>,
}

/// What is wrong with a stream: why reading it failed, else what is wrong
/// with its tar.
#[derive(Debug)]
pub(crate) enum Flaw {
    /// Decompressing failed; the decompressor's message.
    Damaged(String),
    /// The streams unpack to more than [`MAX_UNPACKED_BYTES`].
    TooLarge,
    /// Writing the copy failed.
    Copy(io::Error),
    /// An entry ends early.
    Truncated(String),
    Malformed(String),
    /// Reading failed with no reason recorded (the reader records every
    /// failure of its own, so in practice never).
    Read(io::Error),
}

/// The decompressed stream: counts what it yields, stops at the cap, copies
/// it, and remembers why it failed (the tar reader wraps the errors it passes
/// on).
struct Unpacked<'a, 'b> {
    inner: &'a mut dyn Read,
    copy: Option<&'b mut dyn Write>,
    total: u64,
    limit: u64,
    failure: Option<Flaw>,
}

impl Read for Unpacked<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                self.failure.get_or_insert(Flaw::Damaged(e.to_string()));
                return Err(e);
            }
        };
        self.total += n as u64;
        if self.total > self.limit {
            self.failure.get_or_insert(Flaw::TooLarge);
            return Err(io::Error::other("the stream unpacks to too many bytes"));
        }
        if let Some(copy) = self.copy.as_mut() {
            if let Err(e) = copy.write_all(&buf[..n]) {
                let error = io::Error::new(e.kind(), e.to_string());
                self.failure.get_or_insert(Flaw::Copy(e));
                return Err(error);
            }
        }
        Ok(n)
    }
}

/// Reads the decompressed tar stream `inner` to its end, checking it (see
/// [`scan_tar`]) and copying it to `copy`. The whole stream is read, so a
/// gzip checksum is verified.
pub(crate) fn scan_stream(
    inner: &mut dyn Read,
    copy: Option<&mut dyn Write>,
    role: Role,
    budget: &mut Budget,
    whole: Whole,
) -> Result<Scanned, Flaw> {
    let mut stream = Unpacked {
        inner,
        copy,
        total: 0,
        limit: MAX_UNPACKED_BYTES.saturating_sub(budget.unpacked),
        failure: None,
    };
    let result = scan_tar(&mut stream, role, budget, whole).and_then(|scanned| {
        // Past the tar's end marker: the rest of the stream, for its checksum.
        io::copy(&mut stream, &mut io::sink()).map_err(Flaw::Read)?;
        Ok(scanned)
    });
    budget.unpacked += stream.total;
    match stream.failure {
        Some(failure) => Err(failure),
        None => result,
    }
}

/// Checks the tar stream `tar` as an import does before ostree-ext reads
/// any of it (see [`scan_tar`]): as a bundle or an image's first layer when
/// `commit_stream`, else as a further layer of an image. Returns the commit
/// it holds, or why it is refused. Only for the fuzz targets (`tests/fuzz`);
/// the imports themselves are `bundle::import_bundle` and `oci::import_image`.
#[doc(hidden)]
pub fn scan_untrusted_tar(tar: &[u8], commit_stream: bool) -> Result<Option<String>, String> {
    let role = if commit_stream {
        Role::Commit
    } else {
        Role::Objects
    };
    let mut tar = tar;
    scan_stream(&mut tar, None, role, &mut Budget::default(), Whole::Bundle)
        .map(|scanned| scanned.commit)
        .map_err(|flaw| match flaw {
            Flaw::Damaged(reason) | Flaw::Truncated(reason) | Flaw::Malformed(reason) => reason,
            Flaw::TooLarge => "too large".into(),
            Flaw::Copy(e) | Flaw::Read(e) => e.to_string(),
        })
}

/// The object an entry of the embedded repository stores, the way ostree-ext
/// reads its path (`objects/…/XX/REST.TYPE`): its checksum and type. None
/// when ostree-ext would not take it for an object.
fn object_of(path: &Path) -> Option<(String, &str)> {
    let rest = path.strip_prefix("objects").ok()?;
    let parent = rest.parent()?.file_name()?.to_str()?;
    let name = Path::new(rest.file_name()?);
    let kind = name.extension()?.to_str()?;
    let stem = name.file_stem()?.to_str()?;
    let stem = stem.trim_end_matches(".file");
    let checksum = format!("{parent}{stem}");
    (parent.len() == 2 && is_checksum(&checksum)).then_some((checksum, kind))
}

/// A sha256 checksum as ostree writes it: 64 lowercase hex digits.
pub(crate) fn is_checksum(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Reads every entry of a tar stream to its end, checking:
/// - every entry is complete, its header size agrees with any pax size, and
///   it is no GNU sparse file (ostree-ext asserts on short entries);
/// - paths are UTF-8 and modes are permission bits only;
/// - in the commit stream, the first object of the embedded repository is a
///   commit, optionally followed by its detached metadata, and no other
///   commit follows; other streams hold no commit or metadata objects;
/// - metadata objects, extended attributes and entries stay within the
///   limits.
fn scan_tar(
    stream: &mut dyn Read,
    role: Role,
    budget: &mut Budget,
    whole: Whole,
) -> Result<Scanned, Flaw> {
    let clean = |text: &str| whole.clean(text);
    let malformed = Flaw::Malformed;
    let not_tar = |e: io::Error| {
        malformed(format!(
            "it is not a tar archive: {}",
            clean(&e.to_string())
        ))
    };
    let mut archive = tar::Archive::new(stream);
    let entries = archive.entries().map_err(not_tar)?;
    let mut scanned = Scanned::default();
    let mut objects = 0u64;
    for (index, entry) in entries.enumerate() {
        let mut entry = entry.map_err(not_tar)?;
        budget.entries += 1;
        if budget.entries > MAX_ENTRIES {
            let it = match whole {
                Whole::Bundle => "it",
                Whole::Image => "the image",
            };
            return Err(malformed(format!(
                "{it} has more than {MAX_ENTRIES} entries"
            )));
        }
        let raw_path = entry
            .path()
            .map_err(|e| {
                malformed(format!(
                    "entry {index} has a bad path: {}",
                    clean(&e.to_string())
                ))
            })?
            .to_str()
            .ok_or_else(|| malformed(format!("entry {index} has a path that is not UTF-8")))?
            .to_owned();
        // For messages; `raw_path` is what ostree-ext will see.
        let path = clean(&raw_path);
        let header = entry.header();
        let kind = header.entry_type();
        let size = header
            .size()
            .map_err(|e| malformed(format!("{path}: bad size: {e}")))?;
        if kind.is_gnu_sparse() || size != entry.size() {
            return Err(malformed(format!(
                "{path}: sparse or resized entries are not allowed"
            )));
        }
        let mode = header
            .mode()
            .map_err(|e| malformed(format!("{path}: bad mode: {e}")))?;
        if mode & !0o7777 != 0 {
            return Err(malformed(format!(
                "{path}: mode {mode:o} is not permission bits"
            )));
        }

        // Which entries ostree-ext takes from the embedded repository.
        let in_repo = match Path::new(&raw_path).strip_prefix(REPO_PREFIX) {
            Ok(rest) if !kind.is_dir() => {
                let ignored =
                    rest.file_name().is_some_and(|n| n == "config") || rest.starts_with("refs");
                (!ignored).then(|| rest.to_owned())
            }
            _ => None,
        };
        let mut keep = None;
        if let Some(rest) = in_repo {
            let object = object_of(&rest);
            let object_kind = object.as_ref().map(|(_, kind)| *kind);
            objects += 1;
            let metadata = matches!(
                object_kind,
                Some("commit" | "commitmeta" | "dirtree" | "dirmeta")
            );
            match (role, objects, object_kind) {
                (Role::Commit, 1, Some("commit")) if kind == tar::EntryType::Regular => {
                    scanned.commit = object.map(|(checksum, _)| checksum);
                }
                (Role::Commit, 1, _) => {
                    return Err(malformed(format!(
                        "its first repository entry, {path}, is not a commit object"
                    )))
                }
                (Role::Commit, 2, Some("commitmeta")) => {
                    if object.map(|(checksum, _)| checksum) != scanned.commit
                        || kind != tar::EntryType::Regular
                    {
                        return Err(malformed(format!(
                            "{path} is not the detached metadata of its commit"
                        )));
                    }
                    keep = Some(Vec::new());
                }
                (Role::Commit, _, Some("commit" | "commitmeta")) => {
                    let one = match whole {
                        Whole::Bundle => "a bundle",
                        Whole::Image => "an image",
                    };
                    return Err(malformed(format!("{path}: {one} holds one commit")));
                }
                (Role::Objects, _, _) if metadata => {
                    return Err(malformed(format!(
                        "{path}: only the first layer may hold commit or metadata objects"
                    )))
                }
                _ => {}
            }
            if metadata && size > MAX_METADATA_BYTES {
                return Err(malformed(format!(
                    "{path} is {size} bytes, more than the {MAX_METADATA_BYTES} allowed"
                )));
            }
            if matches!(
                object_kind,
                Some("file-xattrs" | "file-xattrs-link" | "xattrs")
            ) || rest.starts_with("xattrs")
            {
                budget.xattrs += size;
                if budget.xattrs > MAX_XATTRS_BYTES {
                    return Err(malformed(format!(
                        "its extended attributes take more than {MAX_XATTRS_BYTES} bytes"
                    )));
                }
            }
        }
        let read = match keep.as_mut() {
            Some(bytes) => io::copy(&mut entry, bytes),
            None => io::copy(&mut entry, &mut io::sink()),
        }
        .map_err(Flaw::Read)?;
        if read != size {
            return Err(Flaw::Truncated(format!(
                "{path} ends after {read} of its {size} bytes"
            )));
        }
        if keep.is_some() {
            scanned.commitmeta = keep;
        }
    }
    if role == Role::Commit {
        match (&scanned.commit, objects) {
            (None, _) => {
                return Err(malformed(
                    "it holds no commit object (no sysroot/ostree/repo/objects/XX/REST.commit)"
                        .into(),
                ))
            }
            (Some(_), 1) => return Err(malformed("it holds nothing but a commit object".into())),
            _ => {}
        }
    }
    Ok(scanned)
}

/// Test fixtures of bundles and images: a signed source repository, an
/// empty destination, and hostile tar streams.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    use flate2::write::GzEncoder;

    use super::*;
    use crate::store::repo::Mode;
    use crate::store::sign::{self, SecretKey};

    /// A fresh directory under the system temp dir, removed on drop (also
    /// when a test fails).
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let path = std::env::temp_dir().join(format!(
                "appbox-test-{tag}-{}-{nanos}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir(&path).unwrap();
            TempDir(path)
        }

        pub(crate) fn join(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A valid app entry.
    pub(crate) fn entry(id: &str, name: &str, summary: &str) -> Entry {
        crate::store::catalog::sample_entry(id, name, summary)
    }

    /// Bytes of the large file: more than ostree-ext's 127 KiB "small" limit.
    pub(crate) fn big_file() -> Vec<u8> {
        (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// An archive repository `source` in `dir` with one commit of the app
    /// `entry` describes (with the entry in its metadata when `with_entry`),
    /// signed when `key` is given. Returns it and the commit.
    pub(crate) fn source_repo(
        dir: &TempDir,
        entry: &Entry,
        key: Option<&SecretKey>,
        with_entry: bool,
    ) -> (Repo, String) {
        let tree = dir.join("tree");
        fs::create_dir_all(tree.join("files/bin")).unwrap();
        fs::create_dir_all(tree.join("files/share")).unwrap();
        fs::write(
            tree.join("metadata.toml"),
            format!("id = \"{}\"\n", entry.id),
        )
        .unwrap();
        let hello = tree.join("files/bin/hello");
        fs::write(&hello, "#!/bin/sh\necho hello\n").unwrap();
        fs::set_permissions(&hello, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(tree.join("files/share/big.bin"), big_file()).unwrap();
        fs::write(tree.join("files/share/empty"), "").unwrap();
        std::os::unix::fs::symlink("bin/hello", tree.join("files/link")).unwrap();

        let repo = Repo::open_or_create_archive(&dir.join("source")).unwrap();
        let mut metadata = BTreeMap::from([("version".to_owned(), "1.0".to_owned())]);
        if with_entry {
            metadata.insert(catalog::COMMIT_KEY.to_owned(), entry.to_json());
        }
        let subject = format!("{} 1.0", entry.name);
        let commit = repo
            .commit_dir(&tree, &ref_name(Kind::App, &entry.id), &subject, &metadata)
            .unwrap()
            .checksum;
        if let Some(key) = key {
            let signed = repo.commit_bytes(&commit).unwrap();
            let detached = sign::add_signature(None, key, &signed).unwrap();
            repo.set_detached_metadata(&commit, &detached).unwrap();
        }
        (repo, commit)
    }

    /// `dest` holds `commit` as `source` has it: the commit and its detached
    /// metadata byte for byte, signed by `key`, and checked out (to
    /// `checkout` in `dir`) the files [`source_repo`] made. Returns the
    /// detached metadata.
    pub(crate) fn assert_arrived(
        dir: &TempDir,
        source: &Repo,
        dest: &Repo,
        commit: &str,
        key: &SecretKey,
    ) -> Vec<u8> {
        let detached = dest.detached_metadata(commit).unwrap().unwrap();
        assert_eq!(
            Some(&detached),
            source.detached_metadata(commit).unwrap().as_ref()
        );
        let signed = dest.commit_bytes(commit).unwrap();
        assert_eq!(signed, source.commit_bytes(commit).unwrap());
        sign::verify(&detached, &signed, &[key.public()]).unwrap();

        let checkout = dir.join("checkout");
        dest.checkout(commit, &checkout).unwrap();
        assert_eq!(
            fs::read_to_string(checkout.join("files/bin/hello")).unwrap(),
            "#!/bin/sh\necho hello\n"
        );
        let mode = fs::metadata(checkout.join("files/bin/hello"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);
        assert_eq!(
            fs::read(checkout.join("files/share/big.bin")).unwrap(),
            big_file()
        );
        assert_eq!(fs::read(checkout.join("files/share/empty")).unwrap(), b"");
        assert_eq!(
            fs::read_link(checkout.join("files/link")).unwrap(),
            Path::new("bin/hello")
        );
        assert!(checkout.join("metadata.toml").is_file());
        detached
    }

    /// A user's bare-user-only repository `name` in `dir`.
    pub(crate) fn dest_repo(dir: &TempDir, name: &str) -> Repo {
        Repo::open_or_create(&dir.join(name), Mode::BareUserOnly).unwrap()
    }

    pub(crate) fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Nothing of an import stays behind: no refs, no staging file or
    /// directory named `PREFIX-…` in the repository's `tmp/`.
    pub(crate) fn assert_no_leftovers(repo: &Repo, prefix: &str) {
        assert!(repo.refs("").unwrap().is_empty());
        let tmp = repo.path().join("tmp");
        let prefix = format!("{prefix}-");
        let leftovers: Vec<String> = names_in(&tmp)
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// `sysroot/ostree/repo/objects/XX/REST.commit` of `commit`.
    pub(crate) fn commit_path(commit: &str) -> String {
        format!(
            "sysroot/ostree/repo/objects/{}/{}.commit",
            &commit[..2],
            &commit[2..]
        )
    }

    /// A tar stream of regular files: (path, mode, data).
    pub(crate) fn tar_of(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, mode, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(*mode);
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// A commit object of 5 bytes whose pax size says 4096: ostree-ext would
    /// read a short object (and assert).
    pub(crate) fn resized_tar(commit: &str) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append_pax_extensions([("size", &b"4096"[..])])
            .unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, commit_path(commit), &b"12345"[..])
            .unwrap();
        builder.into_inner().unwrap()
    }

    /// A tar stream whose one entry, a commit object, claims 4096 bytes but
    /// stops after 100: what makes ostree-ext's importer assert.
    pub(crate) fn truncated_tar(commit: &str) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        header.set_path(commit_path(commit)).unwrap();
        header.set_size(4096);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        let mut tar = header.as_bytes().to_vec();
        tar.extend_from_slice(&[7u8; 100]);
        tar
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    const C: &str = "a86d80a3e9ff77c2e3144c787b7769b300f91ffd770221aac27bab854960b964";

    fn scan(tar: &[u8], role: Role) -> Result<Scanned, String> {
        scan_tar(&mut &tar[..], role, &mut Budget::default(), Whole::Image).map_err(|flaw| {
            match flaw {
                Flaw::Truncated(reason) | Flaw::Malformed(reason) => reason,
                other => panic!("{other:?}"),
            }
        })
    }

    #[test]
    fn object_paths_are_read_like_ostree_ext_does() {
        let (first, rest) = C.split_at(2);
        let path = format!("objects/{first}/{rest}.commit");
        assert_eq!(object_of(Path::new(&path)), Some((C.to_owned(), "commit")));
        let path = format!("objects/{first}/{rest}.file-xattrs-link");
        assert_eq!(
            object_of(Path::new(&path)),
            Some((C.to_owned(), "file-xattrs-link"))
        );
        for bad in [
            format!("objects/{first}/{}.commit", &rest[1..]),
            format!("objects/{}/{rest}.commit", C.to_uppercase().split_at(2).0),
            format!("state/{first}/{rest}.commit"),
            "objects/zz".to_owned(),
        ] {
            assert_eq!(object_of(Path::new(&bad)), None, "{bad}");
        }
    }

    #[test]
    fn hostile_streams_are_refused_before_ostree_ext_reads_them() {
        let err = scan(&truncated_tar(C), Role::Commit).unwrap_err();
        assert!(err.contains("ends after 100 of its 4096 bytes"), "{err}");

        // A pax size that disagrees with the header.
        let err = scan(&resized_tar(C), Role::Commit).unwrap_err();
        assert!(err.contains("resized"), "{err}");

        // Files rather than a commit; a commit in a later layer; two commits.
        let files = tar_of(&[("sysroot/ostree/repo/objects/zz", 0o644, b"12345")]);
        let err = scan(&files, Role::Commit).unwrap_err();
        assert!(err.contains("is not a commit object"), "{err}");

        let path = commit_path(C);
        let two = tar_of(&[(&path, 0o644, b"12345"), (&path, 0o644, b"12345")]);
        let err = scan(&two, Role::Commit).unwrap_err();
        assert!(err.contains("one commit"), "{err}");
        let err = scan(&two, Role::Objects).unwrap_err();
        assert!(err.contains("only the first layer"), "{err}");

        // A mode with file-type bits, and names that are escaped in messages.
        let setuid = tar_of(&[("sysroot/\u{1b}[2J\u{202e}", 0o104755, b"x")]);
        let err = scan(&setuid, Role::Commit).unwrap_err();
        assert!(err.contains("not permission bits"), "{err}");
        assert!(err.contains("\\u{1b}[2J\\u{202e}"), "{err}");

        let err = scan(b"", Role::Commit).unwrap_err();
        assert!(err.contains("no commit object"), "{err}");
        let err = scan(&[b'x'; 1024], Role::Commit).unwrap_err();
        assert!(err.contains("not a tar archive"), "{err}");
    }
}

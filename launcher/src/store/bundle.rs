//! Single-file bundles: one app or runtime commit, with its signatures and
//! every object it needs, in one file that installs without a remote.
//!
//! A bundle is ostree-ext's tar export of the commit, gzip-compressed. The
//! tar stream embeds a repository under `sysroot/ostree/repo/`: the commit
//! object (`objects/XX/REST.commit`), right after it the commit's detached
//! metadata (`objects/XX/REST.commitmeta`, where the ed25519 signatures
//! live; ostree-ext writes it whenever the commit has any, and its importer
//! restores it byte for byte), then the dirtree, dirmeta and content objects
//! (each content object preceded by its `.file-xattrs` / `.file-xattrs-link`).
//! A hardlinked checkout outside `sysroot/` rides along; importing ignores it.
//!
//! Importing takes hostile input. Nothing in the file is extracted to a path:
//! only objects are written, and libostree checks each one against its
//! checksum. Before ostree-ext sees the stream it is decompressed (and the
//! gzip checksum verified) into a private file while every entry is checked
//! to be complete and within limits, because ostree-ext's importer asserts on
//! short entries (and release builds abort on panics). After the import, every
//! object the commit reaches must be present. The import sets no ref and
//! checks no signature: the caller verifies the signature and only then
//! deploys.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use ostree_ext::ostree;

use crate::appid::AppId;
use crate::store::build::ref_name;
use crate::store::catalog::{self, CatalogError, Entry, EntryKind};
use crate::store::manifest::Kind;
use crate::store::repo::{Repo, RepoError};

/// Bundle files larger than this are refused before reading.
pub const MAX_BUNDLE_BYTES: u64 = 8 << 30;
/// A bundle whose tar stream is larger than this is refused (a gzip bomb
/// stops here).
pub const MAX_UNPACKED_BYTES: u64 = 16 << 30;
/// Tar entries in one bundle: a runtime of 100,000 files has about 400,000.
pub const MAX_ENTRIES: u64 = 2_000_000;
/// ostree's own limit on a metadata object (commit, dirtree, dirmeta,
/// detached metadata).
const MAX_METADATA_BYTES: u64 = 10 << 20;
/// ostree-ext keeps every extended-attribute set of a bundle in memory.
const MAX_XATTRS_BYTES: u64 = 64 << 20;
/// Where the tar stream keeps its repository; other entries are ignored.
const REPO_PREFIX: &str = "sysroot/ostree/repo";

const NO_CANCEL: Option<&ostree_ext::gio::Cancellable> = None;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("{id:?} is not a valid app or runtime id: {reason}")]
    InvalidId { id: String, reason: String },
    #[error(
        "neither {app_ref} nor {runtime_ref} is in the repository {}; build it there first \
         (`appbox build`) or check the id",
        repo.display()
    )]
    NotInRepo {
        app_ref: String,
        runtime_ref: String,
        repo: PathBuf,
    },
    #[error(
        "commit {commit} carries no catalog entry (`{}` in its metadata), so it is not \
         known what it holds; only commits made by `appbox build` can be bundled and installed",
        catalog::COMMIT_KEY
    )]
    NoEntry { commit: String },
    #[error("the catalog entry of commit {commit} is invalid")]
    BadEntry {
        commit: String,
        #[source]
        source: CatalogError,
    },
    #[error(
        "commit {commit} of {ref_name} describes itself as {described}; rebuild it with \
         `appbox build`"
    )]
    WrongEntry {
        commit: String,
        ref_name: String,
        described: String,
    },
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} is not a regular file; give the path of a bundle written by `appbox build-bundle`",
        path.display()
    )]
    NotAFile { path: PathBuf },
    #[error("{} {what} more than the {limit} bytes a bundle may have", path.display())]
    TooLarge {
        path: PathBuf,
        what: &'static str,
        limit: u64,
    },
    #[error(
        "{} is not an appbox bundle: it is not gzip-compressed (bundles are written by \
         `appbox build-bundle`)",
        path.display()
    )]
    NotGzip { path: PathBuf },
    #[error("{} is damaged or truncated ({reason}); copy or download it again", path.display())]
    Damaged { path: PathBuf, reason: String },
    #[error("{} is not a valid appbox bundle: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("cannot write the bundle of commit {commit}: {message}")]
    Export { commit: String, message: String },
    #[error(
        "the bundle written for commit {commit} does not carry the commit's detached metadata \
         (its signatures) unchanged; this is a bug in appbox, please report it"
    )]
    SignaturesLost { commit: String },
    #[error("cannot import {} into the repository {}: {message}", path.display(), repo.display())]
    Import {
        path: PathBuf,
        repo: PathBuf,
        message: String,
    },
    #[error(
        "{} does not hold all of commit {commit} ({reason}); it is damaged or incomplete, \
         get a new copy",
        path.display()
    )]
    Incomplete {
        path: PathBuf,
        commit: String,
        reason: String,
    },
    #[error("cannot run the import: {0}")]
    Runtime(String),
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BundleError + 'a {
    move |source| BundleError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Text from a bundle (or from a library quoting it) made safe for an error
/// message: control and bidi characters escaped, at most 300 characters.
fn clean(text: &str) -> String {
    let mut out = String::new();
    for (index, c) in text.chars().enumerate() {
        if index == 300 {
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

/// What a bundle holds, as read back after import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedBundle {
    pub commit: String,
    pub ref_name: String,
    pub entry: Entry,
}

/// Writes the commit that `app/ID/ARCH/stable` (or else `runtime/ID/ARCH/stable`)
/// points to in `repo` as a bundle: an ostree-ext tar stream (the commit, its
/// detached metadata with the signatures, and every object), gzip-compressed.
///
/// The bundle is written to `FILE.tmpPID`, read back and checked (it must be
/// one [`import_bundle`] accepts, carrying exactly the repository's detached
/// metadata), and only then renamed to `file`; a failure never leaves a
/// partial `file`. An unsigned commit makes an unsigned bundle, which an
/// install refuses unless the user trusts it without signatures.
pub fn write_bundle(repo: &Repo, id: &str, file: &Path) -> Result<ImportedBundle, BundleError> {
    AppId::parse(id).map_err(|e| BundleError::InvalidId {
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
        return Err(BundleError::NotInRepo {
            app_ref,
            runtime_ref,
            repo: repo.path().to_owned(),
        });
    };
    let entry = read_entry(repo, &commit)?;
    if entry.id != id || entry.kind != kind {
        return Err(BundleError::WrongEntry {
            described: format!("{} ({})", entry.id, kind_name(entry.kind)),
            commit,
            ref_name,
        });
    }
    let detached = repo.detached_metadata(&commit)?;

    let staging = Staging(staging_path(file));
    export_to(repo, &commit, &staging.0)?;
    // Read it back the way an import will: this proves the file is complete
    // and that the signatures travel in it.
    let scanned = unpack(open_bundle(&staging.0)?, None, file)?;
    if scanned.commit != commit {
        return Err(BundleError::Export {
            message: format!("the written bundle holds commit {} instead", scanned.commit),
            commit,
        });
    }
    if scanned.commitmeta != detached {
        return Err(BundleError::SignaturesLost { commit });
    }
    fs::rename(&staging.0, file).map_err(io_error("write", file))?;
    Ok(ImportedBundle {
        commit,
        ref_name,
        entry,
    })
}

/// Imports a bundle's objects into `repo` (the user's bare-user-only
/// repository) and returns what it holds.
///
/// It sets no refs and deploys nothing: the caller verifies the signature
/// (`Repo::commit_bytes` + `Repo::detached_metadata` + `sign::verify`) and
/// only then deploys. The catalog entry comes from the commit's metadata and
/// the ref from the entry's kind and id; the file's name counts for nothing.
///
/// Runs ostree-ext's async importer on a runtime of its own, so it must not be
/// called from inside a tokio runtime (it returns an error if it is).
pub fn import_bundle(repo: &Repo, file: &Path) -> Result<ImportedBundle, BundleError> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(BundleError::Runtime(
            "import_bundle was called inside a tokio runtime; call it from a blocking thread"
                .into(),
        ));
    }
    let source = open_bundle(file)?;
    let staging = Staging::create(repo)?;
    let scanned = {
        let out = OpenOptions::new()
            .write(true)
            .open(&staging.0)
            .map_err(io_error("write", &staging.0))?;
        let mut out = BufWriter::with_capacity(1 << 17, out);
        let scanned = unpack(source, Some(&mut out), file)?;
        out.into_inner()
            .map_err(|e| io_error("write", &staging.0)(e.into_error()))?;
        scanned
    };
    let commit = run_import(repo, &staging.0, file)?;
    drop(staging);
    if commit != scanned.commit {
        return Err(BundleError::Malformed {
            path: file.to_owned(),
            reason: format!("it names commit {} but holds {commit}", scanned.commit),
        });
    }
    check_complete(repo, &commit, file)?;
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
fn read_entry(repo: &Repo, commit: &str) -> Result<Entry, BundleError> {
    let json = repo
        .commit_string(commit, catalog::COMMIT_KEY)?
        .ok_or_else(|| BundleError::NoEntry {
            commit: commit.to_owned(),
        })?;
    Entry::parse(&json).map_err(|source| BundleError::BadEntry {
        commit: commit.to_owned(),
        source,
    })
}

/// `FILE.tmpPID`, next to `file`.
fn staging_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(format!(".tmp{}", std::process::id()));
    PathBuf::from(name)
}

/// A file of ours that is removed when dropped (also on errors and panics).
struct Staging(PathBuf);

impl Staging {
    /// A new empty file in the repository's `tmp/`, on the same filesystem
    /// as the objects it will become.
    fn create(repo: &Repo) -> Result<Self, BundleError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let tmp = repo.path().join("tmp");
        let dir = if tmp.is_dir() {
            tmp
        } else {
            repo.path().to_owned()
        };
        loop {
            let path = dir.join(format!(
                "appbox-bundle-{}-{}.tar",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(_) => return Ok(Staging(path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error("create", &path)(e)),
            }
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Exports `commit` as a gzip-compressed tar stream to the new file `path`.
fn export_to(repo: &Repo, commit: &str, path: &Path) -> Result<(), BundleError> {
    let open = || OpenOptions::new().write(true).create_new(true).open(path);
    let out = match open() {
        // A leftover of an earlier run of a process with our pid.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(path).map_err(io_error("replace", path))?;
            open()
        }
        other => other,
    }
    .map_err(io_error("create", path))?;
    let mut gz = GzEncoder::new(
        BufWriter::with_capacity(1 << 17, out),
        Compression::default(),
    );
    // By reference: export_commit drops what it is given, and a dropped
    // encoder swallows the error of writing its end.
    ostree_ext::tar::export_commit(repo.ostree(), commit, &mut gz, None).map_err(|e| {
        BundleError::Export {
            commit: commit.to_owned(),
            message: format!("{e:#}"),
        }
    })?;
    let out = gz.finish().map_err(io_error("write", path))?;
    let out = out
        .into_inner()
        .map_err(|e| io_error("write", path)(e.into_error()))?;
    out.sync_all().map_err(io_error("write", path))
}

/// Opens a bundle for reading, refusing what is not a regular file of a
/// sensible size. Never blocks on a FIFO.
fn open_bundle(path: &Path) -> Result<BufReader<File>, BundleError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(io_error("open", path))?;
    let meta = file.metadata().map_err(io_error("inspect", path))?;
    if !meta.is_file() {
        return Err(BundleError::NotAFile {
            path: path.to_owned(),
        });
    }
    if meta.len() > MAX_BUNDLE_BYTES {
        return Err(BundleError::TooLarge {
            path: path.to_owned(),
            what: "has",
            limit: MAX_BUNDLE_BYTES,
        });
    }
    Ok(BufReader::with_capacity(1 << 17, file))
}

/// What the scan of a bundle's tar stream found.
#[derive(Debug)]
struct Scanned {
    commit: String,
    /// The detached metadata's bytes, when the bundle carries it.
    commitmeta: Option<Vec<u8>>,
}

/// Why reading the decompressed stream stopped.
enum Failure {
    Gzip(String),
    TooLarge,
    Copy(io::Error),
}

/// The decompressed stream: counts what it yields, stops at the cap, copies
/// everything to `copy`, and remembers why it failed (the tar reader wraps
/// the errors it passes on).
struct Unpacked<'a> {
    gzip: GzDecoder<BufReader<File>>,
    copy: Option<&'a mut dyn Write>,
    total: u64,
    failure: Option<Failure>,
}

impl Read for Unpacked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.gzip.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                self.failure.get_or_insert(Failure::Gzip(e.to_string()));
                return Err(e);
            }
        };
        self.total += n as u64;
        if self.total > MAX_UNPACKED_BYTES {
            self.failure.get_or_insert(Failure::TooLarge);
            return Err(io::Error::other("the bundle unpacks to too many bytes"));
        }
        if let Some(copy) = self.copy.as_mut() {
            if let Err(e) = copy.write_all(&buf[..n]) {
                let error = io::Error::new(e.kind(), e.to_string());
                self.failure.get_or_insert(Failure::Copy(e));
                return Err(error);
            }
        }
        Ok(n)
    }
}

/// Decompresses a bundle (copying the tar stream to `copy`) and checks its
/// tar stream; see [`scan_tar`]. The whole gzip stream is read, so its
/// checksum and length are verified.
fn unpack(
    mut source: BufReader<File>,
    copy: Option<&mut dyn Write>,
    path: &Path,
) -> Result<Scanned, BundleError> {
    let head = source.fill_buf().map_err(io_error("read", path))?;
    if head.len() < 2 || head[..2] != [0x1f, 0x8b] {
        return Err(BundleError::NotGzip {
            path: path.to_owned(),
        });
    }
    let mut stream = Unpacked {
        gzip: GzDecoder::new(source),
        copy,
        total: 0,
        failure: None,
    };
    let result = scan_tar(&mut stream).and_then(|scanned| {
        // Past the tar's end marker: the rest of the gzip stream, for its checksum.
        io::copy(&mut stream, &mut io::sink()).map_err(Flaw::Read)?;
        Ok(scanned)
    });
    let malformed = |reason: String| BundleError::Malformed {
        path: path.to_owned(),
        reason,
    };
    match (stream.failure, result) {
        (Some(Failure::Gzip(reason)), _) => Err(BundleError::Damaged {
            path: path.to_owned(),
            reason,
        }),
        (Some(Failure::TooLarge), _) => Err(BundleError::TooLarge {
            path: path.to_owned(),
            what: "unpacks to",
            limit: MAX_UNPACKED_BYTES,
        }),
        (Some(Failure::Copy(source)), _) => Err(BundleError::Io {
            what: "unpack a bundle to disk for",
            path: path.to_owned(),
            source,
        }),
        (None, Ok(scanned)) => Ok(scanned),
        (None, Err(Flaw::Truncated(reason))) => Err(BundleError::Damaged {
            path: path.to_owned(),
            reason,
        }),
        (None, Err(Flaw::Malformed(reason))) => Err(malformed(reason)),
        (None, Err(Flaw::Read(e))) => Err(malformed(format!(
            "its tar stream is broken: {}",
            clean(&e.to_string())
        ))),
    }
}

/// What is wrong with a tar stream.
enum Flaw {
    Truncated(String),
    Malformed(String),
    Read(io::Error),
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
    let hex = checksum
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (parent.len() == 2 && checksum.len() == 64 && hex).then_some((checksum, kind))
}

/// Reads every entry of a bundle's tar stream to its end, checking:
/// - every entry is complete, its header size agrees with any pax size, and
///   it is no GNU sparse file (ostree-ext asserts on short entries);
/// - paths are UTF-8 and modes are permission bits only;
/// - the first object of the embedded repository is a commit, optionally
///   followed by its detached metadata, and no other commit follows;
/// - metadata objects and extended attributes stay within ostree-ext's limits.
fn scan_tar(stream: &mut dyn Read) -> Result<Scanned, Flaw> {
    let malformed = Flaw::Malformed;
    let mut archive = tar::Archive::new(stream);
    let entries = archive.entries().map_err(|e| {
        malformed(format!(
            "it is not a tar archive: {}",
            clean(&e.to_string())
        ))
    })?;
    let mut commit: Option<String> = None;
    let mut commitmeta = None;
    let mut objects = 0u64;
    let mut xattrs = 0u64;
    for (index, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| {
            malformed(format!(
                "it is not a tar archive: {}",
                clean(&e.to_string())
            ))
        })?;
        if index as u64 >= MAX_ENTRIES {
            return Err(malformed(format!("it has more than {MAX_ENTRIES} entries")));
        }
        let path = entry.path().map_err(|e| {
            malformed(format!(
                "entry {index} has a bad path: {}",
                clean(&e.to_string())
            ))
        })?;
        let raw_path = path
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
            match (objects, object_kind) {
                (1, Some("commit")) if kind == tar::EntryType::Regular => {
                    commit = object.map(|(checksum, _)| checksum);
                }
                (1, _) => {
                    return Err(malformed(format!(
                        "its first repository entry, {path}, is not a commit object"
                    )))
                }
                (2, Some("commitmeta")) => {
                    if object.map(|(checksum, _)| checksum) != commit
                        || kind != tar::EntryType::Regular
                    {
                        return Err(malformed(format!(
                            "{path} is not the detached metadata of its commit"
                        )));
                    }
                    keep = Some(Vec::new());
                }
                (_, Some("commit" | "commitmeta")) => {
                    return Err(malformed(format!("{path}: a bundle holds one commit")))
                }
                _ => {}
            }
            let metadata = matches!(
                object_kind,
                Some("commit" | "commitmeta" | "dirtree" | "dirmeta")
            );
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
                xattrs += size;
                if xattrs > MAX_XATTRS_BYTES {
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
            commitmeta = keep;
        }
    }
    match (commit, objects) {
        (None, _) => Err(malformed(
            "it holds no commit object (no sysroot/ostree/repo/objects/XX/REST.commit)".into(),
        )),
        (Some(_), 1) => Err(malformed("it holds nothing but a commit object".into())),
        (Some(commit), _) => Ok(Scanned { commit, commitmeta }),
    }
}

/// Runs ostree-ext's importer on the checked tar stream at `tar`, on a
/// current-thread runtime of our own. Returns the imported commit.
fn run_import(repo: &Repo, tar: &Path, file: &Path) -> Result<String, BundleError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BundleError::Runtime(e.to_string()))?;
    let ostree_repo: &ostree::Repo = repo.ostree();
    runtime.block_on(async {
        let source = tokio::fs::File::open(tar)
            .await
            .map_err(io_error("open", tar))?;
        let source = tokio::io::BufReader::with_capacity(1 << 17, source);
        ostree_ext::tar::import_tar(ostree_repo, source, None)
            .await
            .map_err(|e| BundleError::Import {
                path: file.to_owned(),
                repo: repo.path().to_owned(),
                message: clean(&format!("{e:#}")),
            })
    })
}

/// Checks that every object `commit` reaches is in the repository: ostree-ext
/// marks the commit complete without checking. An incomplete commit is marked
/// partial again, so nothing takes it for whole.
fn check_complete(repo: &Repo, commit: &str, file: &Path) -> Result<(), BundleError> {
    let ostree = repo.ostree();
    let reason = match ostree.traverse_commit(commit, 0, NO_CANCEL) {
        Err(e) => Some(e.to_string()),
        Ok(objects) => {
            let mut missing = 0usize;
            for object in &objects {
                let present = ostree
                    .has_object(object.object_type(), object.checksum(), NO_CANCEL)
                    .unwrap_or(false);
                if !present {
                    missing += 1;
                }
            }
            (missing > 0).then(|| format!("{missing} of its {} objects are missing", objects.len()))
        }
    };
    match reason {
        None => Ok(()),
        Some(reason) => {
            let _ = ostree.mark_commit_partial(commit, true);
            Err(BundleError::Incomplete {
                path: file.to_owned(),
                commit: commit.to_owned(),
                reason,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::catalog::Icon;
    use crate::store::gvariant::{decode_vardict, Value};
    use crate::store::repo::Mode;
    use crate::store::sign::{self, SecretKey, SignError, ED25519_KEY};
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    const ID: &str = "org.example.Bundled";

    /// A fresh directory under the system temp dir, removed on drop (also
    /// when a test fails).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let path = std::env::temp_dir().join(format!(
                "appbox-bundle-{tag}-{}-{nanos}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir(&path).unwrap();
            TempDir(path)
        }

        fn join(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn entry() -> Entry {
        Entry {
            id: ID.into(),
            kind: EntryKind::App,
            name: "Bundled".into(),
            summary: "Travels in one file".into(),
            description: "Line one.\nLine two.".into(),
            version: "1.0".into(),
            license: "MIT".into(),
            runtime: "host".into(),
            permissions: vec!["--share=network".into()],
            icon: Some(Icon {
                mime: "image/svg+xml".into(),
                data: "PHN2Zy8+".into(),
            }),
            installed_size: 10,
            published: None,
        }
    }

    /// Bytes of the large file: more than ostree-ext's 127 KiB "small" limit.
    fn big_file() -> Vec<u8> {
        (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// An archive repository with one commit of `ID` (with the catalog entry
    /// when `with_entry`), signed when `key` is given. Returns it and the commit.
    fn source_repo(dir: &TempDir, key: Option<&SecretKey>, with_entry: bool) -> (Repo, String) {
        let tree = dir.join("tree");
        fs::create_dir_all(tree.join("files/bin")).unwrap();
        fs::create_dir_all(tree.join("files/share")).unwrap();
        fs::write(tree.join("metadata.toml"), "id = \"org.example.Bundled\"\n").unwrap();
        let hello = tree.join("files/bin/hello");
        fs::write(&hello, "#!/bin/sh\necho hello\n").unwrap();
        fs::set_permissions(&hello, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(tree.join("files/share/big.bin"), big_file()).unwrap();
        fs::write(tree.join("files/share/empty"), "").unwrap();
        std::os::unix::fs::symlink("bin/hello", tree.join("files/link")).unwrap();

        let repo = Repo::open_or_create_archive(&dir.join("source")).unwrap();
        let mut metadata = BTreeMap::from([("version".to_owned(), "1.0".to_owned())]);
        if with_entry {
            metadata.insert(catalog::COMMIT_KEY.to_owned(), entry().to_json());
        }
        let commit = repo
            .commit_dir(&tree, &ref_name(Kind::App, ID), "Bundled 1.0", &metadata)
            .unwrap()
            .checksum;
        if let Some(key) = key {
            let signed = repo.commit_bytes(&commit).unwrap();
            let detached = sign::add_signature(None, key, &signed).unwrap();
            repo.set_detached_metadata(&commit, &detached).unwrap();
        }
        (repo, commit)
    }

    fn dest_repo(dir: &TempDir) -> Repo {
        Repo::open_or_create(&dir.join("dest"), Mode::BareUserOnly).unwrap()
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Nothing of a failed or finished import stays behind in the repository.
    fn assert_no_leftovers(repo: &Repo) {
        assert!(repo.refs("").unwrap().is_empty());
        let tmp = repo.path().join("tmp");
        assert!(
            !names_in(&tmp)
                .iter()
                .any(|n| n.starts_with("appbox-bundle-")),
            "{:?}",
            names_in(&tmp)
        );
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// Rewrites the bundle at `from` into `to`, entry by entry: `edit` gets
    /// each path and data and returns the data to keep, or None to drop it.
    fn rewrite(from: &Path, to: &Path, mut edit: impl FnMut(&str, Vec<u8>) -> Option<Vec<u8>>) {
        let tar = gunzip(&fs::read(from).unwrap());
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut builder = tar::Builder::new(Vec::new());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_str().unwrap().to_owned();
            let link = entry.link_name().unwrap().map(|l| l.into_owned());
            let mut header = entry.header().clone();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            let Some(data) = edit(&path, data) else {
                continue;
            };
            match link {
                Some(link) => builder.append_link(&mut header, &path, link).unwrap(),
                None => {
                    header.set_size(data.len() as u64);
                    builder
                        .append_data(&mut header, &path, data.as_slice())
                        .unwrap()
                }
            }
        }
        fs::write(to, gzip(&builder.into_inner().unwrap())).unwrap();
    }

    #[test]
    fn a_signed_app_round_trips() {
        let dir = TempDir::new("roundtrip");
        let key = SecretKey::generate();
        let (source, commit) = source_repo(&dir, Some(&key), true);
        let bundle = dir.join("app.bundle");

        let written = write_bundle(&source, ID, &bundle).unwrap();
        assert_eq!(written.commit, commit);
        assert_eq!(written.ref_name, ref_name(Kind::App, ID));
        assert_eq!(written.entry, entry());
        // Only the bundle next to it: no staging file left.
        assert_eq!(names_in(&dir.0), ["app.bundle", "source", "tree"]);

        let dest = dest_repo(&dir);
        let imported = import_bundle(&dest, &bundle).unwrap();
        assert_eq!(imported, written);
        assert_no_leftovers(&dest);

        let detached = dest.detached_metadata(&commit).unwrap().unwrap();
        assert_eq!(
            Some(&detached),
            source.detached_metadata(&commit).unwrap().as_ref()
        );
        let signed = dest.commit_bytes(&commit).unwrap();
        assert_eq!(signed, source.commit_bytes(&commit).unwrap());
        sign::verify(&detached, &signed, &[key.public()]).unwrap();

        let checkout = dir.join("checkout");
        dest.checkout(&commit, &checkout).unwrap();
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

        // Importing again is harmless.
        assert_eq!(import_bundle(&dest, &bundle).unwrap(), written);
    }

    #[test]
    fn the_export_carries_the_detached_metadata_right_after_the_commit() {
        let dir = TempDir::new("commitmeta");
        let key = SecretKey::generate();
        let (source, commit) = source_repo(&dir, Some(&key), true);
        let bundle = dir.join("app.bundle");
        write_bundle(&source, ID, &bundle).unwrap();
        let tar = gunzip(&fs::read(&bundle).unwrap());
        let mut archive = tar::Archive::new(tar.as_slice());
        let objects: Vec<(String, Vec<u8>)> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.header().entry_type() != tar::EntryType::Directory)
            .map(|mut e| {
                let path = e.path().unwrap().to_str().unwrap().to_owned();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (path, data)
            })
            .filter(|(p, _)| p.starts_with("sysroot/ostree/repo/objects/"))
            .collect();
        let (first, rest) = commit.split_at(2);
        assert_eq!(
            objects[0].0,
            format!("sysroot/ostree/repo/objects/{first}/{rest}.commit")
        );
        assert_eq!(
            objects[1].0,
            format!("sysroot/ostree/repo/objects/{first}/{rest}.commitmeta")
        );
        assert_eq!(
            Some(&objects[1].1),
            source.detached_metadata(&commit).unwrap().as_ref()
        );
    }

    #[test]
    fn a_flipped_signature_byte_imports_but_does_not_verify() {
        let dir = TempDir::new("flipped");
        let key = SecretKey::generate();
        let (source, commit) = source_repo(&dir, Some(&key), true);
        let bundle = dir.join("app.bundle");
        write_bundle(&source, ID, &bundle).unwrap();
        let original = source.detached_metadata(&commit).unwrap().unwrap();
        let signature = match decode_vardict(&original).unwrap().as_slice() {
            [(name, Value::ByteArrays(signatures))] if name == ED25519_KEY => signatures[0].clone(),
            other => panic!("unexpected detached metadata {other:?}"),
        };

        let tampered = dir.join("tampered.bundle");
        let mut flipped = 0;
        rewrite(&bundle, &tampered, |path, mut data| {
            if path.ends_with(".commitmeta") {
                let at = data
                    .windows(signature.len())
                    .position(|w| w == signature.as_slice())
                    .unwrap();
                data[at + 10] ^= 0x01;
                flipped += 1;
            }
            Some(data)
        });
        assert_eq!(flipped, 1);

        let dest = dest_repo(&dir);
        let imported = import_bundle(&dest, &tampered).unwrap();
        assert_eq!(imported.commit, commit);
        let detached = dest.detached_metadata(&commit).unwrap().unwrap();
        assert_ne!(detached, original);
        assert_eq!(detached.len(), original.len());
        let signed = dest.commit_bytes(&commit).unwrap();
        assert!(matches!(
            sign::verify(&detached, &signed, &[key.public()]),
            Err(SignError::Untrusted { .. })
        ));
        assert_no_leftovers(&dest);
    }

    #[test]
    fn truncated_bundles_are_refused() {
        let dir = TempDir::new("truncated");
        let (source, _) = source_repo(&dir, Some(&SecretKey::generate()), true);
        let bundle = dir.join("app.bundle");
        write_bundle(&source, ID, &bundle).unwrap();
        let dest = dest_repo(&dir);

        // Cut inside the gzip stream.
        let bytes = fs::read(&bundle).unwrap();
        let cut = dir.join("cut.bundle");
        fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = import_bundle(&dest, &cut).unwrap_err();
        assert!(matches!(err, BundleError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("cut.bundle"), "{err}");

        // A complete gzip stream of a tar cut inside the large file's data.
        let tar = gunzip(&bytes);
        let big = big_file();
        let at = tar.windows(64).position(|w| w == &big[..64]).unwrap();
        let short = dir.join("short.bundle");
        fs::write(&short, gzip(&tar[..at + 1000])).unwrap();
        let err = import_bundle(&dest, &short).unwrap_err();
        assert!(matches!(err, BundleError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("bytes"), "{err}");

        // Whole entries, but without the root directory's dirtree.
        let missing = dir.join("missing.bundle");
        let mut dropped = 0;
        rewrite(&bundle, &missing, |path, data| {
            if path.ends_with(".dirtree") && dropped == 0 {
                dropped += 1;
                return None;
            }
            Some(data)
        });
        let err = import_bundle(&dest, &missing).unwrap_err();
        assert!(matches!(err, BundleError::Incomplete { .. }), "{err}");
        assert_no_leftovers(&dest);
    }

    #[test]
    fn a_missing_file_object_is_caught_after_import() {
        let dir = TempDir::new("incomplete");
        let (source, _) = source_repo(&dir, Some(&SecretKey::generate()), true);
        let bundle = dir.join("app.bundle");
        write_bundle(&source, ID, &bundle).unwrap();
        // Drop one content object with its xattrs link: the stream stays
        // consistent, the commit does not.
        let mut victim = None;
        let incomplete = dir.join("incomplete.bundle");
        rewrite(&bundle, &incomplete, |path, data| {
            let name = path.rsplit('/').next().unwrap_or("");
            if let Some(stem) = name.strip_suffix(".file-xattrs-link") {
                if victim.is_none() {
                    victim = Some(stem.to_owned());
                }
            }
            match &victim {
                Some(stem)
                    if name == format!("{stem}.file-xattrs-link")
                        || name == format!("{stem}.file") =>
                {
                    None
                }
                _ => Some(data),
            }
        });
        let dest = dest_repo(&dir);
        let err = import_bundle(&dest, &incomplete).unwrap_err();
        assert!(matches!(err, BundleError::Incomplete { .. }), "{err}");
        assert!(err.to_string().contains("1 of its"), "{err}");
        assert_no_leftovers(&dest);
    }

    #[test]
    fn altered_content_is_refused_by_ostree() {
        let dir = TempDir::new("altered");
        let (source, _) = source_repo(&dir, Some(&SecretKey::generate()), true);
        let bundle = dir.join("app.bundle");
        write_bundle(&source, ID, &bundle).unwrap();
        let altered = dir.join("altered.bundle");
        rewrite(&bundle, &altered, |path, mut data| {
            if path.ends_with(".file") && data.len() == big_file().len() {
                data[100] ^= 0xff;
            }
            Some(data)
        });
        let dest = dest_repo(&dir);
        let err = import_bundle(&dest, &altered).unwrap_err();
        assert!(matches!(err, BundleError::Import { .. }), "{err}");
        assert_no_leftovers(&dest);
    }

    #[test]
    fn files_that_are_not_bundles_are_refused() {
        let dir = TempDir::new("garbage");
        let dest = dest_repo(&dir);

        let text = dir.join("notes.bundle");
        fs::write(&text, "this is not a bundle\n").unwrap();
        let err = import_bundle(&dest, &text).unwrap_err();
        assert!(matches!(err, BundleError::NotGzip { .. }), "{err}");

        let empty = dir.join("empty.bundle");
        fs::write(&empty, "").unwrap();
        assert!(matches!(
            import_bundle(&dest, &empty),
            Err(BundleError::NotGzip { .. })
        ));

        let not_tar = dir.join("not-tar.bundle");
        fs::write(&not_tar, gzip(&[b'x'; 4096])).unwrap();
        let err = import_bundle(&dest, &not_tar).unwrap_err();
        assert!(matches!(err, BundleError::Malformed { .. }), "{err}");

        // A tar, but of files rather than a commit.
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "etc/passwd", &b"root\n"[..])
            .unwrap();
        let plain = dir.join("plain.bundle");
        fs::write(&plain, gzip(&builder.into_inner().unwrap())).unwrap();
        let err = import_bundle(&dest, &plain).unwrap_err();
        assert!(matches!(err, BundleError::Malformed { .. }), "{err}");
        assert!(err.to_string().contains("no commit"), "{err}");

        // Whatever a hostile entry's name holds, messages show it escaped.
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        builder
            .append_data(
                &mut header,
                "sysroot/ostree/repo/objects/\u{1b}[2J\u{202e}",
                &b"x"[..],
            )
            .unwrap();
        let hostile = dir.join("hostile.bundle");
        fs::write(&hostile, gzip(&builder.into_inner().unwrap())).unwrap();
        let err = import_bundle(&dest, &hostile).unwrap_err();
        assert!(matches!(err, BundleError::Malformed { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("\\u{1b}[2J\\u{202e}"), "{message}");
        assert!(!message.contains('\u{1b}') && !message.contains('\u{202e}'));

        // A pax size that disagrees with the header would make ostree-ext
        // read a short object (and assert); it never gets that far.
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append_pax_extensions([("size", &b"4096"[..])])
            .unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        let c = "a86d80a3e9ff77c2e3144c787b7769b300f91ffd770221aac27bab854960b964";
        let path = format!("sysroot/ostree/repo/objects/{}/{}.commit", &c[..2], &c[2..]);
        builder
            .append_data(&mut header, path, &b"12345"[..])
            .unwrap();
        let resized = dir.join("resized.bundle");
        fs::write(&resized, gzip(&builder.into_inner().unwrap())).unwrap();
        let err = import_bundle(&dest, &resized).unwrap_err();
        assert!(matches!(err, BundleError::Malformed { .. }), "{err}");
        assert!(err.to_string().contains("resized"), "{err}");

        let err = import_bundle(&dest, &dir.0).unwrap_err();
        assert!(matches!(err, BundleError::NotAFile { .. }), "{err}");
        let err = import_bundle(&dest, &dir.join("absent.bundle")).unwrap_err();
        assert!(matches!(err, BundleError::Io { what: "open", .. }), "{err}");
        assert_no_leftovers(&dest);
    }

    #[test]
    fn a_commit_without_a_catalog_entry_is_refused_both_ways() {
        let dir = TempDir::new("noentry");
        let (source, commit) = source_repo(&dir, Some(&SecretKey::generate()), false);
        let bundle = dir.join("app.bundle");
        let err = write_bundle(&source, ID, &bundle).unwrap_err();
        assert!(matches!(err, BundleError::NoEntry { .. }), "{err}");
        assert!(!bundle.exists());

        // Made some other way, it still does not import.
        export_to(&source, &commit, &bundle).unwrap();
        let dest = dest_repo(&dir);
        let err = import_bundle(&dest, &bundle).unwrap_err();
        assert!(matches!(err, BundleError::NoEntry { .. }), "{err}");
        assert!(err.to_string().contains(catalog::COMMIT_KEY), "{err}");
        assert_no_leftovers(&dest);
    }

    #[test]
    fn write_failures_leave_no_file() {
        let dir = TempDir::new("writefail");
        let (source, _) = source_repo(&dir, None, true);
        let bundle = dir.join("out.bundle");

        let err = write_bundle(&source, "org.example.Absent", &bundle).unwrap_err();
        assert!(matches!(err, BundleError::NotInRepo { .. }), "{err}");
        assert!(
            err.to_string().contains("runtime/org.example.Absent/"),
            "{err}"
        );
        let err = write_bundle(&source, "../etc", &bundle).unwrap_err();
        assert!(matches!(err, BundleError::InvalidId { .. }), "{err}");
        let err = write_bundle(&source, ID, &dir.join("no/such/dir/out.bundle")).unwrap_err();
        assert!(
            matches!(err, BundleError::Io { what: "create", .. }),
            "{err}"
        );
        assert_eq!(names_in(&dir.0), ["source", "tree"]);

        // An unsigned commit makes an unsigned bundle; the caller's
        // verification is what refuses it.
        write_bundle(&source, ID, &bundle).unwrap();
        let dest = dest_repo(&dir);
        let imported = import_bundle(&dest, &bundle).unwrap();
        assert_eq!(dest.detached_metadata(&imported.commit).unwrap(), None);
    }

    #[test]
    fn object_paths_are_read_like_ostree_ext_does() {
        let c = "a86d80a3e9ff77c2e3144c787b7769b300f91ffd770221aac27bab854960b964";
        let (first, rest) = c.split_at(2);
        let path = format!("objects/{first}/{rest}.commit");
        assert_eq!(object_of(Path::new(&path)), Some((c.to_owned(), "commit")));
        let path = format!("objects/{first}/{rest}.file-xattrs-link");
        assert_eq!(
            object_of(Path::new(&path)),
            Some((c.to_owned(), "file-xattrs-link"))
        );
        for bad in [
            format!("objects/{first}/{}.commit", &rest[1..]),
            format!("objects/{}/{rest}.commit", c.to_uppercase().split_at(2).0),
            format!("state/{first}/{rest}.commit"),
            "objects/zz".to_owned(),
        ] {
            assert_eq!(object_of(Path::new(&bad)), None, "{bad}");
        }
    }
}

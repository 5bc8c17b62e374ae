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
//! deploys. The checks of the tar stream are in `ostree_tar.rs`, shared
//! with OCI images.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use ostree_ext::ostree;

use crate::store::catalog::{self, CatalogError, Entry};
use crate::store::ostree_tar::{
    self, check_complete, commit_to_export, imported, io_error, not_in_runtime, scan_stream,
    Budget, Flaw, Role, Scanned, Staging, Whole,
};
use crate::store::repo::{Repo, RepoError};

/// Bundle files larger than this are refused before reading.
pub const MAX_BUNDLE_BYTES: u64 = 8 << 30;
/// A bundle whose tar stream is larger than this is refused (a gzip bomb
/// stops here).
pub const MAX_UNPACKED_BYTES: u64 = 16 << 30;
/// Tar entries in one bundle: a runtime of 100,000 files has about 400,000.
pub const MAX_ENTRIES: u64 = 2_000_000;
/// Staging files in a repository's `tmp/` are `appbox-bundle-PID-N.tar`.
const STAGING: &str = "appbox-bundle";

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

ostree_tar::impl_from_common_error!(BundleError);

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
    let (written, detached) = commit_to_export(repo, id)?;
    let staging = Staging::adopt(staging_path(file));
    export_to(repo, &written.commit, staging.path())?;
    // Read it back the way an import will: this proves the file is complete
    // and that the signatures travel in it.
    let scanned = unpack(open_bundle(staging.path())?, None, file)?;
    if scanned.commit.as_deref() != Some(written.commit.as_str()) {
        return Err(BundleError::Export {
            message: format!(
                "the written bundle holds commit {} instead",
                scanned.commit.as_deref().unwrap_or("(none)")
            ),
            commit: written.commit,
        });
    }
    if scanned.commitmeta != detached {
        return Err(BundleError::SignaturesLost {
            commit: written.commit,
        });
    }
    fs::rename(staging.path(), file).map_err(io_error("write", file))?;
    Ok(written)
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
    not_in_runtime("import_bundle")?;
    let source = open_bundle(file)?;
    let staging = staging_file(repo)?;
    let scanned = {
        let out = OpenOptions::new()
            .write(true)
            .open(staging.path())
            .map_err(io_error("write", staging.path()))?;
        let mut out = BufWriter::with_capacity(1 << 17, out);
        let scanned = unpack(source, Some(&mut out), file)?;
        out.into_inner()
            .map_err(|e| io_error("write", staging.path())(e.into_error()))?;
        scanned
    };
    let commit = run_import(repo, staging.path(), file)?;
    drop(staging);
    if scanned.commit.as_deref() != Some(commit.as_str()) {
        return Err(BundleError::Malformed {
            path: file.to_owned(),
            reason: format!(
                "it names commit {} but holds {commit}",
                scanned.commit.as_deref().unwrap_or("(none)")
            ),
        });
    }
    check_complete(repo, &commit).map_err(|reason| BundleError::Incomplete {
        path: file.to_owned(),
        commit: commit.clone(),
        reason,
    })?;
    Ok(imported(repo, commit)?)
}

/// `FILE.tmpPID`, next to `file`.
fn staging_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(format!(".tmp{}", std::process::id()));
    PathBuf::from(name)
}

/// A new empty file in the repository's `tmp/`, on the same filesystem as
/// the objects it will become.
fn staging_file(repo: &Repo) -> Result<Staging, BundleError> {
    let tmp = repo.path().join("tmp");
    let dir = if tmp.is_dir() {
        tmp
    } else {
        repo.path().to_owned()
    };
    Ok(Staging::new_file(&dir, STAGING, ".tar")?)
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
    out.sync_all().map_err(io_error("write", path))?;
    Ok(())
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

/// Decompresses a bundle (copying the tar stream to `copy`) and checks its
/// tar stream; see [`scan_stream`]. The whole gzip stream is read, so its
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
    let mut gzip = GzDecoder::new(source);
    // A bundle is one stream, the commit's, with a budget of its own.
    let scanned = scan_stream(
        &mut gzip,
        copy,
        Role::Commit,
        &mut Budget::default(),
        Whole::Bundle,
    );
    let malformed = |reason: String| BundleError::Malformed {
        path: path.to_owned(),
        reason,
    };
    scanned.map_err(|flaw| match flaw {
        Flaw::Damaged(reason) | Flaw::Truncated(reason) => BundleError::Damaged {
            path: path.to_owned(),
            reason,
        },
        Flaw::TooLarge => BundleError::TooLarge {
            path: path.to_owned(),
            what: "unpacks to",
            limit: MAX_UNPACKED_BYTES,
        },
        Flaw::Copy(source) => BundleError::Io {
            what: "unpack a bundle to disk for",
            path: path.to_owned(),
            source,
        },
        Flaw::Malformed(reason) => malformed(reason),
        Flaw::Read(e) => malformed(format!(
            "its tar stream is broken: {}",
            Whole::Bundle.clean(&e.to_string())
        )),
    })
}

/// Runs ostree-ext's importer on the checked tar stream at `tar`, on a
/// current-thread runtime of our own. Returns the imported commit.
fn run_import(repo: &Repo, tar: &Path, file: &Path) -> Result<String, BundleError> {
    let runtime = ostree_tar::runtime()?;
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
                message: Whole::Bundle.clean(&format!("{e:#}")),
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::build::ref_name;
    use crate::store::gvariant::{decode_vardict, Value};
    use crate::store::manifest::Kind;
    use crate::store::ostree_tar::test_support::{
        self, assert_arrived, big_file, gzip, names_in, resized_tar, tar_of, TempDir,
    };
    use crate::store::sign::{self, SecretKey, SignError, ED25519_KEY};
    use std::io::Read;

    const ID: &str = "org.example.Bundled";

    fn entry() -> Entry {
        test_support::entry(ID, "Bundled", "Travels in one file")
    }

    /// The source repository with one commit of `ID` (with the catalog entry
    /// when `with_entry`), signed when `key` is given.
    fn source_repo(dir: &TempDir, key: Option<&SecretKey>, with_entry: bool) -> (Repo, String) {
        test_support::source_repo(dir, &entry(), key, with_entry)
    }

    fn dest_repo(dir: &TempDir) -> Repo {
        test_support::dest_repo(dir, "dest")
    }

    fn assert_no_leftovers(repo: &Repo) {
        test_support::assert_no_leftovers(repo, STAGING);
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
        out
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

        assert_arrived(&dir, &source, &dest, &commit, &key);

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
        let plain = dir.join("plain.bundle");
        fs::write(&plain, gzip(&tar_of(&[("etc/passwd", 0o644, b"root\n")]))).unwrap();
        let err = import_bundle(&dest, &plain).unwrap_err();
        assert!(matches!(err, BundleError::Malformed { .. }), "{err}");
        assert!(err.to_string().contains("no commit"), "{err}");

        // Whatever a hostile entry's name holds, messages show it escaped.
        let name = "sysroot/ostree/repo/objects/\u{1b}[2J\u{202e}";
        let hostile = dir.join("hostile.bundle");
        fs::write(&hostile, gzip(&tar_of(&[(name, 0o644, b"x")]))).unwrap();
        let err = import_bundle(&dest, &hostile).unwrap_err();
        assert!(matches!(err, BundleError::Malformed { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("\\u{1b}[2J\\u{202e}"), "{message}");
        assert!(!message.contains('\u{1b}') && !message.contains('\u{202e}'));

        // A pax size that disagrees with the header would make ostree-ext
        // read a short object (and assert); it never gets that far.
        let c = "a86d80a3e9ff77c2e3144c787b7769b300f91ffd770221aac27bab854960b964";
        let resized = dir.join("resized.bundle");
        fs::write(&resized, gzip(&resized_tar(c))).unwrap();
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
}

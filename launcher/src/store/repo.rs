//! An OSTree repository, through libostree. GLib types stay inside this
//! module: callers see paths, strings and bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ostree_ext::gio;
use ostree_ext::gio::prelude::CancellableExt;
use ostree_ext::glib::{self, prelude::*};
use ostree_ext::ostree;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("cannot {what} in the repository {repo}: {message}")]
    Ostree {
        what: String,
        repo: PathBuf,
        message: String,
    },
    #[error("{path} exists but is not an OSTree repository: {message}")]
    NotARepo { path: PathBuf, message: String },
    #[error("the summary is malformed: {0}")]
    BadSummary(String),
    #[error("the remote {remote} has no summary: is its URL an appbox repository? (`appbox remote-ls` shows it; `appbox remote-modify` changes it)")]
    NoSummary { remote: String },
    #[error("cancelled")]
    Cancelled,
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs libostree's network work on a main context of its own, pushed as
/// this thread's default. libostree iterates the thread-default context
/// while it fetches, and on a thread other than the main one that would be
/// the process's default context, which a GUI's main loop owns: the fetch
/// would wait on it for good.
fn on_own_context<R>(work: impl FnOnce() -> R) -> R {
    let context = glib::MainContext::new();
    let mut work = Some(work);
    let mut result = None;
    // A fresh context is always free to acquire.
    let _ = context.with_thread_default(|| {
        if let Some(work) = work.take() {
            result = Some(work());
        }
    });
    match (result, work) {
        (Some(result), _) => result,
        (None, Some(work)) => work(),
        (None, None) => unreachable!("the work ran or was kept"),
    }
}

/// A summary and its detached signatures, as fetched.
type SignedSummary = (Vec<u8>, Vec<u8>);

/// A repository that this process writes to or reads from.
pub struct Repo {
    repo: ostree::Repo,
    path: PathBuf,
}

/// A commit that was just written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCommit {
    pub checksum: String,
    /// The commit the ref pointed to before, if any.
    pub parent: Option<String>,
}

const NO_CANCEL: Option<&ostree_ext::gio::Cancellable> = None;

/// Stops a pull from another thread (a front end's Cancel button); the pull
/// then fails with [`RepoError::Cancelled`]. Clones share one switch.
#[derive(Debug, Clone, Default)]
pub struct Cancel(std::sync::Arc<std::sync::Mutex<gio::Cancellable>>);

impl Cancel {
    /// The cancellable of the work under way. A poisoned lock still holds a
    /// usable cancellable: nothing can leave it half-changed.
    fn current(&self) -> gio::Cancellable {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn cancel(&self) {
        self.current().cancel();
    }

    /// Arms the switch again for the next piece of work.
    pub fn reset(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = gio::Cancellable::new();
    }
}

/// libostree's commit metadata key for the refs a commit may be served as.
const REF_BINDING: &str = "ostree.ref-binding";

/// How a repository stores its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Compressed objects, for serving over HTTP.
    Archive,
    /// Plain files owned by the user, which checkouts hardlink to.
    BareUserOnly,
}

/// Pull progress, as libostree reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullProgress {
    pub bytes: u64,
    pub fetched: u32,
    pub requested: u32,
    /// The size of the static delta being fetched; 0 when objects are
    /// fetched one by one.
    pub delta_bytes: u64,
}

impl PullProgress {
    /// How far the pull is, from 0 to 1, when that is known: by bytes for a
    /// static delta (which is one object as far as the object counts go) or
    /// when the caller expects `expected_bytes` (a catalog's download size),
    /// else by objects, which can sit still while one big object comes.
    pub fn fraction(&self, expected_bytes: Option<u64>) -> Option<f64> {
        let by_bytes = |total: u64| (self.bytes as f64 / total as f64).min(1.0);
        if self.delta_bytes > 0 {
            Some(by_bytes(self.delta_bytes))
        } else if let Some(total) = expected_bytes.filter(|total| *total > 0) {
            Some(by_bytes(total))
        } else if self.requested > 0 {
            Some((f64::from(self.fetched) / f64::from(self.requested)).min(1.0))
        } else {
            None
        }
    }
}

/// The parts of a summary the store reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Ref name → commit checksum.
    pub refs: BTreeMap<String, String>,
    /// The string entries of the summary's additional metadata.
    pub metadata: BTreeMap<String, String>,
}

/// Reads a summary file that came from a remote. GVariant's reader copes with
/// any bytes (it never reads outside them), and every value is type-checked.
pub fn parse_summary(bytes: &[u8]) -> Result<Summary, RepoError> {
    let bad = |message: &str| RepoError::BadSummary(message.to_owned());
    let ty = glib::VariantTy::new("(a(s(taya{sv}))a{sv})").map_err(|_| bad("type"))?;
    let summary = glib::Variant::from_data_with_type(bytes, ty);
    let mut refs = BTreeMap::new();
    for entry in summary.child_value(0).iter() {
        let name = entry.child_value(0);
        let name = name
            .str()
            .ok_or_else(|| bad("a ref name is not a string"))?;
        let checksum = entry.child_value(1).child_value(1);
        let checksum = checksum
            .fixed_array::<u8>()
            .map_err(|_| bad("a checksum is not bytes"))?;
        if checksum.len() != 32 {
            return Err(bad(&format!(
                "ref {name} has a checksum of {} bytes",
                checksum.len()
            )));
        }
        refs.insert(name.to_owned(), hex(checksum));
    }
    let mut metadata = BTreeMap::new();
    for entry in summary.child_value(1).iter() {
        let key = entry.child_value(0);
        let value = entry.child_value(1).as_variant();
        if let (Some(key), Some(value)) = (key.str(), value.as_ref().and_then(|v| v.str())) {
            metadata.insert(key.to_owned(), value.to_owned());
        }
    }
    Ok(Summary { refs, metadata })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Repo {
    /// Opens the archive repository at `path`, creating it when it does not exist.
    pub fn open_or_create_archive(path: &Path) -> Result<Self, RepoError> {
        Self::open_or_create(path, Mode::Archive)
    }

    /// Opens the repository at `path`, creating it in `mode` when it does not exist.
    pub fn open_or_create(path: &Path, mode: Mode) -> Result<Self, RepoError> {
        if path.join("config").exists() {
            return Self::open(path);
        }
        std::fs::create_dir_all(path).map_err(|source| RepoError::Write {
            path: path.to_owned(),
            source,
        })?;
        let repo = ostree::Repo::create_at(
            libc::AT_FDCWD,
            &path.to_string_lossy(),
            match mode {
                Mode::Archive => ostree::RepoMode::Archive,
                Mode::BareUserOnly => ostree::RepoMode::BareUserOnly,
            },
            None,
            NO_CANCEL,
        )
        .map_err(|e| ostree_error("create the repository", path, e))?;
        Ok(Repo {
            repo,
            path: path.to_owned(),
        })
    }

    pub fn open(path: &Path) -> Result<Self, RepoError> {
        let repo = ostree::Repo::open_at(libc::AT_FDCWD, &path.to_string_lossy(), NO_CANCEL)
            .map_err(|e| RepoError::NotARepo {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Repo {
            repo,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// libostree's handle, for the store modules that call ostree-ext.
    pub(crate) fn ostree(&self) -> &ostree::Repo {
        &self.repo
    }

    fn fail(&self, what: &str) -> impl FnOnce(glib::Error) -> RepoError + '_ {
        let what = what.to_owned();
        move |e| ostree_error(&what, &self.path, e)
    }

    /// Commits the directory `tree` as the new head of `ref_name`, with
    /// canonical permissions (owned by root, no setuid bits kept beyond what
    /// ostree allows) and string metadata.
    pub fn commit_dir(
        &self,
        tree: &Path,
        ref_name: &str,
        subject: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<NewCommit, RepoError> {
        let parent = self.resolve(ref_name)?;
        self.repo
            .prepare_transaction(NO_CANCEL)
            .map_err(self.fail("start a transaction"))?;
        let result = self.write_commit(tree, ref_name, subject, metadata, parent.as_deref());
        match result {
            Ok(checksum) => {
                self.repo
                    .commit_transaction(NO_CANCEL)
                    .map_err(self.fail("finish the transaction"))?;
                Ok(NewCommit { checksum, parent })
            }
            Err(e) => {
                let _ = self.repo.abort_transaction(NO_CANCEL);
                Err(e)
            }
        }
    }

    fn write_commit(
        &self,
        tree: &Path,
        ref_name: &str,
        subject: &str,
        metadata: &BTreeMap<String, String>,
        parent: Option<&str>,
    ) -> Result<String, RepoError> {
        let modifier = ostree::RepoCommitModifier::new(
            ostree::RepoCommitModifierFlags::CANONICAL_PERMISSIONS
                | ostree::RepoCommitModifierFlags::SKIP_XATTRS
                | ostree::RepoCommitModifierFlags::GENERATE_SIZES,
            None,
        );
        let mtree = ostree::MutableTree::new();
        self.repo
            .write_dfd_to_mtree(
                libc::AT_FDCWD,
                &tree.to_string_lossy(),
                &mtree,
                Some(&modifier),
                NO_CANCEL,
            )
            .map_err(self.fail("read the tree to commit"))?;
        let root = self
            .repo
            .write_mtree(&mtree, NO_CANCEL)
            .map_err(self.fail("write the tree"))?;
        let root = root
            .downcast::<ostree::RepoFile>()
            .map_err(|_| ostree_message("write the tree", &self.path, "not a repository file"))?;
        let dict = glib::VariantDict::new(None);
        for (key, value) in metadata {
            dict.insert_value(key, &value.to_variant());
        }
        // The signed commit names the ref it was made for, so a client can
        // refuse it when it is served under another one (libostree checks it
        // on pull too).
        dict.insert_value(REF_BINDING, &vec![ref_name.to_owned()].to_variant());
        let checksum = self
            .repo
            .write_commit(
                parent,
                Some(subject),
                None,
                Some(&dict.end()),
                &root,
                NO_CANCEL,
            )
            .map_err(self.fail("write the commit"))?;
        self.repo
            .transaction_set_ref(None, ref_name, Some(checksum.as_str()));
        Ok(checksum.to_string())
    }

    /// The commit `ref_name` points to, if the ref exists.
    pub fn resolve(&self, ref_name: &str) -> Result<Option<String>, RepoError> {
        Ok(self
            .repo
            .resolve_rev(ref_name, true)
            .map_err(self.fail(&format!("resolve {ref_name}")))?
            .map(|s| s.to_string()))
    }

    /// Every local ref starting with `prefix` (such as "app/"), with the
    /// commit it points to.
    pub fn refs(&self, prefix: &str) -> Result<BTreeMap<String, String>, RepoError> {
        let refs = self
            .repo
            .list_refs(None, NO_CANCEL)
            .map_err(self.fail("list refs"))?;
        Ok(refs
            .into_iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .collect())
    }

    fn load_commit(&self, checksum: &str) -> Result<glib::Variant, RepoError> {
        self.repo
            .load_variant(ostree::ObjectType::Commit, checksum)
            .map_err(self.fail(&format!("load commit {checksum}")))
    }

    fn commit_metadata(&self, checksum: &str) -> Result<glib::VariantDict, RepoError> {
        Ok(glib::VariantDict::new(Some(
            &self.load_commit(checksum)?.child_value(0),
        )))
    }

    /// The serialized commit object: the bytes a signature covers.
    pub fn commit_bytes(&self, checksum: &str) -> Result<Vec<u8>, RepoError> {
        Ok(self.load_commit(checksum)?.data_as_bytes().to_vec())
    }

    /// A string from a commit's metadata.
    pub fn commit_string(&self, checksum: &str, key: &str) -> Result<Option<String>, RepoError> {
        Ok(self
            .commit_metadata(checksum)?
            .lookup_value(key, Some(glib::VariantTy::STRING))
            .and_then(|v| v.str().map(str::to_owned)))
    }

    /// The refs a commit says it was made for (`ostree.ref-binding`).
    pub fn ref_bindings(&self, checksum: &str) -> Result<Vec<String>, RepoError> {
        Ok(self
            .commit_metadata(checksum)?
            .lookup::<Vec<String>>(REF_BINDING)
            .ok()
            .flatten()
            .unwrap_or_default())
    }

    /// When the commit was made, in seconds since the epoch.
    pub fn commit_timestamp(&self, checksum: &str) -> Result<u64, RepoError> {
        Ok(ostree::commit_get_timestamp(&self.load_commit(checksum)?))
    }

    /// The commit's detached metadata (an a{sv}), as bytes.
    pub fn detached_metadata(&self, checksum: &str) -> Result<Option<Vec<u8>>, RepoError> {
        Ok(self
            .repo
            .read_commit_detached_metadata(checksum, NO_CANCEL)
            .map_err(self.fail("read detached metadata"))?
            .map(|v| v.data_as_bytes().to_vec()))
    }

    pub fn set_detached_metadata(&self, checksum: &str, vardict: &[u8]) -> Result<(), RepoError> {
        let value = glib::Variant::from_data_with_type(vardict, glib::VariantTy::VARDICT);
        self.repo
            .write_commit_detached_metadata(checksum, Some(&value), NO_CANCEL)
            .map_err(self.fail("write detached metadata"))
    }

    /// The bytes the objects of a commit take in this repository: for an
    /// archive repository, what a client downloads without deltas.
    pub fn stored_size(&self, checksum: &str) -> Result<u64, RepoError> {
        let objects = self
            .repo
            .traverse_commit(checksum, 0, NO_CANCEL)
            .map_err(self.fail("walk the commit"))?;
        let mut total = 0;
        for object in objects {
            total += self
                .repo
                .query_object_storage_size(object.object_type(), object.checksum(), NO_CANCEL)
                .map_err(self.fail("measure an object"))?;
        }
        Ok(total)
    }

    /// Writes the summary, with `metadata` as additional string entries, and
    /// returns its bytes. libostree removes a stale `summary.sig` itself.
    pub fn regenerate_summary(
        &self,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, RepoError> {
        let dict = glib::VariantDict::new(None);
        for (key, value) in metadata {
            dict.insert_value(key, &value.to_variant());
        }
        self.repo
            .regenerate_summary(Some(&dict.end()), NO_CANCEL)
            .map_err(self.fail("write the summary"))?;
        let path = self.path.join("summary");
        std::fs::read(&path).map_err(|source| RepoError::Write { path, source })
    }

    /// Replaces `summary.sig` atomically.
    pub fn write_summary_signatures(&self, vardict: &[u8]) -> Result<(), RepoError> {
        let path = self.path.join("summary.sig");
        super::write_atomically(&path, vardict).map_err(|source| RepoError::Write { path, source })
    }

    /// A static delta from `from` to `to`, so an update downloads one file.
    pub fn generate_delta(&self, from: &str, to: &str) -> Result<(), RepoError> {
        // libostree reads `params` unconditionally: it must be a dict, even empty.
        let params = glib::VariantDict::new(None).end();
        self.repo
            .static_delta_generate(
                ostree::StaticDeltaGenerateOpt::Major,
                Some(from),
                to,
                None,
                Some(&params),
                NO_CANCEL,
            )
            .map_err(self.fail("generate a static delta"))
    }
}

impl Repo {
    /// Points libostree's remote `name` at `url`. appbox keeps its own remote
    /// list and checks signatures itself, so libostree's checks are off.
    pub fn sync_remote(&self, name: &str, url: &str) -> Result<(), RepoError> {
        // Rewritten only when it differs: libostree rewrites its config on
        // every change, which other readers of the repository then reload.
        let in_sync = self.repo.remote_get_url(name).is_ok_and(|now| now == url)
            && self.repo.remote_get_gpg_verify(name).is_ok_and(|on| !on)
            && self
                .repo
                .remote_get_gpg_verify_summary(name)
                .is_ok_and(|on| !on);
        if in_sync {
            return Ok(());
        }
        let options = glib::VariantDict::new(None);
        options.insert_value("gpg-verify", &false.to_variant());
        options.insert_value("gpg-verify-summary", &false.to_variant());
        options.insert_value("sign-verify", &false.to_variant());
        self.delete_remote(name)?;
        self.repo
            .remote_add(name, Some(url), Some(&options.end()), NO_CANCEL)
            .map_err(self.fail(&format!("add the remote {name}")))
    }

    pub fn delete_remote(&self, name: &str) -> Result<(), RepoError> {
        self.repo
            .remote_change(
                None::<&ostree_ext::gio::File>,
                ostree::RepoRemoteChange::DeleteIfExists,
                name,
                None,
                None,
                NO_CANCEL,
            )
            .map_err(self.fail(&format!("remove the remote {name}")))
    }

    /// The remote's `summary` and `summary.sig` (empty when it has none).
    pub fn fetch_summary(&self, remote: &str) -> Result<SignedSummary, RepoError> {
        // libostree revalidates its cached copy with If-Modified-Since and the
        // ETag, which a summary rewritten within the same second (same size,
        // same mtime) passes; a stale catalog would hide an update. Summaries
        // are small, so always fetch them afresh.
        let cache = self.path.join("tmp/cache/summaries");
        for name in [remote.to_owned(), format!("{remote}.sig")] {
            match std::fs::remove_file(cache.join(&name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(RepoError::Write {
                        path: cache.join(name),
                        source: e,
                    })
                }
                _ => {}
            }
        }
        on_own_context(|| self.remote_fetch_summary(remote))
            .map_err(self.fail(&format!("fetch the summary of {remote}")))?
            .ok_or_else(|| RepoError::NoSummary {
                remote: remote.to_owned(),
            })
    }

    /// `ostree_repo_remote_fetch_summary`, which succeeds without a summary
    /// when the remote has none (a missing repository, a 404). The generated
    /// binding takes that NULL for bytes and panics, so it is called here.
    fn remote_fetch_summary(&self, remote: &str) -> Result<Option<SignedSummary>, glib::Error> {
        use glib::translate::{from_glib_full, ToGlibPtr};
        let name = std::ffi::CString::new(remote).map_err(|_| {
            glib::Error::new(
                gio::IOErrorEnum::InvalidArgument,
                "a NUL in the remote's name",
            )
        })?;
        let mut summary: *mut glib::ffi::GBytes = std::ptr::null_mut();
        let mut signatures: *mut glib::ffi::GBytes = std::ptr::null_mut();
        let mut error = std::ptr::null_mut();
        // SAFETY: a valid repo and C string; the out pointers receive owned
        // references (or NULL), taken over by from_glib_full below.
        let ok = unsafe {
            ostree::ffi::ostree_repo_remote_fetch_summary(
                self.repo.to_glib_none().0,
                name.as_ptr(),
                &mut summary,
                &mut signatures,
                std::ptr::null_mut(),
                &mut error,
            )
        };
        // SAFETY: each pointer is NULL or an owned reference from libostree.
        let take = |bytes: *mut glib::ffi::GBytes| unsafe {
            (!bytes.is_null()).then(|| from_glib_full::<_, glib::Bytes>(bytes).to_vec())
        };
        let (summary, signatures) = (take(summary), take(signatures));
        if ok == glib::ffi::GFALSE {
            // SAFETY: libostree set the error when it returned FALSE.
            return Err(unsafe { from_glib_full(error) });
        }
        Ok(summary.map(|summary| (summary, signatures.unwrap_or_default())))
    }

    /// Pulls exactly `checksum` for `ref_name` from `remote`; only the commit
    /// object and its signatures when `commit_only`.
    pub fn pull(
        &self,
        remote: &str,
        ref_name: &str,
        checksum: &str,
        commit_only: bool,
        cancel: &Cancel,
        progress: impl Fn(PullProgress) + 'static,
    ) -> Result<(), RepoError> {
        let options = glib::VariantDict::new(None);
        options.insert_value("refs", &vec![ref_name.to_owned()].to_variant());
        options.insert_value(
            "override-commit-ids",
            &vec![checksum.to_owned()].to_variant(),
        );
        let flags = if commit_only {
            ostree::RepoPullFlags::COMMIT_ONLY
        } else {
            ostree::RepoPullFlags::NONE
        };
        options.insert_value("flags", &(flags.bits() as i32).to_variant());
        let result = on_own_context(|| {
            // Made here, its updates arrive on this context, which the pull
            // iterates.
            let reporter = ostree::AsyncProgress::new();
            reporter.connect_changed(move |p| {
                progress(PullProgress {
                    bytes: p.uint64("bytes-transferred"),
                    fetched: p.uint("fetched"),
                    requested: p.uint("requested"),
                    delta_bytes: p.uint64("total-delta-part-size"),
                })
            });
            let result = self.repo.pull_with_options(
                remote,
                &options.end(),
                Some(&reporter),
                Some(&cancel.current()),
            );
            reporter.finish();
            result
        });
        result.map_err(|e| {
            if e.matches(gio::IOErrorEnum::Cancelled) {
                RepoError::Cancelled
            } else {
                ostree_error(&format!("pull {ref_name} from {remote}"), &self.path, e)
            }
        })
    }

    /// Checks `checksum` out as the new directory `dest`, hardlinking files
    /// to the repository's objects.
    pub fn checkout(&self, checksum: &str, dest: &Path) -> Result<(), RepoError> {
        let options = ostree::RepoCheckoutAtOptions {
            mode: ostree::RepoCheckoutMode::User,
            overwrite_mode: ostree::RepoCheckoutOverwriteMode::None,
            ..Default::default()
        };
        self.repo
            .checkout_at(Some(&options), libc::AT_FDCWD, dest, checksum, NO_CANCEL)
            .map_err(self.fail(&format!("check out {checksum}")))
    }

    /// Points the ref `ref_name` (of `remote`, or local) at `checksum`, or
    /// removes it with `None`.
    pub fn set_ref(
        &self,
        remote: Option<&str>,
        ref_name: &str,
        checksum: Option<&str>,
    ) -> Result<(), RepoError> {
        self.repo
            .set_ref_immediate(remote, ref_name, checksum, NO_CANCEL)
            .map_err(self.fail(&format!("set the ref {ref_name}")))
    }

    /// Deletes objects no ref reaches; returns the bytes freed.
    pub fn prune(&self) -> Result<u64, RepoError> {
        let (_, _, freed) = self
            .repo
            .prune(ostree::RepoPruneFlags::REFS_ONLY, -1, NO_CANCEL)
            .map_err(self.fail("prune unused objects"))?;
        Ok(freed)
    }
}

fn ostree_error(what: &str, repo: &Path, error: glib::Error) -> RepoError {
    let mut message = error.to_string();
    // libostree keeps a reserve free (min-free-space-percent) and stops short
    // of ENOSPC; either way the user needs to know it is about space.
    if message.contains("min-free-space") || message.contains("No space left on device") {
        message.push_str(" (the disk is full: free some space, then run the command again)");
    }
    ostree_message(what, repo, &message)
}

fn ostree_message(what: &str, repo: &Path, message: &str) -> RepoError {
    RepoError::Ostree {
        what: what.to_owned(),
        repo: repo.to_owned(),
        message: message.to_owned(),
    }
}

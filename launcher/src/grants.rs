//! Taking the portal's grants away: a document from an app, out of the store
//! and out of the app's running sandboxes, and the answers stored about
//! devices. `appbox permission-remove` and `permission-reset` and the store
//! window's Revoke buttons all go through here.
//!
//! Changing the stores is a quick locked file update. Taking a document out
//! of a running sandbox is not: it runs a helper process per instance, so it
//! is a separate step, [`Unmount::run`], that a window runs off its main loop.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::appid::AppId;
use crate::consent::{self, ConsentError, ConsentStore};
use crate::documents::{DocId, DocumentError, DocumentStore};
use crate::instance::Registry;

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(transparent)]
    Documents(#[from] DocumentError),
    #[error(transparent)]
    Consent(#[from] ConsentError),
    #[error("no app holds document {0}; see `appbox documents`")]
    NotHeld(DocId),
    #[error("nothing is stored for {table} {id}; see `appbox permissions`")]
    NoAnswer { table: String, id: String },
    #[error("cannot run {} document-unmount", .appbox.display())]
    Helper {
        appbox: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the grant is gone, but a running instance still shows the file until it restarts:\n{}", .0.join("\n"))]
    StillMounted(Vec<String>),
}

/// The portal's stores of one user: the documents and the answers.
pub struct Grants {
    documents: DocumentStore,
    answers: ConsentStore,
    runtime_dir: PathBuf,
}

impl Grants {
    /// The stores under `data_home` (`$XDG_DATA_HOME`); running sandboxes
    /// are found under `runtime_dir` (`$XDG_RUNTIME_DIR`).
    pub fn new(data_home: &Path, runtime_dir: &Path) -> Grants {
        Grants {
            documents: DocumentStore::new(data_home),
            answers: ConsentStore::new(data_home),
            runtime_dir: runtime_dir.to_owned(),
        }
    }

    pub fn documents(&self) -> &DocumentStore {
        &self.documents
    }

    pub fn answers(&self) -> &ConsentStore {
        &self.answers
    }

    /// Takes document `id` away from `app`, or from every app that holds it.
    /// The store no longer grants it when this returns; the [`Unmount`] takes
    /// it out of the holders' running sandboxes.
    pub fn revoke_document(&self, id: &DocId, app: Option<&AppId>) -> Result<Unmount, GrantError> {
        let holders = self.documents.update(|docs| {
            let holders: Vec<AppId> = docs
                .documents
                .get(id)
                .map(|doc| {
                    doc.apps
                        .keys()
                        .filter(|holder| app.is_none_or(|app| app == *holder))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            docs.revoke(id, app);
            Ok(holders)
        })?;
        if holders.is_empty() {
            return Err(GrantError::NotHeld(id.clone()));
        }
        Ok(self.unmount(holders, vec![id.clone()]))
    }

    /// Forgets the answer stored for entry `id` of `table`, of `app` or of
    /// every app.
    pub fn remove_answer(
        &self,
        table: &str,
        id: &str,
        app: Option<&AppId>,
    ) -> Result<(), GrantError> {
        consent::check_entry(table, id)?;
        if !self
            .answers
            .update(|answers| answers.remove(table, id, app))?
        {
            // Checked above: both are names from appbox's own tables.
            return Err(GrantError::NoAnswer {
                table: table.to_owned(),
                id: id.to_owned(),
            });
        }
        Ok(())
    }

    /// Forgets everything the portal stored for `app`: its documents, which
    /// the [`Unmount`] takes out of its running sandboxes, and its answers.
    pub fn reset(&self, app: &AppId) -> Result<Unmount, GrantError> {
        let revoked = self.documents.update(|docs| {
            let held: Vec<DocId> = docs.for_app(app).map(|(id, _, _)| id.clone()).collect();
            for id in &held {
                docs.revoke(id, Some(app));
            }
            Ok(held)
        })?;
        self.answers.update(|answers| answers.reset(app))?;
        Ok(self.unmount(vec![app.clone()], revoked))
    }

    fn unmount(&self, apps: Vec<AppId>, doc_ids: Vec<DocId>) -> Unmount {
        Unmount {
            runtime_dir: self.runtime_dir.clone(),
            apps,
            doc_ids,
        }
    }
}

/// Documents the store no longer grants, still to be taken out of the
/// running sandboxes of the apps that held them.
#[derive(Debug)]
#[must_use = "revoked documents stay in running sandboxes until unmounted"]
pub struct Unmount {
    runtime_dir: PathBuf,
    apps: Vec<AppId>,
    doc_ids: Vec<DocId>,
}

impl Unmount {
    /// Takes the documents out of every running instance of the apps, each
    /// through a fresh `appbox document-unmount` run from `appbox`: joining a
    /// sandbox needs a single-threaded process of its own. Waits for those
    /// processes, so a window runs this off its main loop.
    pub fn run(self, appbox: &Path) -> Result<(), GrantError> {
        if self.doc_ids.is_empty() {
            return Ok(());
        }
        // No registry: no sandbox runs, so none shows the documents.
        let Ok(registry) = Registry::open(&self.runtime_dir) else {
            return Ok(());
        };
        let mut failures = Vec::new();
        for record in registry.list() {
            if !self.apps.iter().any(|app| app.as_str() == record.app_id) {
                continue;
            }
            for doc_id in &self.doc_ids {
                let output = Command::new(appbox)
                    .args([
                        "document-unmount",
                        "--instance",
                        &record.instance.to_string(),
                        "--doc-id",
                        doc_id.as_str(),
                    ])
                    .stdin(Stdio::null())
                    .output()
                    .map_err(|source| GrantError::Helper {
                        appbox: appbox.to_owned(),
                        source,
                    })?;
                let stderr = String::from_utf8_lossy(&output.stderr);
                // An instance started before the grant may not have it mounted.
                if !output.status.success() && !stderr.contains("not in this sandbox") {
                    failures.push(format!("instance {}: {}", record.instance, stderr.trim()));
                }
            }
        }
        if !failures.is_empty() {
            return Err(GrantError::StillMounted(failures));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::Choice;

    fn app(id: &str) -> AppId {
        AppId::parse(id).unwrap()
    }

    /// Grants over a scratch directory, removed when dropped.
    struct Scratch {
        dir: PathBuf,
        grants: Grants,
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn scratch(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("appbox-grants-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let runtime = dir.join("run");
        std::fs::create_dir_all(&runtime).unwrap();
        let grants = Grants::new(&dir.join("data"), &runtime);
        Scratch { dir, grants }
    }

    /// A helper that must not run: nothing is mounted anywhere.
    const NO_HELPER: &str = "/nonexistent/appbox";

    #[test]
    fn a_document_is_revoked_from_one_app_or_all() {
        let s = scratch("documents");
        let (a, b) = (app("org.example.A"), app("org.example.B"));
        let id = s
            .grants
            .documents()
            .update(|docs| {
                docs.grant(Path::new("/srv/plan.txt"), &a, true)?;
                docs.grant(Path::new("/srv/plan.txt"), &b, false)
            })
            .unwrap();

        let unmount = s.grants.revoke_document(&id, Some(&a)).unwrap();
        assert_eq!(unmount.apps, std::slice::from_ref(&a));
        assert_eq!(unmount.doc_ids, std::slice::from_ref(&id));
        // No instance runs, so no helper is needed.
        unmount.run(Path::new(NO_HELPER)).unwrap();
        let docs = s.grants.documents().load().unwrap();
        assert_eq!(docs.for_app(&a).count(), 0);
        assert_eq!(docs.for_app(&b).count(), 1);

        let error = s.grants.revoke_document(&id, Some(&a)).unwrap_err();
        assert!(matches!(error, GrantError::NotHeld(_)), "{error}");
        let unmount = s.grants.revoke_document(&id, None).unwrap();
        assert_eq!(unmount.apps, [b]);
        unmount.run(Path::new(NO_HELPER)).unwrap();
        assert!(s.grants.documents().load().unwrap().documents.is_empty());
        let error = s.grants.revoke_document(&id, None).unwrap_err();
        assert!(
            error.to_string().contains("no app holds document"),
            "{error}"
        );
    }

    #[test]
    fn an_answer_is_removed_once_and_entries_are_checked() {
        let s = scratch("answers");
        let (a, b) = (app("org.example.A"), app("org.example.B"));
        s.grants
            .answers()
            .update(|answers| {
                answers.set("devices", "kvm", &a, Choice::Allow);
                answers.set("devices", "kvm", &b, Choice::Deny);
            })
            .unwrap();
        s.grants.remove_answer("devices", "kvm", Some(&a)).unwrap();
        let answers = s.grants.answers().load().unwrap();
        assert_eq!(answers.get("devices", "kvm", &a), Choice::Ask);
        assert_eq!(answers.get("devices", "kvm", &b), Choice::Deny);
        let error = s
            .grants
            .remove_answer("devices", "kvm", Some(&a))
            .unwrap_err();
        assert!(matches!(error, GrantError::NoAnswer { .. }), "{error}");
        for (table, id) in [("devices", "../x"), ("secrets", "kvm")] {
            let error = s.grants.remove_answer(table, id, None).unwrap_err();
            assert!(matches!(error, GrantError::Consent(_)), "{error}");
        }
        s.grants.remove_answer("devices", "kvm", None).unwrap();
        assert_eq!(
            s.grants.answers().load().unwrap(),
            consent::Answers::default()
        );
    }

    #[test]
    fn a_reset_forgets_the_apps_documents_and_answers_only() {
        let s = scratch("reset");
        let (a, b) = (app("org.example.A"), app("org.example.B"));
        let ids = s
            .grants
            .documents()
            .update(|docs| {
                let shared = docs.grant(Path::new("/srv/shared.txt"), &a, false)?;
                docs.grant(Path::new("/srv/shared.txt"), &b, false)?;
                let own = docs.grant(Path::new("/srv/own.txt"), &a, true)?;
                Ok([shared, own])
            })
            .unwrap();
        s.grants
            .answers()
            .update(|answers| {
                answers.set("devices", "usb", &a, Choice::Deny);
                answers.set("devices", "usb", &b, Choice::Allow);
            })
            .unwrap();

        let unmount = s.grants.reset(&a).unwrap();
        assert_eq!(unmount.apps, std::slice::from_ref(&a));
        let mut revoked = unmount.doc_ids.clone();
        revoked.sort();
        let mut expected = ids.to_vec();
        expected.sort();
        assert_eq!(revoked, expected);
        unmount.run(Path::new(NO_HELPER)).unwrap();

        let docs = s.grants.documents().load().unwrap();
        assert_eq!(docs.for_app(&a).count(), 0);
        assert_eq!(docs.for_app(&b).count(), 1);
        let answers = s.grants.answers().load().unwrap();
        assert_eq!(answers.get("devices", "usb", &a), Choice::Ask);
        assert_eq!(answers.get("devices", "usb", &b), Choice::Allow);
        // Nothing left: a second reset has nothing to take out.
        let again = s.grants.reset(&a).unwrap();
        assert!(again.doc_ids.is_empty());
        again.run(Path::new(NO_HELPER)).unwrap();
    }
}

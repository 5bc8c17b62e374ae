//! `org.freedesktop.portal.Documents`, as far as a sandboxed app may use it:
//! where its documents are, and which they are. Adding documents and
//! changing grants are for the host side (the file chooser, the CLI and the
//! store), so those calls are refused.

use std::collections::HashMap;
use std::sync::Arc;

use zbus::interface;
use zbus::message::Header;

use crate::error::PortalError;
use crate::service::Portal;

pub struct Documents {
    portal: Arc<Portal>,
}

impl Documents {
    pub fn new(portal: Arc<Portal>) -> Documents {
        Documents { portal }
    }

    fn refuse(&self, method: &str) -> PortalError {
        PortalError::NotAllowed(format!(
            "{method} is not allowed inside a sandbox; files reach apps through the file chooser"
        ))
    }
}

fn with_nul(path: &std::path::Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = path.as_os_str().as_bytes().to_vec();
    bytes.push(0);
    bytes
}

#[interface(name = "org.freedesktop.portal.Documents")]
impl Documents {
    /// The caller's `/run/user/UID/doc`, NUL-terminated as GLib expects.
    async fn get_mount_point(
        &self,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<u8>, PortalError> {
        let caller = self.portal.caller(&header)?;
        Ok(with_nul(&caller.doc_dir))
    }

    /// The caller's own documents, by id, with their paths in its sandbox.
    /// The app id argument is ignored: an app sees only its own.
    async fn list(
        &self,
        #[zbus(header)] header: Header<'_>,
        app_id: &str,
    ) -> Result<HashMap<String, Vec<u8>>, PortalError> {
        let _ = app_id;
        let caller = self.portal.caller(&header)?;
        let docs = self
            .portal
            .granter()
            .store()
            .load()
            .map_err(|e| PortalError::Failed(appbox::sandbox::chain(&e)))?;
        Ok(docs
            .for_app(&caller.app_id)
            .map(|(id, doc, _)| {
                let path = caller.doc_dir.join(id.as_str()).join(doc.name());
                (id.to_string(), with_nul(&path))
            })
            .collect())
    }

    async fn add(
        &self,
        o_path_fd: zbus::Fd<'_>,
        reuse_existing: bool,
        persistent: bool,
    ) -> Result<String, PortalError> {
        let _ = (o_path_fd, reuse_existing, persistent);
        Err(self.refuse("Add"))
    }

    async fn add_named(
        &self,
        o_path_parent_fd: zbus::Fd<'_>,
        filename: Vec<u8>,
        reuse_existing: bool,
        persistent: bool,
    ) -> Result<String, PortalError> {
        let _ = (o_path_parent_fd, filename, reuse_existing, persistent);
        Err(self.refuse("AddNamed"))
    }

    #[zbus(out_args("doc_ids", "extra_out"))]
    async fn add_full(
        &self,
        o_path_fds: Vec<zbus::Fd<'_>>,
        flags: u32,
        app_id: &str,
        permissions: Vec<String>,
    ) -> Result<(Vec<String>, HashMap<String, zbus::OwnedVariant>), PortalError> {
        let _ = (o_path_fds, flags, app_id, permissions);
        Err(self.refuse("AddFull"))
    }

    #[zbus(out_args("doc_id", "extra_out"))]
    async fn add_named_full(
        &self,
        o_path_fd: zbus::Fd<'_>,
        filename: Vec<u8>,
        flags: u32,
        app_id: &str,
        permissions: Vec<String>,
    ) -> Result<(String, HashMap<String, zbus::OwnedVariant>), PortalError> {
        let _ = (o_path_fd, filename, flags, app_id, permissions);
        Err(self.refuse("AddNamedFull"))
    }

    async fn grant_permissions(
        &self,
        doc_id: &str,
        app_id: &str,
        permissions: Vec<String>,
    ) -> Result<(), PortalError> {
        let _ = (doc_id, app_id, permissions);
        Err(self.refuse("GrantPermissions"))
    }

    async fn revoke_permissions(
        &self,
        doc_id: &str,
        app_id: &str,
        permissions: Vec<String>,
    ) -> Result<(), PortalError> {
        let _ = (doc_id, app_id, permissions);
        Err(self.refuse("RevokePermissions"))
    }

    async fn delete(&self, doc_id: &str) -> Result<(), PortalError> {
        let _ = doc_id;
        Err(self.refuse("Delete"))
    }

    async fn lookup(&self, filename: Vec<u8>) -> Result<String, PortalError> {
        let _ = filename;
        Err(self.refuse("Lookup"))
    }

    #[zbus(out_args("path", "apps"))]
    async fn info(
        &self,
        doc_id: &str,
    ) -> Result<(Vec<u8>, HashMap<String, Vec<String>>), PortalError> {
        let _ = doc_id;
        Err(self.refuse("Info"))
    }

    #[zbus(property(emits_changed_signal = "const"), name = "version")]
    fn version(&self) -> u32 {
        4
    }
}

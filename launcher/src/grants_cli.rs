//! The portal's side of the command line: the documents and answers the
//! portal keeps (named and shaped as `flatpak documents` and `flatpak
//! permission-*`), and the hidden verbs the portal runs to put documents into
//! running sandboxes.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use appbox::appid::AppId;
use appbox::consent::{self, Choice};
use appbox::documents::DocId;
use appbox::grants::{Grants, Unmount};
use appbox::hostfacts::HostFacts;
use appbox::instance::{self, Registry};
use appbox::plan;
use appbox::sandbox;
use appbox::text::Escaped;

/// The table of documents, next to the consent tables.
const DOCUMENTS: &str = "documents";

#[derive(Subcommand)]
pub enum GrantCommand {
    /// List the files handed to apps through the file chooser portal
    Documents {
        /// Only the documents of this app
        app: Option<String>,
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// List what the portal stored: documents, and answers about devices
    #[command(
        after_help = "Tables: documents (ids as `appbox documents` shows them), devices (kvm, camera, input, usb, microphone)."
    )]
    Permissions {
        /// documents or devices
        table: Option<String>,
        /// An entry of the table
        id: Option<String>,
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// Take a stored permission away: a document (from one app, or from all), or an answer
    PermissionRemove {
        /// documents or devices
        table: String,
        /// The document id, or the device
        id: String,
        /// Only for this app
        app: Option<String>,
    },
    /// Store an answer, so the portal stops asking: allow, deny or ask
    PermissionSet {
        /// devices
        table: String,
        /// The device: kvm, camera, input, usb, microphone
        id: String,
        /// The app it applies to
        app: String,
        /// allow, deny, or ask (forget the answer)
        value: String,
    },
    /// Forget everything the portal stored for an app: its documents and answers
    PermissionReset {
        /// The app
        app: String,
    },
    /// For the portal: mount a chosen file into a running sandbox
    #[command(hide = true)]
    DocumentMount(DocumentMountArgs),
    /// For the portal: take a document out of a running sandbox
    #[command(hide = true)]
    DocumentUnmount {
        /// An instance number from `appbox ps`
        #[arg(long, value_name = "N")]
        instance: String,
        /// The document's id: 8 characters from 0-9 and a-f
        #[arg(long, value_name = "ID")]
        doc_id: String,
    },
}

/// `appbox document-mount`: the file at `--path` appears in the running
/// sandbox at `/run/user/UID/doc/ID/NAME`. Descriptor 3 must be open on the
/// file the user chose (O_PATH is enough); the path must still lead to it.
#[derive(clap::Args)]
pub struct DocumentMountArgs {
    /// An instance number from `appbox ps`
    #[arg(long, value_name = "N")]
    instance: String,
    /// The document's id: 8 characters from 0-9 and a-f
    #[arg(long, value_name = "ID")]
    doc_id: String,
    /// The file's name inside the sandbox
    #[arg(long, value_name = "NAME")]
    name: String,
    /// The host file: an absolute path without symbolic links
    #[arg(long, value_name = "HOSTPATH")]
    path: PathBuf,
    /// Let the app write to the file (read-only otherwise)
    #[arg(long)]
    writable: bool,
}

pub fn run(command: GrantCommand) -> Result<()> {
    match command {
        GrantCommand::Documents { app, json } => documents(app.as_deref(), json),
        GrantCommand::Permissions { table, id, json } => {
            permissions(table.as_deref(), id.as_deref(), json)
        }
        GrantCommand::PermissionRemove { table, id, app } => {
            permission_remove(&table, &id, app.as_deref())
        }
        GrantCommand::PermissionSet {
            table,
            id,
            app,
            value,
        } => permission_set(&table, &id, &app, &value),
        GrantCommand::PermissionReset { app } => permission_reset(&app),
        GrantCommand::DocumentMount(args) => document_mount(args),
        GrantCommand::DocumentUnmount { instance, doc_id } => document_unmount(&instance, &doc_id),
    }
}

fn access(writable: bool) -> &'static str {
    if writable {
        "read-write"
    } else {
        "read-only"
    }
}

fn grants() -> Result<Grants> {
    let facts = HostFacts::gather()?;
    Ok(Grants::new(&facts.data_home(), &facts.runtime_dir))
}

/// This binary, which runs `appbox document-unmount` for the revoked documents.
fn unmount(unmount: Unmount) -> Result<()> {
    let me = std::env::current_exe().context("cannot find the appbox binary")?;
    Ok(unmount.run(&me)?)
}

fn documents(app: Option<&str>, json: bool) -> Result<()> {
    let app = app.map(AppId::parse).transpose()?;
    let docs = grants()?.documents().load()?;
    let shown = docs
        .documents
        .iter()
        .filter(|(_, doc)| app.as_ref().is_none_or(|app| doc.apps.contains_key(app)));
    let mut out = std::io::stdout().lock();
    if json {
        let rows: Vec<serde_json::Value> = shown
            .map(|(id, doc)| {
                let apps: serde_json::Map<String, serde_json::Value> = doc
                    .apps
                    .iter()
                    .map(|(app, grant)| (app.to_string(), access(grant.writable).into()))
                    .collect();
                serde_json::json!({ "id": id.as_str(), "path": doc.path, "apps": apps })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    writeln!(out, "{:<10} {:<40} Apps", "ID", "Path")?;
    for (id, doc) in shown {
        let apps: Vec<String> = doc
            .apps
            .iter()
            .map(|(app, grant)| format!("{app} ({})", access(grant.writable)))
            .collect();
        // Paths come from the user's choices; shown escaped all the same.
        let path = Escaped(&doc.path.to_string_lossy()).to_string();
        writeln!(out, "{:<10} {:<40} {}", id, path, apps.join(", "))?;
    }
    Ok(())
}

/// One stored permission, as `permissions` prints it.
struct Row {
    table: &'static str,
    id: String,
    app: String,
    value: String,
}

fn permissions(table: Option<&str>, id: Option<&str>, json: bool) -> Result<()> {
    if let Some(table) = table {
        if table != DOCUMENTS && !consent::TABLES.contains(&table) {
            bail!(consent::ConsentError::UnknownTable(
                Escaped(table).to_string()
            ));
        }
    }
    let grants = grants()?;
    let mut rows = Vec::new();
    if table.is_none_or(|t| t == DOCUMENTS) {
        for (doc_id, doc) in &grants.documents().load()?.documents {
            for (app, grant) in &doc.apps {
                rows.push(Row {
                    table: DOCUMENTS,
                    id: doc_id.to_string(),
                    app: app.to_string(),
                    value: access(grant.writable).to_owned(),
                });
            }
        }
    }
    for (name, ids) in &grants.answers().load()?.tables {
        let Some(table_name) = consent::TABLES.iter().find(|t| *t == name) else {
            continue;
        };
        if table.is_some_and(|t| t != name) {
            continue;
        }
        for (entry, apps) in ids {
            for (app, choice) in apps {
                rows.push(Row {
                    table: table_name,
                    id: entry.clone(),
                    app: app.to_string(),
                    value: choice.to_string(),
                });
            }
        }
    }
    rows.retain(|row| id.is_none_or(|id| row.id == id));
    let mut out = std::io::stdout().lock();
    if json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::json!({"table": r.table, "id": r.id, "app": r.app, "permission": r.value}))
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    writeln!(out, "{:<10} {:<10} {:<40} Permission", "Table", "ID", "App")?;
    for r in &rows {
        writeln!(
            out,
            "{:<10} {:<10} {:<40} {}",
            r.table, r.id, r.app, r.value
        )?;
    }
    Ok(())
}

fn permission_remove(table: &str, id: &str, app: Option<&str>) -> Result<()> {
    let app = app.map(AppId::parse).transpose()?;
    let grants = grants()?;
    if table == DOCUMENTS {
        unmount(grants.revoke_document(&DocId::parse(id)?, app.as_ref())?)
    } else {
        Ok(grants.remove_answer(table, id, app.as_ref())?)
    }
}

fn permission_set(table: &str, id: &str, app: &str, value: &str) -> Result<()> {
    if table == DOCUMENTS {
        bail!("documents are granted through the file chooser, not set; `appbox permission-remove documents ID` takes one away");
    }
    consent::check_entry(table, id)?;
    let app = AppId::parse(app)?;
    let choice: Choice = value.parse()?;
    grants()?
        .answers()
        .update(|answers| answers.set(table, id, &app, choice))?;
    Ok(())
}

fn permission_reset(app: &str) -> Result<()> {
    let app = AppId::parse(app)?;
    unmount(grants()?.reset(&app)?)
}

/// The descriptor on which the portal passes the chosen file.
const CHOSEN_FD: std::os::fd::RawFd = 3;

/// Takes descriptor 3, which must have been inherited open.
fn chosen_file() -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_GETFD only reads the descriptor's flags; a closed one fails with EBADF.
    if unsafe { libc::fcntl(CHOSEN_FD, libc::F_GETFD) } == -1 {
        bail!("descriptor {CHOSEN_FD} is not open: pass the chosen file on it (an O_PATH descriptor is enough)");
    }
    // SAFETY: descriptor 3 is open (checked above) and was inherited: this is
    // the first thing the command does, so nothing in this process opened or
    // owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(CHOSEN_FD) })
}

fn document_mount(args: DocumentMountArgs) -> Result<()> {
    let chosen = chosen_file()?;
    let doc = plan::DocumentMount {
        doc_id: args.doc_id,
        name: args.name,
        host_path: args.path,
        writable: args.writable,
    };
    plan::check_document(&doc)?;
    let facts = HostFacts::gather()?;
    let record = Registry::open(&facts.runtime_dir)?.find(&args.instance)?;
    let pidfd = instance::verified_pidfd(&record)?;
    sandbox::inject::inject(pidfd.as_fd(), record.plan.ids.app_uid, &doc, chosen.as_fd())
        .with_context(|| {
            format!(
                "cannot mount document {} into instance {}",
                doc.doc_id, record.instance
            )
        })
}

fn document_unmount(target: &str, doc_id: &str) -> Result<()> {
    let facts = HostFacts::gather()?;
    let record = Registry::open(&facts.runtime_dir)?.find(target)?;
    let pidfd = instance::verified_pidfd(&record)?;
    sandbox::inject::remove(pidfd.as_fd(), record.plan.ids.app_uid, doc_id).with_context(|| {
        format!(
            "cannot unmount document {} from instance {}",
            Escaped(doc_id),
            record.instance
        )
    })
}

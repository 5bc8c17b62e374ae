//! `org.freedesktop.portal.FileChooser`: OpenFile, SaveFile and SaveFiles.
//!
//! The app learns only what the user chose: each chosen file becomes a
//! document mounted into its sandbox, and the Response carries the URIs of
//! those mounts (`file:///run/user/UID/doc/<id>/<name>`), never a host path.

use std::collections::HashMap;
use std::sync::Arc;

use zbus::message::Header;
use zbus::{interface, Connection, OwnedObjectPath, OwnedVariant, Variant};

use crate::chooser::{Kind, Question, FORWARDED_OPTIONS};
use crate::error::PortalError;
use crate::request::{self, Response};
use crate::service::Portal;

pub struct FileChooser {
    portal: Arc<Portal>,
}

impl FileChooser {
    pub fn new(portal: Arc<Portal>) -> FileChooser {
        FileChooser { portal }
    }
}

type Options = HashMap<String, OwnedVariant>;

#[interface(name = "org.freedesktop.portal.FileChooser")]
impl FileChooser {
    async fn open_file(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        parent_window: &str,
        title: &str,
        options: Options,
    ) -> Result<OwnedObjectPath, PortalError> {
        let kind = Kind::OpenFile {
            multiple: option::<bool>(&options, "multiple")?.unwrap_or(false),
            directory: option::<bool>(&options, "directory")?.unwrap_or(false),
        };
        self.start(&header, connection, parent_window, title, kind, options)
            .await
    }

    async fn save_file(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        parent_window: &str,
        title: &str,
        options: Options,
    ) -> Result<OwnedObjectPath, PortalError> {
        let kind = Kind::SaveFile {
            current_name: option::<String>(&options, "current_name")?,
        };
        self.start(&header, connection, parent_window, title, kind, options)
            .await
    }

    async fn save_files(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        parent_window: &str,
        title: &str,
        options: Options,
    ) -> Result<OwnedObjectPath, PortalError> {
        let files = option::<Vec<Vec<u8>>>(&options, "files")?.unwrap_or_default();
        let files = files
            .iter()
            .map(|name| {
                let name = name.strip_suffix(b"\0").unwrap_or(name);
                String::from_utf8(name.to_vec()).map_err(|_| {
                    PortalError::InvalidArgument("files must be UTF-8 file names".into())
                })
            })
            .collect::<Result<_, _>>()?;
        self.start(
            &header,
            connection,
            parent_window,
            title,
            Kind::SaveFiles { files },
            options,
        )
        .await
    }

    #[zbus(property(emits_changed_signal = "const"), name = "version")]
    fn version(&self) -> u32 {
        3
    }
}

impl FileChooser {
    async fn start(
        &self,
        header: &Header<'_>,
        connection: &Connection,
        parent_window: &str,
        title: &str,
        kind: Kind,
        mut options: Options,
    ) -> Result<OwnedObjectPath, PortalError> {
        let caller = self.portal.caller(header)?;
        let sender = caller.unique_name.clone();
        let token = option::<String>(&options, "handle_token")?;
        let path = request::handle_path(&sender, token.as_deref())?;
        let opening = matches!(kind, Kind::OpenFile { .. });
        options.retain(|key, _| FORWARDED_OPTIONS.contains(&key.as_str()));
        let question = Question {
            app_id: caller.app_id.to_string(),
            title: title.to_owned(),
            kind,
            handle: path.to_string(),
            parent_window: parent_window.to_owned(),
            options,
        };
        let on_close = request::export(connection.object_server(), &path, &sender).await?;
        let portal = self.portal.clone();
        let connection = connection.clone();
        let (title, app_id) = (question.title.clone(), question.app_id.clone());
        let handle = path.clone();
        tokio::spawn(async move {
            let work = tokio::task::spawn_blocking(move || portal.choose(&caller, &question));
            tokio::select! {
                _ = on_close => request::remove(&connection, &path).await,
                done = work => {
                    let mut results = HashMap::new();
                    let response = match done {
                        Ok(Ok(Some(choice))) => {
                            if opening {
                                results.insert("writable", Variant::from(choice.writable));
                            }
                            results.insert("uris", Variant::from(choice.uris));
                            Response::Success
                        }
                        Ok(Ok(None)) => Response::Cancelled,
                        Ok(Err(e)) => {
                            eprintln!(
                                "appbox-portal: {} for {}: {}",
                                title,
                                app_id,
                                appbox::sandbox::chain(&e)
                            );
                            Response::Other
                        }
                        Err(_) => Response::Other,
                    };
                    request::respond(&connection, &path, &sender, response, results).await;
                }
            }
        });
        Ok(handle)
    }
}

/// An option of type `T`, if the app gave it; the wrong type is an error.
fn option<T>(options: &Options, key: &str) -> Result<Option<T>, PortalError>
where
    T: TryFrom<OwnedVariant>,
{
    let Some(value) = options.get(key) else {
        return Ok(None);
    };
    let wrong = || PortalError::InvalidArgument(format!("option {key} has the wrong type"));
    let value = value.try_clone().map_err(|_| wrong())?;
    T::try_from(value).map(Some).map_err(|_| wrong())
}

//! The portal's dialogs in words, and their answers, for
//! `appbox-gui --portal-dialog` ([`appbox::portal_dialog`]).
//!
//! The app is the adversary here. Its title, accept label, proposed name
//! and filter names are shown as plain single lines; every dialog also
//! says, in appbox's own words, which app asks: the id the portal took
//! from the sandbox's records.

use std::path::PathBuf;

use appbox::consent::DEVICE_TABLE;
use appbox::portal_dialog::{
    file_uri, ConsentAnswer, ConsentRequest, FileAction, FileChooserAnswer, FileChooserRequest,
    FilePattern,
};

use super::devices::device_words;
use super::text::{one_line, plain};

/// The response ids of the consent dialog.
pub const ALLOW: &str = "allow";
pub const DENY: &str = "deny";

/// Which GTK file chooser a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChooserMode {
    Open,
    SelectFolder,
    Save,
}

/// One filter, ready for a `GtkFileFilter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterView {
    pub name: String,
    pub globs: Vec<String>,
    pub mime_types: Vec<String>,
}

/// What the file chooser shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChooserView {
    pub mode: ChooserMode,
    /// The app's title, as one plain line; a default when it gave none.
    pub title: String,
    /// appbox's own line: which app asks, and what it gets.
    pub asking: String,
    /// With a mnemonic, as GTK's buttons take it.
    pub accept_label: String,
    pub multiple: bool,
    pub current_name: Option<String>,
    /// Offer "Open read-only": opening may hand over write access.
    pub read_only_choice: bool,
    pub filters: Vec<FilterView>,
}

pub fn chooser_view(request: &FileChooserRequest) -> ChooserView {
    let (mode, default_title, default_accept, wants) = match &request.action {
        FileAction::Open {
            directory: true, ..
        } => (
            ChooserMode::SelectFolder,
            "Select a Folder",
            "_Select",
            "for a folder",
        ),
        FileAction::Open { multiple: true, .. } => {
            (ChooserMode::Open, "Open Files", "_Open", "for files")
        }
        FileAction::Open { .. } => (ChooserMode::Open, "Open a File", "_Open", "for a file"),
        FileAction::Save { .. } => (
            ChooserMode::Save,
            "Save a File",
            "_Save",
            "where to save a file",
        ),
        FileAction::SaveFiles { .. } => (
            ChooserMode::SelectFolder,
            "Select a Folder to Save Into",
            "_Save",
            "for a folder to save files into",
        ),
    };
    let given = |text: &Option<String>| {
        text.as_deref()
            .map(one_line)
            .filter(|line| !line.trim().is_empty())
    };
    let title = given(&Some(request.title.clone())).unwrap_or_else(|| default_title.to_owned());
    ChooserView {
        mode,
        title,
        asking: format!(
            "The app {} asks {wants}. It gets only what you choose here.",
            request.app_id
        ),
        accept_label: given(&request.accept_label).unwrap_or_else(|| default_accept.to_owned()),
        multiple: matches!(request.action, FileAction::Open { multiple: true, .. }),
        current_name: match &request.action {
            FileAction::Save { current_name } => given(current_name),
            _ => None,
        },
        read_only_choice: matches!(request.action, FileAction::Open { .. }),
        filters: request
            .filters
            .iter()
            .map(|filter| FilterView {
                name: one_line(&filter.name),
                globs: filter
                    .patterns
                    .iter()
                    .filter_map(|p| match p {
                        FilePattern::Glob(glob) => Some(glob.clone()),
                        FilePattern::MimeType(_) => None,
                    })
                    .collect(),
                mime_types: filter
                    .patterns
                    .iter()
                    .filter_map(|p| match p {
                        FilePattern::MimeType(mime) => Some(mime.clone()),
                        FilePattern::Glob(_) => None,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Why a pick could not become an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    /// GTK returned a file that has no local path (a remote location).
    #[error("the chosen file is not on this computer")]
    NotLocal,
    #[error("{} is not an absolute path", .0.display())]
    NotAbsolute(PathBuf),
    /// Saving into a folder needs exactly one folder.
    #[error("{0} folders were chosen to save into")]
    NotOneFolder(usize),
}

/// The answer for what the user picked (`None` for a file with no local
/// path): the files themselves, or for SaveFiles the app's names in the
/// one folder picked. Opening is writable unless the user chose
/// read-only; saving always is. Nothing picked is a cancel.
pub fn file_answer(
    action: &FileAction,
    picked: Vec<Option<PathBuf>>,
    read_only: bool,
) -> Result<FileChooserAnswer, PickError> {
    if picked.is_empty() {
        return Ok(FileChooserAnswer::Cancelled {});
    }
    let picked = picked
        .into_iter()
        .map(|path| match path {
            None => Err(PickError::NotLocal),
            Some(path) if !path.is_absolute() => Err(PickError::NotAbsolute(path)),
            Some(path) => Ok(path),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (paths, writable) = match action {
        FileAction::Open { .. } => (picked, !read_only),
        FileAction::Save { .. } => (picked, true),
        FileAction::SaveFiles { files } => {
            let [folder] = picked.as_slice() else {
                return Err(PickError::NotOneFolder(picked.len()));
            };
            // The names were checked as plain names when the request was read.
            (files.iter().map(|name| folder.join(name)).collect(), true)
        }
    };
    Ok(FileChooserAnswer::Chosen {
        uris: paths.iter().map(|path| file_uri(path)).collect(),
        writable,
    })
}

/// What the consent dialog shows. All of it is appbox's text, naming the
/// app by its id from the portal's records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentView {
    pub heading: String,
    pub body: String,
    pub deny_label: &'static str,
    pub allow_label: &'static str,
    pub remember_label: &'static str,
}

pub fn consent_view(request: &ConsentRequest) -> ConsentView {
    let app = &request.app_id;
    let known = if request.table == DEVICE_TABLE {
        device_words(&request.id)
    } else {
        None
    };
    let (noun, purpose) = match known {
        Some(words) => (words.noun.to_owned(), words.purpose.to_owned()),
        None => {
            let entry = one_line(&format!("{} {}", request.table, request.id));
            (entry.clone(), format!("use {entry}"))
        }
    };
    ConsentView {
        heading: plain(&format!("Allow {app} to use {noun}?")),
        body: plain(&format!(
            "The app {app} asks to {purpose}. It gets only this device, not the others.\n\n\
             A remembered choice can be changed with “appbox permission-set {} {} {app} ask”.",
            one_line(&request.table),
            one_line(&request.id)
        )),
        deny_label: "_Deny",
        allow_label: "_Allow",
        remember_label: "_Remember this choice",
    }
}

/// The answer for the consent dialog's response: only "allow" allows;
/// closing the dialog denies.
pub fn consent_answer(response: &str, remember: bool) -> ConsentAnswer {
    ConsentAnswer {
        allow: response == ALLOW,
        remember,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use appbox::appid::AppId;
    use appbox::portal_dialog::FileFilter;

    fn app() -> AppId {
        AppId::parse("org.example.App").unwrap()
    }

    fn chooser(action: FileAction, title: &str, accept: Option<&str>) -> FileChooserRequest {
        FileChooserRequest {
            app_id: app(),
            title: title.into(),
            accept_label: accept.map(str::to_owned),
            action,
            filters: Vec::new(),
        }
    }

    #[test]
    fn the_apps_text_is_shown_plain_and_appbox_names_the_app() {
        let request = FileChooserRequest {
            filters: vec![FileFilter {
                name: "Text\nfiles".into(),
                patterns: vec![
                    FilePattern::Glob("*.txt".into()),
                    FilePattern::MimeType("text/plain".into()),
                ],
            }],
            ..chooser(
                FileAction::Save {
                    current_name: Some("evil\u{202E}txt.exe".into()),
                },
                "<b>System</b>\nupdate\u{1b}[2J",
                Some("_Save\tnow"),
            )
        };
        let shown = chooser_view(&request);
        assert_eq!(shown.mode, ChooserMode::Save);
        assert_eq!(shown.title, "<b>System</b> update\u{FFFD}[2J");
        assert_eq!(
            shown.asking,
            "The app org.example.App asks where to save a file. It gets only what you choose here."
        );
        assert_eq!(shown.accept_label, "_Save now");
        assert_eq!(shown.current_name.as_deref(), Some("evil\u{FFFD}txt.exe"));
        assert!(!shown.read_only_choice && !shown.multiple);
        assert_eq!(
            shown.filters,
            [FilterView {
                name: "Text files".into(),
                globs: vec!["*.txt".into()],
                mime_types: vec!["text/plain".into()],
            }]
        );
    }

    #[test]
    fn each_action_gets_its_chooser_and_defaults() {
        let open = |multiple, directory| FileAction::Open {
            multiple,
            directory,
        };
        let cases = [
            (
                open(false, false),
                ChooserMode::Open,
                "Open a File",
                "_Open",
            ),
            (open(true, false), ChooserMode::Open, "Open Files", "_Open"),
            (
                open(false, true),
                ChooserMode::SelectFolder,
                "Select a Folder",
                "_Select",
            ),
            (
                FileAction::Save { current_name: None },
                ChooserMode::Save,
                "Save a File",
                "_Save",
            ),
            (
                FileAction::SaveFiles {
                    files: vec!["a".into()],
                },
                ChooserMode::SelectFolder,
                "Select a Folder to Save Into",
                "_Save",
            ),
        ];
        for (action, mode, title, accept) in cases {
            let shown = chooser_view(&chooser(action.clone(), " \n", Some("")));
            assert_eq!(
                (shown.mode, shown.title.as_str()),
                (mode, title),
                "{action:?}"
            );
            assert_eq!(shown.accept_label, accept, "{action:?}");
            assert_eq!(
                shown.read_only_choice,
                matches!(action, FileAction::Open { .. })
            );
        }
        assert!(chooser_view(&chooser(open(true, false), "t", None)).multiple);
    }

    #[test]
    fn picks_become_file_uris_with_the_right_access() {
        let open = FileAction::Open {
            multiple: true,
            directory: false,
        };
        assert_eq!(
            file_answer(
                &open,
                vec![Some("/home/ada/a b%ä.txt".into()), Some("/x".into())],
                true
            ),
            Ok(FileChooserAnswer::Chosen {
                uris: vec![
                    "file:///home/ada/a%20b%25%C3%A4.txt".into(),
                    "file:///x".into()
                ],
                writable: false
            })
        );
        assert_eq!(
            file_answer(&open, vec![Some("/x".into())], false),
            Ok(FileChooserAnswer::Chosen {
                uris: vec!["file:///x".into()],
                writable: true
            })
        );
        let save = FileAction::Save { current_name: None };
        assert!(matches!(
            file_answer(&save, vec![Some("/new".into())], true),
            Ok(FileChooserAnswer::Chosen { writable: true, .. })
        ));
        let save_files = FileAction::SaveFiles {
            files: vec!["a.png".into(), "b c.png".into()],
        };
        assert_eq!(
            file_answer(&save_files, vec![Some("/home/ada/Pictures".into())], false),
            Ok(FileChooserAnswer::Chosen {
                uris: vec![
                    "file:///home/ada/Pictures/a.png".into(),
                    "file:///home/ada/Pictures/b%20c.png".into()
                ],
                writable: true
            })
        );
        assert_eq!(
            file_answer(
                &save_files,
                vec![Some("/a".into()), Some("/b".into())],
                false
            ),
            Err(PickError::NotOneFolder(2))
        );
        assert_eq!(
            file_answer(&open, vec![None], false),
            Err(PickError::NotLocal)
        );
        assert!(matches!(
            file_answer(&open, vec![Some("rel".into())], false),
            Err(PickError::NotAbsolute(_))
        ));
        assert_eq!(
            file_answer(&open, Vec::new(), false),
            Ok(FileChooserAnswer::Cancelled {})
        );
    }

    #[test]
    fn consent_names_the_app_and_the_device_and_only_allow_allows() {
        let request = ConsentRequest {
            app_id: app(),
            table: "devices".into(),
            id: "kvm".into(),
        };
        let shown = consent_view(&request);
        assert_eq!(shown.heading, "Allow org.example.App to use KVM?");
        assert!(
            shown
                .body
                .starts_with("The app org.example.App asks to run virtual machines with KVM."),
            "{}",
            shown.body
        );
        assert!(shown
            .body
            .contains("appbox permission-set devices kvm org.example.App ask"));
        assert_eq!((shown.deny_label, shown.allow_label), ("_Deny", "_Allow"));
        assert_eq!(
            consent_answer(ALLOW, true),
            ConsentAnswer {
                allow: true,
                remember: true
            }
        );
        for response in [DENY, "close", "", "Allow"] {
            assert!(!consent_answer(response, false).allow, "{response}");
        }
    }
}

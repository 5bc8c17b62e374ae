//! Who picks the files: the user, through a file chooser on the host.
//!
//! - [`crate::backend::ImplChooser`]: the host's own portal backend
//!   (`org.freedesktop.impl.portal.FileChooser`, such as
//!   xdg-desktop-portal-gtk), which shows the desktop's dialog.
//! - [`crate::gui_dialog::GuiDialogs`]: appbox's own dialog, from
//!   `appbox-gui`, when there is no backend but a display.
//! - [`Scripted`]: answers from a [`ScriptQueue`], for tests.
//! - [`Unavailable`]: no chooser on this host; every request fails with a
//!   message saying what to install.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zbus::OwnedVariant;

use crate::script::{ScriptError, ScriptQueue};

/// What the app asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "method")]
pub enum Kind {
    OpenFile { multiple: bool, directory: bool },
    SaveFile { current_name: Option<String> },
    SaveFiles { files: Vec<String> },
}

/// One request, as the chooser (and the user) sees it.
#[derive(Debug, Serialize)]
pub struct Question {
    pub app_id: String,
    pub title: String,
    #[serde(flatten)]
    pub kind: Kind,
    /// The request's handle, which a backend's dialog belongs to.
    #[serde(skip)]
    pub handle: String,
    #[serde(skip)]
    pub parent_window: String,
    /// The app's options that a chooser shows (labels, filters, choices),
    /// never those naming paths inside the sandbox.
    #[serde(skip)]
    pub options: HashMap<String, OwnedVariant>,
}

/// The options a chooser gets from the app, as xdg-desktop-portal passes
/// them. `current_folder` and `current_file` name paths in the sandbox,
/// which mean nothing (or something else) on the host.
pub const FORWARDED_OPTIONS: &[&str] = &[
    "accept_label",
    "modal",
    "multiple",
    "directory",
    "filters",
    "current_filter",
    "choices",
    "current_name",
    "files",
];

/// What the user answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Absolute host paths; for saving, files that may not exist yet.
    Chosen {
        paths: Vec<PathBuf>,
        writable: bool,
    },
    Cancelled,
}

#[derive(Debug, thiserror::Error)]
pub enum ChooserError {
    #[error("there is no file chooser on this host: install xdg-desktop-portal-gtk, or appbox-gui next to appbox-portal, and run the portal with a display")]
    Unavailable,
    #[error(transparent)]
    Script(#[from] ScriptError),
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    #[error(transparent)]
    Dialog(#[from] crate::gui_dialog::GuiDialogError),
}

/// A file chooser. `choose` blocks until the user answers.
pub trait Chooser: Send + Sync {
    fn choose(&self, question: &Question) -> Result<Answer, ChooserError>;
}

pub struct Unavailable;

impl Chooser for Unavailable {
    fn choose(&self, _question: &Question) -> Result<Answer, ChooserError> {
        Err(ChooserError::Unavailable)
    }
}

/// Answers from a [`ScriptQueue`]: `{"paths": ["/abs/file"], "writable": true}`
/// or `{"cancel": true}`.
pub struct Scripted {
    queue: ScriptQueue,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptedAnswer {
    #[serde(default)]
    paths: Vec<PathBuf>,
    #[serde(default = "yes")]
    writable: bool,
    #[serde(default)]
    cancel: bool,
}

fn yes() -> bool {
    true
}

impl Scripted {
    pub fn new(queue: &Path) -> Scripted {
        Scripted {
            queue: ScriptQueue::new(queue),
        }
    }
}

impl Chooser for Scripted {
    fn choose(&self, question: &Question) -> Result<Answer, ChooserError> {
        let answer: ScriptedAnswer = self.queue.answer(question)?;
        if answer.cancel {
            return Ok(Answer::Cancelled);
        }
        if answer.paths.is_empty() || answer.paths.iter().any(|p| !p.is_absolute()) {
            return Err(self
                .queue
                .bad("an answer needs one or more absolute paths".into())
                .into());
        }
        Ok(Answer::Chosen {
            paths: answer.paths,
            writable: answer.writable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_answers_are_consumed_in_order_and_questions_logged() {
        let dir = std::env::temp_dir().join(format!("appbox-chooser-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let queue = dir.join("answers");
        std::fs::write(
            &queue,
            "{\"paths\": [\"/tmp/a b.txt\"], \"writable\": false}\n{\"cancel\": true}\n{\"paths\": [\"rel\"]}\n",
        )
        .unwrap();
        let chooser = Scripted::new(&queue);
        let question = Question {
            app_id: "org.example.A".into(),
            title: "Open".into(),
            kind: Kind::OpenFile {
                multiple: false,
                directory: false,
            },
            handle: String::new(),
            parent_window: String::new(),
            options: HashMap::new(),
        };
        assert_eq!(
            chooser.choose(&question).unwrap(),
            Answer::Chosen {
                paths: vec![PathBuf::from("/tmp/a b.txt")],
                writable: false
            }
        );
        assert_eq!(chooser.choose(&question).unwrap(), Answer::Cancelled);
        assert!(matches!(
            chooser.choose(&question),
            Err(ChooserError::Script(ScriptError::BadAnswer { .. }))
        ));
        assert!(matches!(
            chooser.choose(&question),
            Err(ChooserError::Script(ScriptError::NoAnswer { .. }))
        ));
        let log = std::fs::read_to_string(dir.join("answers.log")).unwrap();
        assert_eq!(log.lines().count(), 4);
        assert!(log.contains("\"method\":\"OpenFile\""), "{log}");
        assert!(log.contains("\"app_id\":\"org.example.A\""), "{log}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

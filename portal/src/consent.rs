//! Asking the user before an app gets something: the stored answer if there
//! is one (`appbox permission-set`), else a question to the user, whose
//! answer is stored when they ask for that.
//!
//! - [`ScriptedPrompter`]: answers from a [`ScriptQueue`], for tests:
//!   `{"answer": "allow", "remember": true}`.
//! - [`crate::backend::ImplPrompter`]: the desktop's consent dialog, from
//!   the host's portal backend.
//! - [`crate::gui_dialog::GuiDialogs`]: appbox's own consent dialog, from
//!   `appbox-gui`, when there is no backend but a display.
//! - [`NoPrompter`]: nobody to ask: every question is refused, with a
//!   message saying how to allow it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use appbox::appid::AppId;
use appbox::consent::{Choice, ConsentError, ConsentStore};

use crate::script::{ScriptError, ScriptQueue};

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("there is no way to ask the user here; allow it with `appbox permission-set {table} {id} {app} allow`")]
    Unavailable {
        table: String,
        id: String,
        app: String,
    },
    #[error(transparent)]
    Script(#[from] ScriptError),
    #[error(transparent)]
    Backend(crate::backend::BackendError),
    #[error(transparent)]
    Dialog(crate::gui_dialog::GuiDialogError),
}

/// One question, as the user sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Question {
    pub app_id: String,
    pub table: String,
    pub id: String,
}

/// What the user answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Decision {
    pub allow: bool,
    /// Keep the answer for next time.
    pub remember: bool,
}

pub trait Prompter: Send + Sync {
    fn ask(&self, question: &Question) -> Result<Decision, PromptError>;
}

pub struct NoPrompter;

impl Prompter for NoPrompter {
    fn ask(&self, question: &Question) -> Result<Decision, PromptError> {
        Err(PromptError::Unavailable {
            table: question.table.clone(),
            id: question.id.clone(),
            app: question.app_id.clone(),
        })
    }
}

pub struct ScriptedPrompter {
    queue: ScriptQueue,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptedAnswer {
    answer: Choice,
    #[serde(default)]
    remember: bool,
}

impl ScriptedPrompter {
    pub fn new(queue: &Path) -> ScriptedPrompter {
        ScriptedPrompter {
            queue: ScriptQueue::new(queue),
        }
    }
}

impl Prompter for ScriptedPrompter {
    fn ask(&self, question: &Question) -> Result<Decision, PromptError> {
        let answer: ScriptedAnswer = self.queue.answer(question)?;
        let allow = match answer.answer {
            Choice::Allow => true,
            Choice::Deny => false,
            Choice::Ask => return Err(self.queue.bad("answer allow or deny".into()).into()),
        };
        Ok(Decision {
            allow,
            remember: answer.remember,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsentFailure {
    #[error(transparent)]
    Store(#[from] ConsentError),
    #[error(transparent)]
    Prompt(#[from] PromptError),
}

/// Whether `app` may have `table`/`id`: the stored answer, or the user's.
pub fn decide(
    store: &ConsentStore,
    prompter: &dyn Prompter,
    app: &AppId,
    table: &str,
    id: &str,
) -> Result<bool, ConsentFailure> {
    match store.load()?.get(table, id, app) {
        Choice::Allow => return Ok(true),
        Choice::Deny => return Ok(false),
        Choice::Ask => {}
    }
    let decision = prompter.ask(&Question {
        app_id: app.to_string(),
        table: table.to_owned(),
        id: id.to_owned(),
    })?;
    if decision.remember {
        let choice = if decision.allow {
            Choice::Allow
        } else {
            Choice::Deny
        };
        store.update(|answers| answers.set(table, id, app, choice))?;
    }
    Ok(decision.allow)
}

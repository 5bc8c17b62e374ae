//! Who picks the files: the user, through a file chooser on the host.
//!
//! - [`Scripted`]: answers from a queue file that only the host side can name
//!   (the portal's environment), for tests. Apps never reach it: the sandbox
//!   has no way to set the portal's environment or to see the file.
//! - [`Unavailable`]: no chooser on this host; every request fails with a
//!   message saying what to install.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What the app asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "method")]
pub enum Kind {
    OpenFile { multiple: bool, directory: bool },
    SaveFile { current_name: Option<String> },
    SaveFiles { files: Vec<String> },
}

/// One request, as the chooser (and the user) sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Question {
    pub app_id: String,
    pub title: String,
    #[serde(flatten)]
    pub kind: Kind,
}

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
    #[error("there is no file chooser on this host: install xdg-desktop-portal-gtk, or run the appbox store")]
    Unavailable,
    #[error("the scripted chooser {path} has no answer left for this request")]
    NoAnswer { path: PathBuf },
    #[error("cannot use the scripted chooser {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the scripted chooser {path} has a bad answer ({reason})")]
    BadAnswer { path: PathBuf, reason: String },
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

/// Answers from a queue: one JSON object per line, consumed from the top,
/// `{"paths": ["/abs/file"], "writable": true}` or `{"cancel": true}`. Each
/// question is appended to `<queue>.log` as a JSON line, so tests see what
/// the portal asked and for which app.
pub struct Scripted {
    queue: PathBuf,
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
            queue: queue.to_owned(),
        }
    }

    fn io(&self, source: std::io::Error) -> ChooserError {
        ChooserError::Io {
            path: self.queue.clone(),
            source,
        }
    }

    fn log(&self, question: &Question) -> Result<(), ChooserError> {
        let mut log_path = self.queue.clone().into_os_string();
        log_path.push(".log");
        let mut line = serde_json::to_vec(question).map_err(|e| self.io(e.into()))?;
        line.push(b'\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .and_then(|mut log| log.write_all(&line))
            .map_err(|e| self.io(e))
    }
}

impl Chooser for Scripted {
    fn choose(&self, question: &Question) -> Result<Answer, ChooserError> {
        self.log(question)?;
        let text = std::fs::read_to_string(&self.queue).map_err(|e| self.io(e))?;
        let Some((first, rest)) = text
            .split_once('\n')
            .or_else(|| (!text.is_empty()).then_some((text.as_str(), "")))
        else {
            return Err(ChooserError::NoAnswer {
                path: self.queue.clone(),
            });
        };
        let staging = self.queue.with_extension("next");
        std::fs::write(&staging, rest)
            .and_then(|()| std::fs::rename(&staging, &self.queue))
            .map_err(|e| self.io(e))?;
        let bad = |reason: String| ChooserError::BadAnswer {
            path: self.queue.clone(),
            reason,
        };
        let answer: ScriptedAnswer = serde_json::from_str(first).map_err(|e| bad(e.to_string()))?;
        if answer.cancel {
            return Ok(Answer::Cancelled);
        }
        if answer.paths.is_empty() || answer.paths.iter().any(|p| !p.is_absolute()) {
            return Err(bad("an answer needs one or more absolute paths".into()));
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
            Err(ChooserError::BadAnswer { .. })
        ));
        assert!(matches!(
            chooser.choose(&question),
            Err(ChooserError::NoAnswer { .. })
        ));
        let log = std::fs::read_to_string(dir.join("answers.log")).unwrap();
        assert_eq!(log.lines().count(), 4);
        assert!(log.contains("\"method\":\"OpenFile\""), "{log}");
        assert!(log.contains("\"app_id\":\"org.example.A\""), "{log}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

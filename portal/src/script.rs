//! Scripted answers for tests: a queue file that only the host side can name
//! (through the portal's own environment), one JSON answer per line, taken
//! from the top. Each question is appended to `<queue>.log` as a JSON line,
//! so tests see what the portal asked and for which app. Apps never reach
//! any of it: a sandbox cannot set the portal's environment or see the file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("the script {path} has no answer left for this question")]
    NoAnswer { path: PathBuf },
    #[error("cannot use the script {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the script {path} has a bad answer ({reason})")]
    BadAnswer { path: PathBuf, reason: String },
}

pub struct ScriptQueue {
    queue: PathBuf,
    /// Questions asked at once (each on a blocking thread of its own) take
    /// turns: each takes the top answer and rewrites the file, which two at
    /// a time would do over each other.
    turn: Mutex<()>,
}

impl ScriptQueue {
    pub fn new(queue: &Path) -> ScriptQueue {
        ScriptQueue {
            queue: queue.to_owned(),
            turn: Mutex::new(()),
        }
    }

    /// Logs `question`, then takes the next answer.
    pub fn answer<Q: Serialize, A: DeserializeOwned>(
        &self,
        question: &Q,
    ) -> Result<A, ScriptError> {
        let _turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        self.log(question)?;
        let text = std::fs::read_to_string(&self.queue).map_err(|e| self.io(e))?;
        let Some((first, rest)) = text
            .split_once('\n')
            .or_else(|| (!text.is_empty()).then_some((text.as_str(), "")))
        else {
            return Err(ScriptError::NoAnswer {
                path: self.queue.clone(),
            });
        };
        let staging = self.queue.with_extension("next");
        std::fs::write(&staging, rest)
            .and_then(|()| std::fs::rename(&staging, &self.queue))
            .map_err(|e| self.io(e))?;
        serde_json::from_str(first).map_err(|e| self.bad(e.to_string()))
    }

    pub fn bad(&self, reason: String) -> ScriptError {
        ScriptError::BadAnswer {
            path: self.queue.clone(),
            reason,
        }
    }

    fn io(&self, source: std::io::Error) -> ScriptError {
        ScriptError::Io {
            path: self.queue.clone(),
            source,
        }
    }

    fn log<Q: Serialize>(&self, question: &Q) -> Result<(), ScriptError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_asked_at_once_each_take_their_own_answer() {
        let dir = std::env::temp_dir().join(format!("appbox-script-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("answers");
        let lines: String = (0..80).map(|n| format!("{n}\n")).collect();
        std::fs::write(&path, lines).unwrap();
        let queue = ScriptQueue::new(&path);
        let mut taken: Vec<u32> = std::thread::scope(|scope| {
            let askers: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        (0..10)
                            .map(|_| queue.answer::<_, u32>(&"question").unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            askers
                .into_iter()
                .flat_map(|asker| asker.join().unwrap())
                .collect()
        });
        taken.sort_unstable();
        assert_eq!(taken, (0..80).collect::<Vec<_>>());
        assert!(matches!(
            queue.answer::<_, u32>(&"one too many"),
            Err(ScriptError::NoAnswer { .. })
        ));
        let log = std::fs::read_to_string(dir.join("answers.log")).unwrap();
        assert_eq!(log.lines().count(), 81);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Dialogs from `appbox-gui`, for hosts without a portal backend: the
//! portal runs `appbox-gui --portal-dialog` from its own directory, writes
//! one request to its stdin and reads one answer from its stdout
//! ([`appbox::portal_dialog`]).
//!
//! The dialog runs without a shell, in `/`, with an environment rebuilt
//! from the portal's own allowlist ([`crate::open_uri::host_env`]), never
//! the app's. What it answers is parsed strictly and bounded, and the
//! chosen files then take the same path as a backend's answer: the
//! portal opens each one itself, without following symbolic links.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use zbus::OwnedVariant;

use appbox::appid::{AppId, AppIdError};
use appbox::portal_dialog::{
    file_uri_path, read_bounded, ConsentAnswer, ConsentRequest, DialogError, FileAction,
    FileChooserAnswer, FileChooserRequest, FileFilter, FilePattern, Request, DIALOG_FLAG,
    MAX_ANSWER_BYTES,
};

use crate::chooser::{Answer, Chooser, ChooserError, Kind, Question};
use crate::consent::{self, Decision, PromptError, Prompter};

/// The store binary, which also shows the portal's dialogs.
pub const GUI_PROGRAM: &str = "appbox-gui";

#[derive(Debug, thiserror::Error)]
pub enum GuiDialogError {
    #[error("cannot start {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot talk to {program}")]
    Pipe {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} ended with {status} without answering")]
    Failed {
        program: PathBuf,
        status: ExitStatus,
    },
    #[error("{program} answered nonsense")]
    Answer {
        program: PathBuf,
        #[source]
        source: DialogError,
    },
    #[error("the request is not one the dialog takes")]
    Request(#[source] DialogError),
    #[error("the caller's app id is not one")]
    AppId(#[from] AppIdError),
    #[error("the app's option {0} has the wrong type")]
    Option(&'static str),
    #[error("the file pattern kind {0} is neither a glob (0) nor a MIME type (1)")]
    PatternKind(u32),
    #[error("the dialog chose {0}, which is not a local file")]
    NotAFile(String),
}

/// `appbox-gui`'s dialogs: its path and the environment it runs with.
#[derive(Debug, Clone)]
pub struct GuiDialogs {
    program: PathBuf,
    env: Vec<(OsString, OsString)>,
}

impl GuiDialogs {
    /// The dialogs of the `appbox-gui` next to this executable, when the
    /// portal's environment names a display and the program is there.
    pub fn find() -> Option<GuiDialogs> {
        let program = std::env::current_exe().ok()?.with_file_name(GUI_PROGRAM);
        GuiDialogs::new(program, std::env::vars_os())
    }

    /// Dialogs from `program`, whose environment comes from `portal_env`;
    /// `None` without a display there or without the program.
    pub fn new(
        program: PathBuf,
        portal_env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Option<GuiDialogs> {
        let env = crate::open_uri::host_env(portal_env);
        let has_display = env.iter().any(|(name, value)| {
            (name == "DISPLAY" || name == "WAYLAND_DISPLAY") && !value.is_empty()
        });
        (has_display && program.is_file()).then_some(GuiDialogs { program, env })
    }

    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Shows the dialog for `request` and returns what it printed, once it
    /// has exited successfully. Blocks until the user answers.
    fn show(&self, request: &Request) -> Result<Vec<u8>, GuiDialogError> {
        let json = request.to_json().map_err(GuiDialogError::Request)?;
        let mut child = Command::new(&self.program)
            .arg(DIALOG_FLAG)
            .env_clear()
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Its complaints belong in the portal's log.
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| GuiDialogError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        let answer = self.talk(&mut child, &json);
        if answer.is_err() {
            let _ = child.kill();
        }
        let status = child.wait().map_err(|source| self.pipe(source))?;
        let failed = || GuiDialogError::Failed {
            program: self.program.clone(),
            status,
        };
        match answer {
            Ok(bytes) if status.success() => Ok(bytes),
            Ok(_) => Err(failed()),
            // A dialog that exited on its own (refusing the request, say)
            // says more through its status than through a broken pipe.
            Err(GuiDialogError::Pipe { .. }) if status.code().is_some() => Err(failed()),
            Err(e) => Err(e),
        }
    }

    fn talk(&self, child: &mut Child, request: &[u8]) -> Result<Vec<u8>, GuiDialogError> {
        if let Some(mut stdin) = child.stdin.take() {
            // Dropping stdin closes it: the dialog reads to its end.
            stdin
                .write_all(request)
                .map_err(|source| self.pipe(source))?;
        }
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| self.pipe(std::io::Error::other("no pipe on the dialog's stdout")))?;
        read_bounded(stdout, MAX_ANSWER_BYTES, "dialog's answer").map_err(|e| self.bad_answer(e))
    }

    fn pipe(&self, source: std::io::Error) -> GuiDialogError {
        GuiDialogError::Pipe {
            program: self.program.clone(),
            source,
        }
    }

    fn bad_answer(&self, source: DialogError) -> GuiDialogError {
        GuiDialogError::Answer {
            program: self.program.clone(),
            source,
        }
    }
}

impl Chooser for GuiDialogs {
    fn choose(&self, question: &Question) -> Result<Answer, ChooserError> {
        let request = file_request(question)?;
        let bytes = self.show(&request)?;
        let answer = FileChooserAnswer::parse(&bytes).map_err(|e| self.bad_answer(e))?;
        Ok(chooser_answer(answer)?)
    }
}

impl Prompter for GuiDialogs {
    fn ask(&self, question: &consent::Question) -> Result<Decision, PromptError> {
        let request = Request::Consent(ConsentRequest {
            app_id: AppId::parse(&question.app_id).map_err(GuiDialogError::from)?,
            table: question.table.clone(),
            id: question.id.clone(),
        });
        let bytes = self.show(&request)?;
        let answer = ConsentAnswer::parse(&bytes).map_err(|e| self.bad_answer(e))?;
        Ok(Decision {
            allow: answer.allow,
            remember: answer.remember,
        })
    }
}

/// The dialog's request for an app's FileChooser call.
pub fn file_request(question: &Question) -> Result<Request, GuiDialogError> {
    let action = match &question.kind {
        Kind::OpenFile {
            multiple,
            directory,
        } => FileAction::Open {
            multiple: *multiple,
            directory: *directory,
        },
        Kind::SaveFile { current_name } => FileAction::Save {
            current_name: current_name.clone(),
        },
        Kind::SaveFiles { files } => FileAction::SaveFiles {
            files: files.clone(),
        },
    };
    Ok(Request::FileChooser(FileChooserRequest {
        app_id: AppId::parse(&question.app_id)?,
        title: question.title.clone(),
        accept_label: string_option(question, "accept_label")?,
        action,
        filters: filters(question)?,
    }))
}

/// The chooser's answer as paths, decoded as a backend's `uris` are.
pub fn chooser_answer(answer: FileChooserAnswer) -> Result<Answer, GuiDialogError> {
    match answer {
        FileChooserAnswer::Cancelled {} => Ok(Answer::Cancelled),
        FileChooserAnswer::Chosen { uris, writable } => {
            let paths = uris
                .iter()
                .map(|uri| file_uri_path(uri).ok_or_else(|| GuiDialogError::NotAFile(uri.clone())))
                .collect::<Result<_, _>>()?;
            Ok(Answer::Chosen { paths, writable })
        }
    }
}

fn string_option(question: &Question, key: &'static str) -> Result<Option<String>, GuiDialogError> {
    question
        .options
        .get(key)
        .map(|value| {
            value
                .try_clone()
                .ok()
                .and_then(|value| String::try_from(value).ok())
                .ok_or(GuiDialogError::Option(key))
        })
        .transpose()
}

/// The app's `filters` (`a(sa(us))`: name, then (0 glob | 1 MIME type, pattern)).
fn filters(question: &Question) -> Result<Vec<FileFilter>, GuiDialogError> {
    let Some(value) = question.options.get("filters") else {
        return Ok(Vec::new());
    };
    let filters: Vec<(String, Vec<(u32, String)>)> = value
        .try_clone()
        .ok()
        .and_then(|value: OwnedVariant| value.try_into().ok())
        .ok_or(GuiDialogError::Option("filters"))?;
    filters
        .into_iter()
        .map(|(name, patterns)| {
            let patterns = patterns
                .into_iter()
                .map(|(kind, pattern)| match kind {
                    0 => Ok(FilePattern::Glob(pattern)),
                    1 => Ok(FilePattern::MimeType(pattern)),
                    other => Err(GuiDialogError::PatternKind(other)),
                })
                .collect::<Result<_, _>>()?;
            Ok(FileFilter { name, patterns })
        })
        .collect()
}

impl From<GuiDialogError> for PromptError {
    fn from(e: GuiDialogError) -> Self {
        PromptError::Dialog(e)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    use zbus::Variant as Value;

    use super::*;

    fn question(kind: Kind, options: HashMap<String, OwnedVariant>) -> Question {
        Question {
            app_id: "org.example.App".into(),
            title: "Open a Text File".into(),
            kind,
            handle: String::new(),
            parent_window: String::new(),
            options,
        }
    }

    fn owned(value: Value<'_>) -> OwnedVariant {
        value.try_into().unwrap()
    }

    #[test]
    fn questions_become_requests_with_the_apps_labels_and_filters() {
        let mut options = HashMap::new();
        options.insert("accept_label".to_owned(), owned(Value::from("_Pick")));
        let filters = vec![(
            "Text".to_owned(),
            vec![(0u32, "*.txt".to_owned()), (1, "text/plain".to_owned())],
        )];
        options.insert("filters".to_owned(), owned(Value::from(filters)));
        let request = file_request(&question(
            Kind::OpenFile {
                multiple: true,
                directory: false,
            },
            options,
        ))
        .unwrap();
        let Request::FileChooser(request) = request else {
            panic!("{request:?}")
        };
        assert_eq!(request.app_id.as_str(), "org.example.App");
        assert_eq!(request.accept_label.as_deref(), Some("_Pick"));
        assert_eq!(
            request.action,
            FileAction::Open {
                multiple: true,
                directory: false
            }
        );
        assert_eq!(
            request.filters,
            [FileFilter {
                name: "Text".into(),
                patterns: vec![
                    FilePattern::Glob("*.txt".into()),
                    FilePattern::MimeType("text/plain".into())
                ]
            }]
        );

        let mut options = HashMap::new();
        options.insert("accept_label".to_owned(), owned(Value::from(7u32)));
        assert!(matches!(
            file_request(&question(Kind::SaveFile { current_name: None }, options)),
            Err(GuiDialogError::Option("accept_label"))
        ));
        let mut options = HashMap::new();
        let filters = vec![("Odd".to_owned(), vec![(2u32, "x".to_owned())])];
        options.insert("filters".to_owned(), owned(Value::from(filters)));
        assert!(matches!(
            file_request(&question(Kind::SaveFile { current_name: None }, options)),
            Err(GuiDialogError::PatternKind(2))
        ));
    }

    #[test]
    fn answers_become_paths_only_for_local_files() {
        assert_eq!(
            chooser_answer(FileChooserAnswer::Chosen {
                uris: vec!["file:///home/ada/a%20b.txt".into()],
                writable: false
            })
            .unwrap(),
            Answer::Chosen {
                paths: vec![PathBuf::from("/home/ada/a b.txt")],
                writable: false
            }
        );
        assert_eq!(
            chooser_answer(FileChooserAnswer::Cancelled {}).unwrap(),
            Answer::Cancelled
        );
        for uri in [
            "sftp://host/x",
            "file://other/x",
            "/etc/passwd",
            "file:///a%00",
        ] {
            assert!(
                chooser_answer(FileChooserAnswer::Chosen {
                    uris: vec![uri.into()],
                    writable: true
                })
                .is_err(),
                "{uri}"
            );
        }
    }

    /// A stand-in for appbox-gui: a script (run without a shell by the
    /// kernel's `#!`) that prints `answer` and exits with `code`.
    fn fake_gui(dir: &Path, name: &str, answer: &str, code: i32) -> GuiDialogs {
        let program = dir.join(name);
        std::fs::write(
            &program,
            format!("#!/bin/sh\ncat >/dev/null\nprintf '%s' '{answer}'\nexit {code}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        GuiDialogs::new(program, [(OsString::from("DISPLAY"), OsString::from(":0"))]).unwrap()
    }

    #[test]
    fn the_dialog_is_found_only_with_a_display_and_a_program() {
        let dir =
            std::env::temp_dir().join(format!("appbox-gui-dialog-find-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let program = fake_gui(&dir, "appbox-gui", "", 0).program().to_owned();
        let env = |pairs: &[(&str, &str)]| -> Vec<(OsString, OsString)> {
            pairs
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect()
        };
        assert!(GuiDialogs::new(program.clone(), env(&[("HOME", "/home/u")])).is_none());
        assert!(GuiDialogs::new(program.clone(), env(&[("DISPLAY", "")])).is_none());
        assert!(GuiDialogs::new(dir.join("missing"), env(&[("DISPLAY", ":0")])).is_none());
        let found = GuiDialogs::new(
            program,
            env(&[
                ("WAYLAND_DISPLAY", "wayland-0"),
                ("LD_PRELOAD", "/evil.so"),
                ("GTK_MODULES", "evil"),
            ]),
        )
        .unwrap();
        let names: Vec<_> = found.env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert!(names.contains(&"WAYLAND_DISPLAY"), "{names:?}");
        assert!(
            !names.contains(&"LD_PRELOAD") && !names.contains(&"GTK_MODULES"),
            "{names:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_dialogs_answers_are_taken_only_when_well_formed() {
        let dir = std::env::temp_dir().join(format!("appbox-gui-dialog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let open = question(
            Kind::OpenFile {
                multiple: false,
                directory: false,
            },
            HashMap::new(),
        );
        let consent = consent::Question {
            app_id: "org.example.App".into(),
            table: "devices".into(),
            id: "kvm".into(),
        };

        let chosen = fake_gui(
            &dir,
            "chosen",
            r#"{"answer": "chosen", "uris": ["file:///tmp/x"], "writable": false}"#,
            0,
        );
        assert_eq!(
            chosen.choose(&open).unwrap(),
            Answer::Chosen {
                paths: vec![PathBuf::from("/tmp/x")],
                writable: false
            }
        );
        let allowed = fake_gui(&dir, "allowed", r#"{"allow": true, "remember": true}"#, 0);
        assert_eq!(
            Prompter::ask(&allowed, &consent).unwrap(),
            Decision {
                allow: true,
                remember: true
            }
        );
        // A consent answer is no file choice, and the other way round.
        assert!(matches!(
            allowed.choose(&open),
            Err(ChooserError::Dialog(GuiDialogError::Answer { .. }))
        ));
        assert!(matches!(
            Prompter::ask(&chosen, &consent),
            Err(PromptError::Dialog(GuiDialogError::Answer { .. }))
        ));
        for (name, answer, code) in [
            ("garbage", "Allow!", 0),
            ("empty", "", 0),
            (
                "extra",
                r#"{"answer": "cancelled", "uris": ["file:///etc/shadow"]}"#,
                0,
            ),
            (
                "remote",
                r#"{"answer": "chosen", "uris": ["http://x/y"], "writable": true}"#,
                0,
            ),
        ] {
            let gui = fake_gui(&dir, name, answer, code);
            assert!(gui.choose(&open).is_err(), "{name}");
        }
        let failed = fake_gui(&dir, "failed", r#"{"answer": "cancelled"}"#, 3);
        assert!(matches!(
            failed.choose(&open),
            Err(ChooserError::Dialog(GuiDialogError::Failed { .. }))
        ));
        let cancelled = fake_gui(&dir, "cancelled", r#"{"answer": "cancelled"}"#, 0);
        assert_eq!(cancelled.choose(&open).unwrap(), Answer::Cancelled);

        // An endless answer is cut off, and the dialog killed.
        let endless = dir.join("endless");
        std::fs::write(&endless, "#!/bin/sh\nexec /usr/bin/yes\n").unwrap();
        std::fs::set_permissions(&endless, std::fs::Permissions::from_mode(0o755)).unwrap();
        let endless =
            GuiDialogs::new(endless, [(OsString::from("DISPLAY"), OsString::from(":0"))]).unwrap();
        assert!(endless.choose(&open).is_err());

        // A request the dialog would refuse is not sent.
        let mut long = open;
        long.title = "x".repeat(appbox::portal_dialog::MAX_TEXT_BYTES + 1);
        assert!(matches!(
            cancelled.choose(&long),
            Err(ChooserError::Dialog(GuiDialogError::Request(_)))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The dialogs `appbox-portal` shows through `appbox-gui` when the host has
//! no portal backend: one JSON request on the dialog's stdin, one JSON
//! answer on its stdout, then it exits.
//!
//! `appbox-gui --portal-dialog` reads a [`Request`]:
//!
//! ```json
//! {"dialog": "file_chooser", "app_id": "org.example.App", "title": "Open a Text File",
//!  "accept_label": "_Open", "action": {"open": {"multiple": false, "directory": false}},
//!  "filters": [{"name": "Text", "patterns": [{"glob": "*.txt"}, {"mime_type": "text/plain"}]}]}
//! {"dialog": "consent", "app_id": "org.example.App", "table": "devices", "id": "kvm"}
//! ```
//!
//! and answers a [`FileChooserAnswer`] or a [`ConsentAnswer`]:
//!
//! ```json
//! {"answer": "chosen", "uris": ["file:///home/ada/a%20b.txt"], "writable": true}
//! {"answer": "cancelled"}
//! {"allow": true, "remember": false}
//! ```
//!
//! The chooser answers as a portal backend does (`uris`, `writable`), so the
//! portal turns its answer into paths exactly as it does a backend's.
//!
//! Both sides parse strictly: unknown fields, missing fields, other
//! variants and oversized messages are errors. `app_id` comes from the
//! portal's records of the calling sandbox; the title, labels, names and
//! filters come from the app, and the dialog shows them as plain text.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::appid::AppId;
use crate::consent::{self, ConsentError};

/// The argument that makes `appbox-gui` show one portal dialog.
pub const DIALOG_FLAG: &str = "--portal-dialog";
/// The largest request a dialog reads.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// The largest answer the portal reads.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// The longest title, label, name or pattern, in bytes.
pub const MAX_TEXT_BYTES: usize = 1024;
/// The most file names SaveFiles may propose.
pub const MAX_FILES: usize = 1024;
/// The most filters, and the most patterns in one filter.
pub const MAX_FILTERS: usize = 64;
pub const MAX_PATTERNS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum DialogError {
    #[error("the {what} is longer than {limit} bytes")]
    TooLong { what: &'static str, limit: usize },
    #[error("the {what} is not what appbox expects")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot read the {what}")]
    Read {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the {field} is longer than {MAX_TEXT_BYTES} bytes")]
    TextTooLong { field: &'static str },
    #[error("the request has more than {limit} {what}")]
    TooMany { what: &'static str, limit: usize },
    #[error("{0} is not a plain file name")]
    NotAName(String),
    #[error("{0} is not a MIME type")]
    NotAMimeType(String),
    #[error("the file pattern {0} has control characters")]
    BadPattern(String),
    #[error("a chosen answer names no file")]
    NothingChosen,
    #[error(transparent)]
    Consent(#[from] ConsentError),
}

/// What a dialog is asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "dialog", rename_all = "snake_case")]
pub enum Request {
    FileChooser(FileChooserRequest),
    Consent(ConsentRequest),
}

/// A file chooser for one of the app's FileChooser calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileChooserRequest {
    /// The asking app, from the portal's records (never from the app).
    pub app_id: AppId,
    pub title: String,
    pub accept_label: Option<String>,
    pub action: FileAction,
    pub filters: Vec<FileFilter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FileAction {
    Open {
        multiple: bool,
        directory: bool,
    },
    /// One file; `current_name` is the name the app proposes.
    Save {
        current_name: Option<String>,
    },
    /// A folder, into which the app saves `files`.
    SaveFiles {
        files: Vec<String>,
    },
}

/// One of the app's filters: a name and what it matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFilter {
    pub name: String,
    pub patterns: Vec<FilePattern>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FilePattern {
    Glob(String),
    MimeType(String),
}

/// Whether the app may have one entry of a consent table (`devices`/`kvm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRequest {
    pub app_id: AppId,
    pub table: String,
    pub id: String,
}

/// What the user did with a file chooser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case", deny_unknown_fields)]
pub enum FileChooserAnswer {
    /// `file://` URIs of absolute host paths; for saving, files that may
    /// not exist yet. `writable` is false when the user opened read-only.
    Chosen { uris: Vec<String>, writable: bool },
    /// A struct variant: serde ignores unknown fields next to a unit variant.
    Cancelled {},
}

/// What the user answered to a consent dialog. Closing it is a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentAnswer {
    pub allow: bool,
    /// Keep the answer for next time.
    pub remember: bool,
}

impl Request {
    /// A request as the dialog reads it: bounded, strict, and checked.
    pub fn parse(bytes: &[u8]) -> Result<Request, DialogError> {
        let request: Request = parse_json(bytes, MAX_REQUEST_BYTES, "dialog request")?;
        request.check()?;
        Ok(request)
    }

    /// The request as the portal writes it, checked as the dialog will.
    pub fn to_json(&self) -> Result<Vec<u8>, DialogError> {
        self.check()?;
        to_json(self, MAX_REQUEST_BYTES, "dialog request")
    }

    /// What serde cannot say: sizes, plain names, known consent entries.
    fn check(&self) -> Result<(), DialogError> {
        match self {
            Request::Consent(request) => {
                consent::check_entry(&request.table, &request.id)?;
                Ok(())
            }
            Request::FileChooser(request) => request.check(),
        }
    }
}

impl FileChooserRequest {
    fn check(&self) -> Result<(), DialogError> {
        check_len("title", &self.title)?;
        if let Some(label) = &self.accept_label {
            check_len("accept label", label)?;
        }
        match &self.action {
            FileAction::Open { .. } => {}
            FileAction::Save { current_name } => {
                if let Some(name) = current_name {
                    check_len("proposed name", name)?;
                }
            }
            FileAction::SaveFiles { files } => {
                if files.len() > MAX_FILES {
                    return Err(DialogError::TooMany {
                        what: "files",
                        limit: MAX_FILES,
                    });
                }
                for name in files {
                    check_len("file name", name)?;
                    check_plain_name(name)?;
                }
            }
        }
        if self.filters.len() > MAX_FILTERS {
            return Err(DialogError::TooMany {
                what: "filters",
                limit: MAX_FILTERS,
            });
        }
        for filter in &self.filters {
            check_len("filter name", &filter.name)?;
            if filter.patterns.len() > MAX_PATTERNS {
                return Err(DialogError::TooMany {
                    what: "patterns in a filter",
                    limit: MAX_PATTERNS,
                });
            }
            for pattern in &filter.patterns {
                pattern.check()?;
            }
        }
        Ok(())
    }
}

impl FilePattern {
    fn check(&self) -> Result<(), DialogError> {
        match self {
            FilePattern::Glob(glob) => {
                check_len("file pattern", glob)?;
                if glob.chars().any(char::is_control) {
                    return Err(DialogError::BadPattern(escaped(glob)));
                }
            }
            FilePattern::MimeType(mime) => {
                check_len("MIME type", mime)?;
                if !is_mime_type(mime) {
                    return Err(DialogError::NotAMimeType(escaped(mime)));
                }
            }
        }
        Ok(())
    }
}

impl FileChooserAnswer {
    /// An answer as the portal reads it: bounded, strict, and a choice
    /// names at least one file.
    pub fn parse(bytes: &[u8]) -> Result<FileChooserAnswer, DialogError> {
        let answer: FileChooserAnswer = parse_json(bytes, MAX_ANSWER_BYTES, "chooser's answer")?;
        if matches!(&answer, FileChooserAnswer::Chosen { uris, .. } if uris.is_empty()) {
            return Err(DialogError::NothingChosen);
        }
        Ok(answer)
    }

    pub fn to_json(&self) -> Result<Vec<u8>, DialogError> {
        to_json(self, MAX_ANSWER_BYTES, "chooser's answer")
    }
}

impl ConsentAnswer {
    pub fn parse(bytes: &[u8]) -> Result<ConsentAnswer, DialogError> {
        parse_json(bytes, MAX_ANSWER_BYTES, "consent answer")
    }

    pub fn to_json(&self) -> Result<Vec<u8>, DialogError> {
        to_json(self, MAX_ANSWER_BYTES, "consent answer")
    }
}

/// Reads `reader` to its end, failing once it holds more than `limit`
/// bytes (without reading further).
pub fn read_bounded(
    reader: impl Read,
    limit: usize,
    what: &'static str,
) -> Result<Vec<u8>, DialogError> {
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut bytes)
        .map_err(|source| DialogError::Read { what, source })?;
    if bytes.len() > limit {
        return Err(DialogError::TooLong { what, limit });
    }
    Ok(bytes)
}

fn parse_json<T: DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
    what: &'static str,
) -> Result<T, DialogError> {
    if bytes.len() > limit {
        return Err(DialogError::TooLong { what, limit });
    }
    serde_json::from_slice(bytes).map_err(|source| DialogError::Json { what, source })
}

fn to_json<T: Serialize>(
    value: &T,
    limit: usize,
    what: &'static str,
) -> Result<Vec<u8>, DialogError> {
    let mut bytes =
        serde_json::to_vec(value).map_err(|source| DialogError::Json { what, source })?;
    bytes.push(b'\n');
    if bytes.len() > limit {
        return Err(DialogError::TooLong { what, limit });
    }
    Ok(bytes)
}

fn check_len(field: &'static str, text: &str) -> Result<(), DialogError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(DialogError::TextTooLong { field });
    }
    Ok(())
}

/// A name that stays inside the folder it is joined to: what a document's
/// name may be (one path component, not `.` or `..`), without control
/// characters.
fn check_plain_name(name: &str) -> Result<(), DialogError> {
    let plain = crate::plan::check_doc_name(name).is_ok() && !name.chars().any(char::is_control);
    if !plain {
        return Err(DialogError::NotAName(escaped(name)));
    }
    Ok(())
}

/// `type/subtype`, in the characters RFC 6838 allows.
fn is_mime_type(text: &str) -> bool {
    let token = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+*".contains(&b))
    };
    text.split_once('/')
        .is_some_and(|(kind, sub)| token(kind) && token(sub))
}

fn escaped(text: &str) -> String {
    crate::text::Escaped(text).to_string()
}

/// `file://` and the path, with every byte outside RFC 3986's unreserved
/// set (and `/`) percent-encoded, as GLib's `g_filename_to_uri` does.
pub fn file_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file://");
    for &byte in path.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            uri.push(byte as char);
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri
}

/// The local path of a `file://` URI (empty or `localhost` host), with
/// percent-escapes decoded; `None` for anything else.
pub fn file_uri_path(uri: &str) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let rest = uri.strip_prefix("file://")?;
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') || rest.contains(['?', '#']) {
        return None;
    }
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return None;
    }
    Some(PathBuf::from(std::ffi::OsString::from_vec(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppId {
        AppId::parse("org.example.App").unwrap()
    }

    fn open_request() -> Request {
        Request::FileChooser(FileChooserRequest {
            app_id: app(),
            title: "Open a <b>Text</b> File".into(),
            accept_label: Some("_Open".into()),
            action: FileAction::Open {
                multiple: true,
                directory: false,
            },
            filters: vec![FileFilter {
                name: "Text".into(),
                patterns: vec![
                    FilePattern::Glob("*.txt".into()),
                    FilePattern::MimeType("text/plain".into()),
                ],
            }],
        })
    }

    #[test]
    fn requests_go_through_json_unchanged() {
        for request in [
            open_request(),
            Request::FileChooser(FileChooserRequest {
                app_id: app(),
                title: "Save".into(),
                accept_label: None,
                action: FileAction::Save {
                    current_name: Some("new.txt".into()),
                },
                filters: Vec::new(),
            }),
            Request::FileChooser(FileChooserRequest {
                app_id: app(),
                title: "Export".into(),
                accept_label: None,
                action: FileAction::SaveFiles {
                    files: vec!["a.png".into(), "b c.png".into()],
                },
                filters: Vec::new(),
            }),
            Request::Consent(ConsentRequest {
                app_id: app(),
                table: "devices".into(),
                id: "kvm".into(),
            }),
        ] {
            let json = request.to_json().unwrap();
            assert_eq!(Request::parse(&json).unwrap(), request);
        }
    }

    #[test]
    fn the_documented_messages_parse() {
        let open = br#"{"dialog": "file_chooser", "app_id": "org.example.App", "title": "Open a Text File",
            "accept_label": "_Open", "action": {"open": {"multiple": false, "directory": false}},
            "filters": [{"name": "Text", "patterns": [{"glob": "*.txt"}, {"mime_type": "text/plain"}]}]}"#;
        assert!(matches!(
            Request::parse(open).unwrap(),
            Request::FileChooser(FileChooserRequest {
                action: FileAction::Open {
                    multiple: false,
                    directory: false
                },
                ..
            })
        ));
        let consent =
            br#"{"dialog": "consent", "app_id": "org.example.App", "table": "devices", "id": "kvm"}"#;
        assert!(matches!(
            Request::parse(consent).unwrap(),
            Request::Consent(_)
        ));
        assert_eq!(
            FileChooserAnswer::parse(
                br#"{"answer": "chosen", "uris": ["file:///home/ada/a%20b.txt"], "writable": true}"#
            )
            .unwrap(),
            FileChooserAnswer::Chosen {
                uris: vec!["file:///home/ada/a%20b.txt".into()],
                writable: true
            }
        );
        assert_eq!(
            FileChooserAnswer::parse(br#"{"answer": "cancelled"}"#).unwrap(),
            FileChooserAnswer::Cancelled {}
        );
        assert_eq!(
            ConsentAnswer::parse(br#"{"allow": true, "remember": false}"#).unwrap(),
            ConsentAnswer {
                allow: true,
                remember: false
            }
        );
    }

    #[test]
    fn garbage_and_unknown_fields_are_refused() {
        let requests: &[&[u8]] = &[
            b"",
            b"\xff\xfe",
            b"null",
            b"[]",
            b"{\"dialog\": \"format_disk\"}",
            // Unknown fields, at every level.
            br#"{"dialog": "consent", "app_id": "org.example.App", "table": "devices", "id": "kvm", "allow": true}"#,
            br#"{"dialog": "file_chooser", "app_id": "org.example.App", "title": "t", "accept_label": null, "action": {"open": {"multiple": false, "directory": false, "path": "/etc"}}, "filters": []}"#,
            br#"{"dialog": "file_chooser", "app_id": "org.example.App", "title": "t", "accept_label": null, "action": {"open": {"multiple": false, "directory": false}}, "filters": [], "current_folder": "/etc"}"#,
            br#"{"dialog": "file_chooser", "app_id": "org.example.App", "title": "t", "accept_label": null, "action": {"open": {"multiple": false, "directory": false}}, "filters": [{"name": "x", "patterns": [], "default": true}]}"#,
            // Missing fields, wrong types, two actions.
            br#"{"dialog": "consent", "app_id": "org.example.App", "table": "devices"}"#,
            br#"{"dialog": "file_chooser", "app_id": "org.example.App", "title": 7, "accept_label": null, "action": {"open": {"multiple": false, "directory": false}}, "filters": []}"#,
            br#"{"dialog": "file_chooser", "app_id": "org.example.App", "title": "t", "accept_label": null, "action": {"open": {"multiple": false, "directory": false}, "save": {"current_name": null}}, "filters": []}"#,
            // An app id that is not one.
            br#"{"dialog": "consent", "app_id": "../../etc", "table": "devices", "id": "kvm"}"#,
            // Trailing garbage.
            br#"{"dialog": "consent", "app_id": "org.example.App", "table": "devices", "id": "kvm"} x"#,
        ];
        for bytes in requests {
            assert!(
                Request::parse(bytes).is_err(),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        let answers: &[&[u8]] = &[
            b"",
            b"yes",
            br#"{"answer": "chosen", "uris": ["file:///a"], "writable": true, "also": 1}"#,
            br#"{"answer": "chosen", "uris": ["file:///a"]}"#,
            br#"{"answer": "chosen", "uris": [], "writable": true}"#,
            br#"{"answer": "cancelled", "uris": ["file:///a"]}"#,
            br#"{"answer": "allow"}"#,
            br#"{"allow": true, "remember": false}"#,
        ];
        for bytes in answers {
            assert!(
                FileChooserAnswer::parse(bytes).is_err(),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        for bytes in [
            &br#"{"allow": true}"#[..],
            br#"{"allow": "yes", "remember": false}"#,
            br#"{"allow": true, "remember": false, "forever": true}"#,
            br#"{"answer": "cancelled"}"#,
        ] {
            assert!(
                ConsentAnswer::parse(bytes).is_err(),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn oversized_messages_and_texts_are_refused() {
        let mut big = br#"{"answer": "cancelled"}"#.to_vec();
        big.resize(MAX_ANSWER_BYTES + 1, b' ');
        assert!(matches!(
            FileChooserAnswer::parse(&big),
            Err(DialogError::TooLong { .. })
        ));
        assert!(matches!(
            read_bounded(&big[..], MAX_ANSWER_BYTES, "answer"),
            Err(DialogError::TooLong { .. })
        ));
        assert_eq!(
            read_bounded(&big[..MAX_ANSWER_BYTES], MAX_ANSWER_BYTES, "answer")
                .unwrap()
                .len(),
            MAX_ANSWER_BYTES
        );
        let mut request = br#"{"dialog": "consent", "app_id": "org.example.App", "table": "devices", "id": "kvm"}"#.to_vec();
        request.resize(MAX_REQUEST_BYTES + 1, b' ');
        assert!(matches!(
            Request::parse(&request),
            Err(DialogError::TooLong { .. })
        ));

        let Request::FileChooser(mut chooser) = open_request() else {
            unreachable!()
        };
        chooser.title = "x".repeat(MAX_TEXT_BYTES + 1);
        let long_title = Request::FileChooser(chooser.clone());
        assert!(matches!(
            long_title.to_json(),
            Err(DialogError::TextTooLong { field: "title" })
        ));
        // The dialog checks too, whatever wrote the request.
        let json = serde_json::to_vec(&long_title).unwrap();
        assert!(Request::parse(&json).is_err());
        chooser.title = "t".into();
        chooser.filters = vec![
            FileFilter {
                name: "f".into(),
                patterns: Vec::new()
            };
            MAX_FILTERS + 1
        ];
        assert!(matches!(
            Request::FileChooser(chooser).to_json(),
            Err(DialogError::TooMany { .. })
        ));
    }

    #[test]
    fn names_patterns_and_consent_entries_are_checked() {
        let save_files = |files: &[&str]| {
            Request::FileChooser(FileChooserRequest {
                app_id: app(),
                title: "t".into(),
                accept_label: None,
                action: FileAction::SaveFiles {
                    files: files.iter().map(|f| f.to_string()).collect(),
                },
                filters: Vec::new(),
            })
        };
        assert!(save_files(&["a.txt", "..a", "b c"]).check().is_ok());
        for bad in ["", ".", "..", "../x", "a/b", "/etc/passwd", "a\nb", "a\0b"] {
            assert!(
                matches!(save_files(&[bad]).check(), Err(DialogError::NotAName(_))),
                "{bad:?}"
            );
        }
        let filter = |pattern: FilePattern| {
            Request::FileChooser(FileChooserRequest {
                app_id: app(),
                title: "t".into(),
                accept_label: None,
                action: FileAction::Open {
                    multiple: false,
                    directory: false,
                },
                filters: vec![FileFilter {
                    name: "f".into(),
                    patterns: vec![pattern],
                }],
            })
        };
        assert!(filter(FilePattern::MimeType("image/svg+xml".into()))
            .check()
            .is_ok());
        for bad in ["text", "text/", "/plain", "text/plain; charset=x", "a/b/c"] {
            assert!(
                filter(FilePattern::MimeType(bad.into())).check().is_err(),
                "{bad}"
            );
        }
        assert!(filter(FilePattern::Glob("*.\u{1b}[2J".into()))
            .check()
            .is_err());
        let consent = |table: &str, id: &str| {
            Request::Consent(ConsentRequest {
                app_id: app(),
                table: table.into(),
                id: id.into(),
            })
        };
        assert!(consent("devices", "camera").check().is_ok());
        assert!(consent("devices", "root").check().is_err());
        assert!(consent("secrets", "kvm").check().is_err());
    }
}

//! `metadata.toml`: what a deployed or unpacked app is and what it may do.
//!
//! ```toml
//! id = "org.example.Hello"
//! name = "Hello"
//! command = "hello"
//! runtime = "host"
//! permissions = ["--share=network", "--filesystem=xdg-documents:ro"]
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::appid::AppId;
use crate::permissions::{Change, PermissionError};
use crate::text::{check_line, TextError};

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("cannot read {file}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Syntax { file: PathBuf, message: String },
    #[error("{file}: field `{field}` {problem}")]
    Field {
        file: PathBuf,
        field: String,
        problem: String,
    },
}

/// The runtime that supplies `/usr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runtime {
    /// The host's own `/usr`.
    Host,
    /// An installed runtime, such as `org.appbox.Platform`.
    Installed(AppId),
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Runtime::Host => f.write_str("host"),
            Runtime::Installed(id) => write!(f, "{id}"),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetadata {
    id: String,
    name: String,
    command: String,
    runtime: String,
    #[serde(default)]
    permissions: Vec<String>,
}

/// Validated metadata. Every string in it has passed the text checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppMetadata {
    pub id: AppId,
    pub name: String,
    /// The command to start, relative to `/app/bin` or absolute inside the sandbox.
    pub command: String,
    pub runtime: Runtime,
    pub permissions: Vec<Change>,
}

impl AppMetadata {
    /// Reads `file`, which must be a regular file (a deployment from a remote
    /// could make it a symlink to some host file) of at most 1 MiB.
    pub fn load(file: &Path) -> Result<Self, MetadataError> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        const MAX_BYTES: u64 = 1 << 20;
        let read_error = |source| MetadataError::Read {
            file: file.to_owned(),
            source,
        };
        let handle = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(file)
            .map_err(read_error)?;
        let meta = handle.metadata().map_err(read_error)?;
        if !meta.is_file() || meta.len() > MAX_BYTES {
            return Err(MetadataError::Field {
                file: file.to_owned(),
                field: "(file)".into(),
                problem: format!("must be a regular file of at most {MAX_BYTES} bytes"),
            });
        }
        let mut text = String::new();
        handle
            .take(MAX_BYTES)
            .read_to_string(&mut text)
            .map_err(read_error)?;
        Self::parse(&text, file)
    }

    /// Parses metadata text; `file` is only used to name the source in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self, MetadataError> {
        // TOML allows escapes such as \u0000 inside strings, so the raw text check
        // alone is not enough: every decoded string is checked again below.
        let raw: RawMetadata = toml::from_str(text).map_err(|e| MetadataError::Syntax {
            file: file.to_owned(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        let field = |field: &str, problem: String| MetadataError::Field {
            file: file.to_owned(),
            field: field.to_owned(),
            problem,
        };
        let text_field = |name: &str, value: &str| {
            check_line(value).map_err(|e: TextError| field(name, e.to_string()))
        };

        text_field("id", &raw.id)?;
        let id = AppId::parse(&raw.id).map_err(|e| field("id", format!("is invalid: {e}")))?;
        text_field("name", &raw.name)?;
        text_field("command", &raw.command)?;
        validate_command(&raw.command).map_err(|p| field("command", p.to_owned()))?;
        text_field("runtime", &raw.runtime)?;
        let runtime = match raw.runtime.as_str() {
            "host" => Runtime::Host,
            other => Runtime::Installed(
                AppId::parse(other).map_err(|e| field("runtime", format!("is invalid: {e}")))?,
            ),
        };
        let permissions = raw
            .permissions
            .iter()
            .enumerate()
            .map(|(i, arg)| {
                Change::parse(arg).map_err(|e: PermissionError| {
                    field(&format!("permissions[{i}]"), e.to_string())
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(AppMetadata {
            id,
            name: raw.name,
            command: raw.command,
            runtime,
            permissions,
        })
    }
}

/// A command is a program name or an absolute path inside the sandbox. It never
/// starts with `-`, so nothing downstream can read it as an option (CVE-2024-32462).
pub fn validate_command(command: &str) -> Result<(), &'static str> {
    if command.starts_with('-') {
        return Err("must not start with '-'");
    }
    if command.is_empty() || command.ends_with('/') {
        return Err("must name a program");
    }
    if command.split('/').any(|part| part == "..") {
        return Err("must not contain '..'");
    }
    if command.contains('/') && !command.starts_with('/') {
        return Err("must be a name in /app/bin or an absolute path");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AppMetadata, String> {
        AppMetadata::parse(text, Path::new("/apps/x/metadata.toml")).map_err(|e| e.to_string())
    }

    const GOOD: &str = r#"
id = "org.example.Hello"
name = "Hello"
command = "hello"
runtime = "host"
permissions = ["--share=network", "filesystem=xdg-documents:ro"]
"#;

    #[test]
    fn parses_good_metadata() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.id.as_str(), "org.example.Hello");
        assert_eq!(m.runtime, Runtime::Host);
        assert_eq!(m.permissions.len(), 2);
    }

    #[test]
    fn errors_name_file_field_and_problem() {
        let cases = [
            (
                GOOD.replace("org.example.Hello", "../x"),
                "field `id` is invalid",
            ),
            (
                GOOD.replace("\"Hello\"", "\"He\\u0000llo\""),
                "field `name` contains a NUL byte",
            ),
            (
                GOOD.replace("\"Hello\"", "\"\\u001b[2J\""),
                "field `name` contains an escape",
            ),
            (
                GOOD.replace("\"hello\"", "\"--bind=/\""),
                "field `command` must not start with '-'",
            ),
            (
                GOOD.replace("\"hello\"", "\"../../bin/sh\""),
                "field `command`",
            ),
            (
                GOOD.replace("--share=network", "--share=everything"),
                "field `permissions[0]`",
            ),
            (
                GOOD.replace("xdg-documents:ro", "/etc/passwd"),
                "field `permissions[1]`",
            ),
            (
                GOOD.replace("\"host\"", "\"org..Platform\""),
                "field `runtime`",
            ),
            (format!("{GOOD}\nextra = 1"), "unknown field `extra`"),
            (
                GOOD.replace("command = \"hello\"\n", ""),
                "missing field `command`",
            ),
            ("id = ".to_owned(), "metadata.toml"),
        ];
        for (text, expected) in cases {
            let err = parse(&text).unwrap_err();
            assert!(err.starts_with("/apps/x/metadata.toml"), "{err}");
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    #[test]
    fn a_symlinked_or_special_metadata_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("appbox-metadata-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let real = dir.join("real.toml");
        std::fs::write(&real, GOOD).unwrap();
        AppMetadata::load(&real).unwrap();
        let link = dir.join("metadata.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = AppMetadata::load(&link).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
        let err = AppMetadata::load(&dir).unwrap_err();
        assert!(err.to_string().contains("regular file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

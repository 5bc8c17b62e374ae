//! Application ids: reverse-DNS names such as `org.example.App`.
//!
//! The rules are Flatpak's (which follow D-Bus well-known names): at least three
//! elements, each starting with a letter or `_`, made of ASCII letters, digits, `_`
//! and `-` (the last element without `-`), at most 255 bytes. An id is used as a
//! path component, so these rules also keep `..`, `/` and control bytes out.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::text::Escaped;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppIdError {
    #[error("app id {id} is too long ({len} bytes, at most 255)")]
    TooLong { id: String, len: usize },
    #[error("app id {id} needs at least three dot-separated elements, such as org.example.App")]
    TooFewElements { id: String },
    #[error("app id {id} has an empty element")]
    EmptyElement { id: String },
    #[error("app id {id}: element {element} must start with a letter or '_'")]
    BadStart { id: String, element: String },
    #[error("app id {id}: element {element} may only hold ASCII letters, digits, '_' and '-'")]
    BadCharacter { id: String, element: String },
    #[error("app id {id}: the last element may not contain '-'")]
    DashInLast { id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppId(String);

impl AppId {
    pub fn parse(id: &str) -> Result<Self, AppIdError> {
        let quoted = || Escaped(id).to_string();
        if id.len() > 255 {
            return Err(AppIdError::TooLong {
                id: quoted(),
                len: id.len(),
            });
        }
        let elements: Vec<&str> = id.split('.').collect();
        if elements.len() < 3 {
            return Err(AppIdError::TooFewElements { id: quoted() });
        }
        for element in &elements {
            let Some(first) = element.chars().next() else {
                return Err(AppIdError::EmptyElement { id: quoted() });
            };
            if !(first.is_ascii_alphabetic() || first == '_') {
                return Err(AppIdError::BadStart {
                    id: quoted(),
                    element: Escaped(element).to_string(),
                });
            }
            if !element
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(AppIdError::BadCharacter {
                    id: quoted(),
                    element: Escaped(element).to_string(),
                });
            }
        }
        if elements.last().is_some_and(|last| last.contains('-')) {
            return Err(AppIdError::DashInLast { id: quoted() });
        }
        Ok(AppId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for AppId {
    type Error = AppIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        AppId::parse(&value)
    }
}

impl From<AppId> for String {
    fn from(id: AppId) -> String {
        id.0
    }
}

impl std::str::FromStr for AppId {
    type Err = AppIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AppId::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_reverse_dns() {
        for id in [
            "org.example.App",
            "org.gnome.Text_Editor",
            "io.github.some-user.Tool2",
        ] {
            assert_eq!(AppId::parse(id).map(|a| a.to_string()), Ok(id.to_owned()));
        }
    }

    #[test]
    fn refuses_traversal_and_garbage() {
        for id in [
            "../x",
            "org.example",
            "org..App",
            "org.example.App/../../x",
            "org.example.1App",
            "org.example.my-app",
            "org.exa\nmple.App",
            "org.example.App\0",
            ".org.example.App",
            "org.example.App.",
            "",
        ] {
            assert!(AppId::parse(id).is_err(), "{id:?} must be refused");
        }
        assert!(AppId::parse(&format!("org.example.{}", "a".repeat(250))).is_err());
    }

    #[test]
    fn error_names_the_id_escaped() {
        let err = AppId::parse("org.ex\u{1b}[31m.App")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\\u{1b}"), "{err}");
    }
}

//! Checks on text that comes from apps, manifests and remotes.
//!
//! A NUL byte once hid permissions from Flatpak's prompt while they still applied
//! (CVE-2021-43860), and terminal escapes rewrote the displayed permission list
//! (CVE-2023-28101). appbox refuses both before anything else looks at the text.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("contains a NUL byte at offset {0}")]
    Nul(usize),
    #[error("contains an escape character (ESC) at offset {0}")]
    Escape(usize),
    #[error("contains the control character U+{code:04X} at offset {offset}")]
    Control { offset: usize, code: u32 },
    #[error("is empty")]
    Empty,
}

/// Refuse NUL, ESC and every other control character (C0, DEL and C1).
///
/// `allow_newlines` permits `\n` and `\t`, for long descriptions only.
pub fn check_text(text: &str, allow_newlines: bool) -> Result<(), TextError> {
    for (offset, c) in text.char_indices() {
        match c {
            '\0' => return Err(TextError::Nul(offset)),
            '\u{1b}' => return Err(TextError::Escape(offset)),
            '\n' | '\t' if allow_newlines => {}
            c if c.is_control() => {
                return Err(TextError::Control {
                    offset,
                    code: c as u32,
                })
            }
            // Bidirectional overrides can make displayed text differ from what applies.
            c if is_bidi_control(c) => {
                return Err(TextError::Control {
                    offset,
                    code: c as u32,
                })
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Displays untrusted text as it is, except that control characters and bidi
/// overrides are shown as escapes: for listings of what a remote or app said.
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() || is_bidi_control(c) {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

/// Like [`check_text`] with no newlines, and the text must not be empty.
pub fn check_line(text: &str) -> Result<(), TextError> {
    if text.is_empty() {
        return Err(TextError::Empty);
    }
    check_text(text, false)
}

/// Displays untrusted text with every control character escaped, for error
/// messages that quote what was refused.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_debug())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_passes() {
        assert_eq!(check_line("Text Editor (GTK4)"), Ok(()));
        assert_eq!(check_text("line one\nline two", true), Ok(()));
    }

    #[test]
    fn nul_escape_and_controls_are_refused() {
        assert_eq!(check_line("a\0b"), Err(TextError::Nul(1)));
        assert_eq!(check_line("\u{1b}[2J"), Err(TextError::Escape(0)));
        assert_eq!(
            check_line("a\nb"),
            Err(TextError::Control {
                offset: 1,
                code: 10
            })
        );
        assert!(check_line("x\u{9b}31m").is_err(), "C1 CSI");
        assert!(check_line("\u{202e}txt.exe").is_err(), "bidi override");
        assert_eq!(check_line(""), Err(TextError::Empty));
    }

    #[test]
    fn escaped_display_shows_controls() {
        assert_eq!(Escaped("a\u{1b}b").to_string(), "\"a\\u{1b}b\"");
        assert_eq!(
            Shown("a \u{1b}[2J\u{202e}b").to_string(),
            "a \\u{1b}[2J\\u{202e}b"
        );
    }
}

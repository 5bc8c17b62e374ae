//! The verdict of one check, and the output primitives.
//!
//! Output never panics: if stdout or stderr is closed the line is dropped, because the probe's
//! job is to keep going and report through its exit status.

use std::io::Write;

/// What one check observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub passed: bool,
    pub detail: String,
    /// Lines printed after the verdict line (used by `env` and `args`).
    pub after: Vec<String>,
}

impl Outcome {
    pub fn pass(detail: impl Into<String>) -> Self {
        Self {
            passed: true,
            detail: detail.into(),
            after: Vec::new(),
        }
    }

    pub fn fail(detail: impl Into<String>) -> Self {
        Self {
            passed: false,
            detail: detail.into(),
            after: Vec::new(),
        }
    }

    /// Passes when `passed` is true, fails otherwise, with the same detail either way.
    pub fn verdict(passed: bool, detail: impl Into<String>) -> Self {
        if passed {
            Self::pass(detail)
        } else {
            Self::fail(detail)
        }
    }

    pub fn with_after(mut self, after: Vec<String>) -> Self {
        self.after = after;
        self
    }
}

/// Writes raw bytes to stdout, ignoring errors.
pub fn out_bytes(bytes: &[u8]) {
    let _ = std::io::stdout().lock().write_all(bytes);
}

/// Writes one line to stdout, ignoring errors.
pub fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(line.as_bytes());
    let _ = stdout.write_all(b"\n");
}

/// Writes raw bytes to stderr, ignoring errors.
pub fn err_bytes(bytes: &[u8]) {
    let _ = std::io::stderr().lock().write_all(bytes);
}

/// Flushes stdout, ignoring errors. Call before `_exit`, `fork` or anything that may kill us.
pub fn flush() {
    let _ = std::io::stdout().lock().flush();
}

/// Escapes control characters so that text from the command line or the file system cannot
/// break the one-line-per-check format.
pub fn printable(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_control_characters() {
        assert_eq!(printable("a\nb\tc\u{1b}[0m"), "a\\nb\\tc\\u{1b}[0m");
        assert_eq!(printable("/plain/path"), "/plain/path");
    }
}

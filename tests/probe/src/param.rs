//! Parsing command-line arguments: `check` or `check=PARAM`.
//!
//! Arguments are `OsStr`s, because paths need not be UTF-8 and `std::env::args` would panic on
//! them. A parse error becomes a FAIL outcome, never a panic.

use crate::report::{printable, Outcome};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// Splits `name=param` at the first `=`. A name that is not UTF-8 is returned as `None`,
/// which the dispatcher reports as an unknown check.
pub fn split_arg(arg: &OsStr) -> (Option<&str>, Option<&OsStr>) {
    let bytes = arg.as_bytes();
    let (name, param) = match bytes.iter().position(|&b| b == b'=') {
        Some(at) => (&bytes[..at], Some(OsStr::from_bytes(&bytes[at + 1..]))),
        None => (bytes, None),
    };
    (std::str::from_utf8(name).ok(), param)
}

/// Splits a parameter at the first `separator`, e.g. `VAR=VALUE` or `PATH:TEXT`.
pub fn split_param(param: &OsStr, separator: u8) -> Option<(&OsStr, &OsStr)> {
    let bytes = param.as_bytes();
    let at = bytes.iter().position(|&b| b == separator)?;
    Some((
        OsStr::from_bytes(&bytes[..at]),
        OsStr::from_bytes(&bytes[at + 1..]),
    ))
}

/// The parameter as UTF-8 text.
pub fn text(param: &OsStr) -> Result<&str, Outcome> {
    param
        .to_str()
        .ok_or_else(|| Outcome::fail("parameter is not UTF-8"))
}

/// A positive process id. Zero and negative numbers would address process groups.
pub fn pid(param: &OsStr) -> Result<libc::pid_t, Outcome> {
    let text = text(param)?;
    match text.parse::<libc::pid_t>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(Outcome::fail(format!(
            "bad pid {:?}: expected a positive number",
            printable(text)
        ))),
    }
}

/// A number of type `T`, with a description of what was expected for the error.
pub fn number<T: std::str::FromStr>(param: &OsStr, what: &str) -> Result<T, Outcome> {
    let text = text(param)?;
    text.parse::<T>().map_err(|_| {
        Outcome::fail(format!(
            "bad parameter {:?}: expected {what}",
            printable(text)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(text: &str) -> &OsStr {
        OsStr::new(text)
    }

    #[test]
    fn splits_name_and_parameter() {
        assert_eq!(split_arg(os("caps")), (Some("caps"), None));
        assert_eq!(
            split_arg(os("hidden=/etc/shadow")),
            (Some("hidden"), Some(os("/etc/shadow")))
        );
        assert_eq!(split_arg(os("env=A=B=C")), (Some("env"), Some(os("A=B=C"))));
        assert_eq!(split_arg(os("print=")), (Some("print"), Some(os(""))));
        assert_eq!(split_arg(os("--bind=/")), (Some("--bind"), Some(os("/"))));
    }

    #[test]
    fn non_utf8_names_are_not_checks() {
        let arg = OsStr::from_bytes(b"\xffcaps=x");
        assert_eq!(split_arg(arg), (None, Some(os("x"))));
    }

    #[test]
    fn splits_parameters() {
        assert_eq!(split_param(os("A=B=C"), b'='), Some((os("A"), os("B=C"))));
        assert_eq!(
            split_param(os("/etc/os-release:ID=debian"), b':'),
            Some((os("/etc/os-release"), os("ID=debian")))
        );
        assert_eq!(split_param(os("nothing"), b':'), None);
    }

    #[test]
    fn parses_pids() {
        assert_eq!(pid(os("42")), Ok(42));
        assert!(pid(os("0")).is_err());
        assert!(pid(os("-1")).is_err());
        assert!(pid(os("x")).is_err());
        assert!(pid(os("")).is_err());
    }

    #[test]
    fn parses_numbers() {
        assert_eq!(number::<u8>(os("3"), "an exit status"), Ok(3));
        assert!(number::<u8>(os("256"), "an exit status").is_err());
    }
}

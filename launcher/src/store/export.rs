//! Exported launchers: an installed app's `.desktop` file, icon and metainfo,
//! copied to `~/.local/share/appbox/exports/share` for the desktop to find.
//!
//! The desktop file came from a remote and the desktop runs it on the host,
//! outside any sandbox. So every `Exec=` is rewritten to `appbox run ID`, keys
//! that would start something else are dropped, and arguments are passed only
//! when they are plain words or field codes.

use std::path::Path;

use crate::appid::AppId;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("the desktop file of {id} has no [Desktop Entry] group with an Exec line")]
    NoExec { id: String },
    #[error("the desktop file of {id}, line {line}: {problem}")]
    Line {
        id: String,
        line: usize,
        problem: String,
    },
}

/// Keys that would make the desktop start something other than `appbox run`.
const DROPPED_KEYS: &[&str] = &["TryExec", "DBusActivatable", "X-GNOME-Autostart-Phase"];

fn is_plain_word(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"%_.,:/=+-@".contains(&b))
}

/// The program that starts appbox in an Exec line: the absolute path when it
/// needs no quoting, else `appbox` from PATH.
fn launcher_word(appbox: &Path) -> String {
    let text = appbox.to_string_lossy();
    if appbox.is_absolute() && is_plain_word(&text) && !text.contains('%') {
        text.into_owned()
    } else {
        "appbox".to_owned()
    }
}

/// Rewrites a desktop file so that every Exec runs the app through appbox.
pub fn rewrite_desktop(text: &str, id: &AppId, appbox: &Path) -> Result<String, ExportError> {
    let launcher = launcher_word(appbox);
    let mut out = String::with_capacity(text.len() + 64);
    let mut saw_exec = false;
    for (index, line) in text.lines().enumerate() {
        let bad = |problem: String| ExportError::Line {
            id: id.to_string(),
            line: index + 1,
            problem,
        };
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(bad("contains a control character".into()));
        }
        let key = line.split('=').next().unwrap_or("").trim();
        if DROPPED_KEYS.contains(&key) {
            continue;
        }
        let Some(value) = line.strip_prefix("Exec=") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let mut words = value.split_whitespace();
        let program = words.next().ok_or_else(|| bad("Exec is empty".into()))?;
        let program = program.rsplit('/').next().unwrap_or(program);
        if !is_plain_word(program) || program.contains('%') || program.starts_with('-') {
            return Err(bad(format!("Exec names an unusual program {program:?}")));
        }
        let args: Vec<&str> = words.collect();
        if let Some(arg) = args.iter().find(|a| !is_plain_word(a)) {
            return Err(bad(format!(
                "Exec has an argument that needs quoting ({arg:?}); appbox exports only plain words"
            )));
        }
        saw_exec = true;
        out.push_str(&format!("Exec={launcher} run --command={program} {id}"));
        if !args.is_empty() {
            out.push_str(" -- ");
            out.push_str(&args.join(" "));
        }
        out.push('\n');
    }
    if !saw_exec {
        return Err(ExportError::NoExec { id: id.to_string() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> AppId {
        AppId::parse("org.example.Notes").unwrap()
    }

    #[test]
    fn exec_lines_run_through_appbox() {
        let text = "[Desktop Entry]\nName=Notes\nExec=/usr/bin/notes --new-window %U\nTryExec=notes\nDBusActivatable=true\n\n[Desktop Action new]\nExec=notes --new\n";
        let out = rewrite_desktop(text, &id(), Path::new("/usr/bin/appbox")).unwrap();
        assert_eq!(
            out,
            "[Desktop Entry]\nName=Notes\nExec=/usr/bin/appbox run --command=notes org.example.Notes -- --new-window %U\n\n[Desktop Action new]\nExec=/usr/bin/appbox run --command=notes org.example.Notes -- --new\n"
        );
    }

    #[test]
    fn hostile_exec_lines_are_refused() {
        for exec in [
            "Exec=sh -c \"rm -rf ~\"",
            "Exec=notes `id`",
            "Exec=notes $(id)",
            "Exec=notes ;reboot",
            "Exec=",
            "Exec=--help",
            "Exec=notes\u{1b}[2J",
        ] {
            let text = format!("[Desktop Entry]\n{exec}\n");
            assert!(
                rewrite_desktop(&text, &id(), Path::new("/usr/bin/appbox")).is_err(),
                "{exec:?}"
            );
        }
        assert!(matches!(
            rewrite_desktop(
                "[Desktop Entry]\nName=x\n",
                &id(),
                Path::new("/usr/bin/appbox")
            ),
            Err(ExportError::NoExec { .. })
        ));
    }

    #[test]
    fn an_odd_appbox_path_falls_back_to_path_lookup() {
        let out = rewrite_desktop(
            "[Desktop Entry]\nExec=notes\n",
            &id(),
            Path::new("/opt/my tools/appbox"),
        )
        .unwrap();
        assert_eq!(
            out,
            "[Desktop Entry]\nExec=appbox run --command=notes org.example.Notes\n"
        );
    }
}

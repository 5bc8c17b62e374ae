//! Exported launchers: an installed app's `.desktop` file, icon and metainfo,
//! copied to `~/.local/share/appbox/exports/share` for the desktop to find.
//!
//! The desktop file came from a remote and the desktop runs it on the host,
//! outside any sandbox. So every `Exec=` is rewritten to `appbox run ID`,
//! keeping only the standard file and URL field codes (never Flatpak's `@@`
//! markers or other options, CVE-2021-21381), and keys that would start
//! something else are dropped.
//!
//! Only files named after the app are exported: `ID.desktop` or `ID.*.desktop`,
//! icons `ID.png`/`ID.svg` (or `ID.*`) in a hicolor size directory, with PNGs of
//! the size their directory says, and `ID.metainfo.xml`. They are read from the
//! deployment fd-relative, refusing symlinks, with a size limit.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::appid::AppId;
use crate::sandbox::sys::{openat2, RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot read {path} from the deployment of {id}")]
    Read {
        id: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{id} exports {path}, which {problem}")]
    Refused {
        id: String,
        path: PathBuf,
        problem: String,
    },
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

/// The field codes an exported Exec keeps: files and URLs, one or many.
const FIELD_CODES: &[&str] = &["%f", "%F", "%u", "%U"];

/// The largest file an app may export.
pub const MAX_EXPORT_BYTES: u64 = 1 << 20;

/// hicolor icon directories appbox exports to, with the PNG size each means.
const ICON_DIRS: &[(&str, Option<u32>)] = &[
    ("scalable", None),
    ("16x16", Some(16)),
    ("24x24", Some(24)),
    ("32x32", Some(32)),
    ("48x48", Some(48)),
    ("64x64", Some(64)),
    ("128x128", Some(128)),
    ("256x256", Some(256)),
    ("512x512", Some(512)),
];

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
        // Only field codes go on; they become the app's arguments after `--`.
        let codes: Vec<&str> = words.filter(|w| FIELD_CODES.contains(w)).collect();
        saw_exec = true;
        out.push_str(&format!("Exec={launcher} run --command={program} {id}"));
        if !codes.is_empty() {
            out.push_str(" -- ");
            out.push_str(&codes.join(" "));
        }
        out.push('\n');
    }
    if !saw_exec {
        return Err(ExportError::NoExec { id: id.to_string() });
    }
    Ok(out)
}

/// One file to export, relative to `exports/share`, with its final contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    pub rel: PathBuf,
    pub contents: Vec<u8>,
}

/// Whether `name` is `ID.EXT` or `ID.SOMETHING.EXT`.
fn named_after(id: &AppId, name: &str, ext: &str) -> bool {
    let Some(stem) = name.strip_suffix(ext) else {
        return false;
    };
    let stem = match stem.strip_prefix(id.as_str()) {
        Some(rest) => rest,
        None => return false,
    };
    stem.is_empty()
        || stem.strip_prefix('.').is_some_and(|extra| {
            !extra.is_empty()
                && extra
                    .split('.')
                    .all(|part| is_plain_word(part) && !part.contains(['%', '/', ':', '=']))
        })
}

/// The width and height in a PNG's header, if it is a PNG.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let word =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    Some((word(16), word(20)))
}

/// The deployment's files to export, checked, with launchers rewritten.
pub fn collect(
    deployment: &Path,
    id: &AppId,
    appbox: &Path,
) -> Result<Vec<ExportFile>, ExportError> {
    let share = Path::new("export/share");
    let root =
        openat2(None, deployment, libc::O_PATH | libc::O_DIRECTORY, 0, 0).map_err(|source| {
            ExportError::Read {
                id: id.to_string(),
                path: deployment.to_owned(),
                source,
            }
        })?;
    let reader = Reader { root, id };
    let mut files = Vec::new();
    for (name, contents) in reader.files(&share.join("applications"))? {
        if !named_after(id, &name, ".desktop") {
            continue;
        }
        let text =
            String::from_utf8(contents).map_err(|_| reader.refused(&name, "is not UTF-8"))?;
        files.push(ExportFile {
            rel: Path::new("applications").join(&name),
            contents: rewrite_desktop(&text, id, appbox)?.into_bytes(),
        });
    }
    for (dir, png_side) in ICON_DIRS {
        let rel = Path::new("icons/hicolor").join(dir).join("apps");
        for (name, contents) in reader.files(&share.join(&rel))? {
            let svg = named_after(id, &name, ".svg");
            let png = named_after(id, &name, ".png");
            if !(svg && png_side.is_none() || png && png_side.is_some()) {
                continue;
            }
            if let Some(side) = png_side {
                match png_size(&contents) {
                    Some((w, h)) if w == *side && h == *side => {}
                    Some((w, h)) => {
                        return Err(reader.refused(
                            &name,
                            &format!("is {w}x{h}, not {side}x{side} as its directory says"),
                        ))
                    }
                    None => return Err(reader.refused(&name, "is not a PNG image")),
                }
            } else if !contents.windows(4).any(|w| w == b"<svg") {
                return Err(reader.refused(&name, "is not an SVG image"));
            }
            files.push(ExportFile {
                rel: rel.join(&name),
                contents,
            });
        }
    }
    for (name, contents) in reader.files(&share.join("metainfo"))? {
        if name == format!("{id}.metainfo.xml") {
            files.push(ExportFile {
                rel: Path::new("metainfo").join(&name),
                contents,
            });
        }
    }
    Ok(files)
}

/// Reads a deployment's files without following symlinks or leaving it.
struct Reader<'a> {
    root: OwnedFd,
    id: &'a AppId,
}

impl Reader<'_> {
    fn refused(&self, name: &str, problem: &str) -> ExportError {
        ExportError::Refused {
            id: self.id.to_string(),
            path: PathBuf::from(name),
            problem: problem.to_owned(),
        }
    }

    fn read_error(&self, path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
        let path = path.to_owned();
        move |source| ExportError::Read {
            id: self.id.to_string(),
            path,
            source,
        }
    }

    /// The regular files directly in `dir` (missing: none), by name. Anything
    /// else that is named like an export is refused.
    fn files(&self, dir: &Path) -> Result<Vec<(String, Vec<u8>)>, ExportError> {
        let resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
        let fd = match openat2(
            Some(self.root.as_fd()),
            dir,
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
            resolve,
        ) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Vec::new()),
            Err(e) => return Err(self.read_error(dir)(e)),
        };
        let listing = nix::dir::Dir::from_fd(fd.try_clone().map_err(self.read_error(dir))?)
            .map_err(|e| self.read_error(dir)(e.into()))?;
        let mut names: Vec<String> = listing
            .into_iter()
            .filter_map(|entry| entry.ok()?.file_name().to_str().ok().map(str::to_owned))
            .filter(|name| name.starts_with(self.id.as_str()))
            .collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            let file = match openat2(
                Some(fd.as_fd()),
                Path::new(&name),
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
                0,
                resolve,
            ) {
                Ok(file) => std::fs::File::from(file),
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    return Err(self.refused(&name, "is a symlink"))
                }
                Err(e) => return Err(self.read_error(&dir.join(&name))(e)),
            };
            let meta = file.metadata().map_err(self.read_error(&dir.join(&name)))?;
            if meta.is_dir() {
                continue;
            }
            if !meta.is_file() {
                return Err(self.refused(&name, "is not a regular file"));
            }
            if meta.len() > MAX_EXPORT_BYTES {
                return Err(self.refused(
                    &name,
                    &format!(
                        "has {} bytes, more than the {MAX_EXPORT_BYTES} allowed",
                        meta.len()
                    ),
                ));
            }
            let mut contents = Vec::new();
            file.take(MAX_EXPORT_BYTES + 1)
                .read_to_end(&mut contents)
                .map_err(self.read_error(&dir.join(&name)))?;
            out.push((name, contents));
        }
        Ok(out)
    }
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
            "[Desktop Entry]\nName=Notes\nExec=/usr/bin/appbox run --command=notes org.example.Notes -- %U\n\n[Desktop Action new]\nExec=/usr/bin/appbox run --command=notes org.example.Notes\n"
        );
    }

    #[test]
    fn hostile_exec_lines_are_refused() {
        for exec in [
            "Exec=",
            "Exec=--help",
            "Exec=notes\u{1b}[2J",
            "Exec=`id`",
            "Exec=$(id)",
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
    fn only_field_codes_survive() {
        // Flatpak's @@ markers once let an app pass files it could not see
        // (CVE-2021-21381); shell syntax and options are dropped as well.
        for exec in [
            "Exec=notes @@u %U @@",
            "Exec=notes --command=sh %U",
            "Exec=notes ;reboot %U",
            "Exec=notes `id` $(id) \"a b\" %U",
        ] {
            let text = format!("[Desktop Entry]\n{exec}\n");
            let out = rewrite_desktop(&text, &id(), Path::new("/usr/bin/appbox")).unwrap();
            assert_eq!(
                out,
                "[Desktop Entry]\nExec=/usr/bin/appbox run --command=notes org.example.Notes -- %U\n",
                "{exec:?}"
            );
        }
    }

    #[test]
    fn exports_are_named_after_the_app() {
        let id = id();
        for good in [
            "org.example.Notes.desktop",
            "org.example.Notes.Viewer.desktop",
        ] {
            assert!(named_after(&id, good, ".desktop"), "{good}");
        }
        for bad in [
            "org.example.NotesEvil.desktop",
            "org.example.Note.desktop",
            "org.example.Notes..desktop",
            "other.desktop",
            "org.example.Notes.desktop.png",
        ] {
            assert!(!named_after(&id, bad, ".desktop"), "{bad}");
        }
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&64u32.to_be_bytes());
        png.extend_from_slice(&48u32.to_be_bytes());
        assert_eq!(png_size(&png), Some((64, 48)));
        assert_eq!(png_size(b"GIF89a"), None);
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

    fn deployment(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("appbox-export-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in [
            "applications",
            "icons/hicolor/scalable/apps",
            "icons/hicolor/64x64/apps",
            "metainfo",
        ] {
            std::fs::create_dir_all(dir.join("export/share").join(sub)).unwrap();
        }
        dir
    }

    fn png(side: u32) -> Vec<u8> {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&side.to_be_bytes());
        png.extend_from_slice(&side.to_be_bytes());
        png
    }

    #[test]
    fn collect_exports_only_the_apps_own_regular_files() {
        let dir = deployment("good");
        let share = dir.join("export/share");
        let write = |rel: &str, data: &[u8]| std::fs::write(share.join(rel), data).unwrap();
        write(
            "applications/org.example.Notes.desktop",
            b"[Desktop Entry]\nExec=notes %F\n",
        );
        write(
            "applications/org.example.Other.desktop",
            b"[Desktop Entry]\nExec=other\n",
        );
        write(
            "icons/hicolor/scalable/apps/org.example.Notes.svg",
            b"<svg/>",
        );
        write("icons/hicolor/64x64/apps/org.example.Notes.png", &png(64));
        write("metainfo/org.example.Notes.metainfo.xml", b"<component/>");
        let files = collect(&dir, &id(), Path::new("/usr/bin/appbox")).unwrap();
        let names: Vec<String> = files.iter().map(|f| f.rel.display().to_string()).collect();
        assert_eq!(
            names,
            [
                "applications/org.example.Notes.desktop",
                "icons/hicolor/scalable/apps/org.example.Notes.svg",
                "icons/hicolor/64x64/apps/org.example.Notes.png",
                "metainfo/org.example.Notes.metainfo.xml"
            ]
        );
        assert!(String::from_utf8_lossy(&files[0].contents).contains("appbox run --command=notes"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn collect_refuses_links_specials_big_files_and_wrong_icons() {
        type Make = Box<dyn Fn(&Path)>;
        let cases: Vec<(&str, Make, &str)> = vec![
            (
                "symlink",
                Box::new(|share: &Path| {
                    std::os::unix::fs::symlink(
                        "/etc/passwd",
                        share.join("applications/org.example.Notes.desktop"),
                    )
                    .unwrap()
                }),
                "is a symlink",
            ),
            (
                "fifo",
                Box::new(|share: &Path| {
                    nix::unistd::mkfifo(
                        &share.join("metainfo/org.example.Notes.metainfo.xml"),
                        nix::sys::stat::Mode::S_IRWXU,
                    )
                    .unwrap()
                }),
                "not a regular file",
            ),
            (
                "big",
                Box::new(|share: &Path| {
                    std::fs::write(
                        share.join("icons/hicolor/scalable/apps/org.example.Notes.svg"),
                        vec![b' '; 2 << 20],
                    )
                    .unwrap()
                }),
                "more than",
            ),
            (
                "wrong-size",
                Box::new(|share: &Path| {
                    std::fs::write(
                        share.join("icons/hicolor/64x64/apps/org.example.Notes.png"),
                        png(4096),
                    )
                    .unwrap()
                }),
                "not 64x64",
            ),
            (
                "not-png",
                Box::new(|share: &Path| {
                    std::fs::write(
                        share.join("icons/hicolor/64x64/apps/org.example.Notes.png"),
                        b"<svg/>",
                    )
                    .unwrap()
                }),
                "not a PNG",
            ),
            (
                "linked-dir",
                Box::new(|share: &Path| {
                    std::fs::remove_dir(share.join("metainfo")).unwrap();
                    std::os::unix::fs::symlink("/etc", share.join("metainfo")).unwrap()
                }),
                "cannot read",
            ),
        ];
        for (tag, make, expected) in cases {
            let dir = deployment(tag);
            make(&dir.join("export/share"));
            let err = collect(&dir, &id(), Path::new("/usr/bin/appbox")).unwrap_err();
            assert!(err.to_string().contains(expected), "{tag}: {err}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

//! Build manifests: `manifests/ID.toml`, what `appbox build` turns into an app or runtime.
//!
//! ```toml
//! id = "org.appbox.Example"
//! name = "Example"
//! summary = "An example"
//! description = "Longer text."
//! version = "1.0.0"
//! license = "MIT"
//! command = "example"
//! runtime = "host"
//! icon = "org.appbox.Example/org.appbox.Example.svg"
//! desktop-file = "org.appbox.Example/org.appbox.Example.desktop"
//! metainfo = "org.appbox.Example/org.appbox.Example.metainfo.xml"
//!
//! [[sources]]
//! type = "dir"
//! path = "org.appbox.Example/src"
//!
//! [build]
//! commands = [["cc", "-o", "/app/bin/example", "example.c"]]
//! ```
//!
//! Every path is checked at load time against the real tree, beneath the manifest's
//! directory and without symlinks, so a manifest cannot pull host files into a build.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::appid::AppId;
use crate::metadata::{validate_command, Runtime};
use crate::permissions::Change;
use crate::sandbox::sys::{openat2, RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS};
use crate::text::{check_line, check_text, Escaped};

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {file}")]
    Read {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{file}: cannot open the manifest's directory {dir}")]
    Dir {
        file: PathBuf,
        dir: PathBuf,
        #[source]
        source: io::Error,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    App,
    Runtime,
}

/// A validated build manifest. Paths in it are resolved against `dir` and were
/// checked to exist beneath it, without symlinks, when it was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The manifest file, as given.
    pub file: PathBuf,
    /// The directory holding the manifest (`.` for a bare file name).
    pub dir: PathBuf,
    pub kind: Kind,
    pub id: AppId,
    pub name: String,
    pub summary: String,
    pub description: String,
    pub version: String,
    pub license: String,
    /// Required for apps, refused for runtimes.
    pub command: Option<String>,
    /// For apps, what they run on; for runtimes, what their build runs on.
    pub runtime: Runtime,
    /// What the build commands run on: the app's `sdk` when it names one (a
    /// runtime with compilers, such as `host`), else `runtime`.
    pub sdk: Runtime,
    /// Refused for runtimes.
    pub permissions: Vec<Change>,
    /// Required for apps: a `.svg` or `.png` file.
    pub icon: Option<PathBuf>,
    /// Required for apps, refused for runtimes: `ID.desktop`.
    pub desktop_file: Option<PathBuf>,
    /// Required for apps: `ID.metainfo.xml`.
    pub metainfo: Option<PathBuf>,
    pub sources: Vec<Source>,
    /// argv lists run in order in the build sandbox; never a shell string.
    pub build_commands: Vec<Vec<String>>,
    /// True when any source asks for the network during the build.
    pub build_network: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local directory, copied recursively into `dest`.
    Dir { path: PathBuf, dest: String },
    /// A local file, copied into the directory `dest` under its own name.
    File { path: PathBuf, dest: String },
    /// A local `.tar`, `.tar.gz` or `.tgz` archive, extracted into `dest`.
    Archive {
        path: PathBuf,
        sha256: [u8; 32],
        dest: String,
        strip_components: u32,
    },
}

impl Source {
    /// The resolved local path of the source.
    pub fn path(&self) -> &Path {
        match self {
            Source::Dir { path, .. } | Source::File { path, .. } | Source::Archive { path, .. } => {
                path
            }
        }
    }

    /// Where the source goes, relative to the build directory ("" is the build directory).
    pub fn dest(&self) -> &str {
        match self {
            Source::Dir { dest, .. } | Source::File { dest, .. } | Source::Archive { dest, .. } => {
                dest
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawManifest {
    id: String,
    kind: Option<String>,
    name: String,
    summary: String,
    description: String,
    version: String,
    license: String,
    command: Option<String>,
    runtime: String,
    sdk: Option<String>,
    permissions: Option<Vec<String>>,
    icon: Option<String>,
    desktop_file: Option<String>,
    metainfo: Option<String>,
    #[serde(default)]
    sources: Vec<RawSource>,
    #[serde(default)]
    build: RawBuild,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSource {
    // A plain string rather than a tagged enum, so a bad type gets an error that
    // names `sources[N].type` instead of serde's generic message.
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    dest: String,
    sha256: Option<String>,
    strip_components: Option<u32>,
    #[serde(default)]
    network: bool,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    #[serde(default)]
    commands: Vec<Vec<String>>,
}

/// What a path field must name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    File,
    Dir,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            file: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses manifest text. `file` names it in errors, and its parent is the
    /// directory that every relative path is checked and resolved against.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError::Syntax {
            file: file.to_owned(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })?;
        let dir = match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        let dir_fd =
            openat2(None, &dir, libc::O_PATH | libc::O_DIRECTORY, 0, 0).map_err(|source| {
                ManifestError::Dir {
                    file: file.to_owned(),
                    dir: dir.clone(),
                    source,
                }
            })?;
        let checker = Checker {
            file,
            dir: &dir,
            dir_fd: dir_fd.as_fd(),
        };
        checker.manifest(raw)
    }
}

struct Checker<'a> {
    file: &'a Path,
    dir: &'a Path,
    dir_fd: BorrowedFd<'a>,
}

impl Checker<'_> {
    fn err(&self, field: &str, problem: impl Into<String>) -> ManifestError {
        ManifestError::Field {
            file: self.file.to_owned(),
            field: field.to_owned(),
            problem: problem.into(),
        }
    }

    fn line(&self, field: &str, value: &str) -> Result<(), ManifestError> {
        check_line(value).map_err(|e| self.err(field, e.to_string()))
    }

    fn manifest(&self, raw: RawManifest) -> Result<Manifest, ManifestError> {
        self.line("id", &raw.id)?;
        let id = AppId::parse(&raw.id).map_err(|e| self.err("id", format!("is invalid: {e}")))?;
        let kind = match raw.kind.as_deref() {
            None | Some("app") => Kind::App,
            Some("runtime") => Kind::Runtime,
            Some(other) => {
                self.line("kind", other)?;
                return Err(self.err(
                    "kind",
                    format!("is {}; expected \"app\" or \"runtime\"", Escaped(other)),
                ));
            }
        };
        self.line("name", &raw.name)?;
        self.line("summary", &raw.summary)?;
        check_text(&raw.description, true).map_err(|e| self.err("description", e.to_string()))?;
        if raw.description.trim().is_empty() {
            return Err(self.err("description", "is empty"));
        }
        self.line("version", &raw.version)?;
        self.line("license", &raw.license)?;

        let command = match (kind, raw.command) {
            (Kind::App, None) => return Err(self.err("command", "is required for apps")),
            (Kind::App, Some(command)) => {
                self.line("command", &command)?;
                validate_command(&command).map_err(|p| self.err("command", p))?;
                Some(command)
            }
            (Kind::Runtime, None) => None,
            (Kind::Runtime, Some(_)) => {
                return Err(self.err("command", "is not allowed: runtimes are not run"))
            }
        };

        self.line("runtime", &raw.runtime)?;
        let runtime = match raw.runtime.as_str() {
            "host" => Runtime::Host,
            other => Runtime::Installed(
                AppId::parse(other).map_err(|e| self.err("runtime", format!("is invalid: {e}")))?,
            ),
        };
        if runtime == Runtime::Installed(id.clone()) {
            return Err(self.err("runtime", "must not be the manifest's own id"));
        }
        let sdk = match (kind, raw.sdk.as_deref()) {
            (_, None) => runtime.clone(),
            (Kind::Runtime, Some(_)) => {
                return Err(self.err(
                    "sdk",
                    "is not allowed: a runtime's build runs on its `runtime`",
                ))
            }
            (Kind::App, Some(sdk)) => {
                self.line("sdk", sdk)?;
                match sdk {
                    "host" => Runtime::Host,
                    other => Runtime::Installed(
                        AppId::parse(other)
                            .map_err(|e| self.err("sdk", format!("is invalid: {e}")))?,
                    ),
                }
            }
        };

        let permissions = match (kind, raw.permissions) {
            (_, None) => Vec::new(),
            (Kind::Runtime, Some(list)) if !list.is_empty() => {
                return Err(self.err(
                    "permissions",
                    "is not allowed: a runtime gets the permissions of the app that uses it",
                ))
            }
            (_, Some(list)) => list
                .iter()
                .enumerate()
                .map(|(i, arg)| {
                    Change::parse(arg)
                        .map_err(|e| self.err(&format!("permissions[{i}]"), e.to_string()))
                })
                .collect::<Result<_, _>>()?,
        };

        let icon = self.optional_path("icon", raw.icon.as_deref(), kind == Kind::App)?;
        if let Some(icon) = &icon {
            let name = icon
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            if !(name.ends_with(".svg") || name.ends_with(".png")) {
                return Err(self.err("icon", "must be a .svg or .png file"));
            }
        }
        if kind == Kind::Runtime && raw.desktop_file.is_some() {
            return Err(self.err("desktop-file", "is not allowed: runtimes are not launched"));
        }
        let desktop_file = self.optional_path(
            "desktop-file",
            raw.desktop_file.as_deref(),
            kind == Kind::App,
        )?;
        self.file_name_is(
            "desktop-file",
            desktop_file.as_deref(),
            &format!("{id}.desktop"),
        )?;
        let metainfo =
            self.optional_path("metainfo", raw.metainfo.as_deref(), kind == Kind::App)?;
        self.file_name_is(
            "metainfo",
            metainfo.as_deref(),
            &format!("{id}.metainfo.xml"),
        )?;

        let mut build_network = false;
        let sources = raw
            .sources
            .into_iter()
            .enumerate()
            .map(|(i, source)| {
                build_network |= source.network;
                self.source(i, source)
            })
            .collect::<Result<_, _>>()?;

        for (i, argv) in raw.build.commands.iter().enumerate() {
            let Some(program) = argv.first() else {
                return Err(self.err(
                    &format!("build.commands[{i}]"),
                    "is empty; give the program and its arguments",
                ));
            };
            let field = format!("build.commands[{i}][0]");
            self.line(&field, program)?;
            validate_command(program).map_err(|p| self.err(&field, p))?;
            for (j, arg) in argv.iter().enumerate().skip(1) {
                // Empty arguments are legitimate in an argv, so only the characters are checked.
                check_text(arg, false)
                    .map_err(|e| self.err(&format!("build.commands[{i}][{j}]"), e.to_string()))?;
            }
        }

        Ok(Manifest {
            file: self.file.to_owned(),
            dir: self.dir.to_owned(),
            kind,
            id,
            name: raw.name,
            summary: raw.summary,
            description: raw.description,
            version: raw.version,
            license: raw.license,
            command,
            runtime,
            sdk,
            permissions,
            icon,
            desktop_file,
            metainfo,
            sources,
            build_commands: raw.build.commands,
            build_network,
        })
    }

    fn source(&self, i: usize, raw: RawSource) -> Result<Source, ManifestError> {
        let field = |name: &str| format!("sources[{i}].{name}");
        self.line(&field("type"), &raw.kind)?;
        let expect = match raw.kind.as_str() {
            "dir" => Expect::Dir,
            "file" | "archive" => Expect::File,
            other => {
                return Err(self.err(
                    &field("type"),
                    format!("is {}; expected one of: dir file archive", Escaped(other)),
                ))
            }
        };
        let path = self.path(&field("path"), &raw.path, expect)?;
        check_text(&raw.dest, false).map_err(|e| self.err(&field("dest"), e.to_string()))?;
        check_dest(&raw.dest).map_err(|p| self.err(&field("dest"), p))?;
        if raw.kind != "archive" {
            if raw.sha256.is_some() {
                return Err(self.err(&field("sha256"), "is only for archive sources"));
            }
            if raw.strip_components.is_some() {
                return Err(self.err(&field("strip-components"), "is only for archive sources"));
            }
        }
        Ok(match raw.kind.as_str() {
            "dir" => Source::Dir {
                path,
                dest: raw.dest,
            },
            "file" => Source::File {
                path,
                dest: raw.dest,
            },
            _ => {
                let name = raw.path.to_ascii_lowercase();
                if ![".tar", ".tar.gz", ".tgz"]
                    .iter()
                    .any(|ext| name.ends_with(ext))
                {
                    return Err(self.err(&field("path"), "must be a .tar, .tar.gz or .tgz archive"));
                }
                let Some(hex) = raw.sha256 else {
                    return Err(self.err(&field("sha256"), "is required for archive sources"));
                };
                self.line(&field("sha256"), &hex)?;
                let sha256 = parse_sha256(&hex).ok_or_else(|| {
                    self.err(&field("sha256"), "must be 64 hexadecimal characters")
                })?;
                Source::Archive {
                    path,
                    sha256,
                    dest: raw.dest,
                    strip_components: raw.strip_components.unwrap_or(0),
                }
            }
        })
    }

    fn optional_path(
        &self,
        field: &str,
        value: Option<&str>,
        required: bool,
    ) -> Result<Option<PathBuf>, ManifestError> {
        match value {
            Some(value) => self.path(field, value, Expect::File).map(Some),
            None if required => Err(self.err(field, "is required for apps")),
            None => Ok(None),
        }
    }

    fn file_name_is(
        &self,
        field: &str,
        path: Option<&Path>,
        expected: &str,
    ) -> Result<(), ManifestError> {
        match path {
            Some(path) if path.file_name().is_some_and(|n| n != expected) => {
                Err(self.err(field, format!("must name a file called {expected}")))
            }
            _ => Ok(()),
        }
    }

    /// Checks a relative path from the manifest and resolves it against the
    /// manifest's directory. The kernel does the walk (openat2 with
    /// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), so no symlink can lead outside.
    fn path(&self, field: &str, value: &str, expect: Expect) -> Result<PathBuf, ManifestError> {
        self.line(field, value)?;
        let rel = Path::new(value);
        if rel.is_absolute() {
            return Err(self.err(field, "must be relative to the manifest's directory"));
        }
        if rel.components().any(|c| c == Component::ParentDir) {
            return Err(self.err(field, "must not contain '..'"));
        }
        if !rel.components().any(|c| matches!(c, Component::Normal(_))) {
            return Err(self.err(field, "must name something inside the manifest's directory"));
        }
        let fd: OwnedFd = openat2(
            Some(self.dir_fd),
            rel,
            libc::O_PATH,
            0,
            RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
        )
        .map_err(|e| {
            let shown = rel.display();
            let problem = match e.raw_os_error() {
                Some(libc::ENOENT) => format!("names {shown}, which does not exist"),
                Some(libc::ELOOP) => format!("names {shown}, which goes through a symlink"),
                Some(libc::EXDEV) => {
                    format!("names {shown}, which is outside the manifest's directory")
                }
                Some(libc::ENOTDIR) => {
                    format!("names {shown}, but a part of it is not a directory")
                }
                _ => format!("names {shown}, which cannot be opened: {e}"),
            };
            self.err(field, problem)
        })?;
        let shown = rel.display();
        let meta = File::from(fd).metadata().map_err(|e| {
            self.err(
                field,
                format!("names {shown}, which cannot be examined: {e}"),
            )
        })?;
        match expect {
            Expect::File if !meta.is_file() => {
                return Err(self.err(field, format!("names {shown}, which is not a regular file")))
            }
            Expect::Dir if !meta.is_dir() => {
                return Err(self.err(field, format!("names {shown}, which is not a directory")))
            }
            _ => {}
        }
        Ok(self.dir.join(rel))
    }
}

/// A destination inside the build directory: relative, without `..`.
fn check_dest(dest: &str) -> Result<(), &'static str> {
    if dest.starts_with('/') {
        return Err("must be relative to the build directory (no leading '/')");
    }
    if Path::new(dest)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err("must not contain '..'");
    }
    Ok(())
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(bytes.chunks(2)) {
        let digit = |b: u8| (b as char).to_digit(16);
        *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A scratch directory removed on drop (the crate has no tempfile dependency).
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "appbox-test-{tag}-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const ID: &str = "org.appbox.Example";

    const GOOD: &str = r#"
id = "org.appbox.Example"
name = "Example"
summary = "An example app"
description = """
First line.
Second line."""
version = "1.0.0"
license = "MIT"
command = "example"
runtime = "host"
permissions = ["--share=network"]
icon = "ex/org.appbox.Example.svg"
desktop-file = "ex/org.appbox.Example.desktop"
metainfo = "ex/org.appbox.Example.metainfo.xml"

[[sources]]
type = "dir"
path = "ex/src"

[[sources]]
type = "file"
path = "ex/extra.txt"
dest = "data"

[[sources]]
type = "archive"
path = "ex/lib.tar.gz"
sha256 = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"
strip-components = 1
dest = "vendor/lib"
network = true

[build]
commands = [["mkdir", "-p", "/app/bin"], ["cc", "-o", "/app/bin/example", ""]]
"#;

    /// A manifest directory with everything GOOD refers to, a symlink inside it
    /// and a file beside it (outside).
    fn fixture() -> TempDir {
        let tmp = TempDir::new("manifest");
        let root = tmp.path();
        let ex = root.join("m/ex");
        std::fs::create_dir_all(ex.join("src")).unwrap();
        for name in [
            "org.appbox.Example.svg",
            "org.appbox.Example.desktop",
            "org.appbox.Example.metainfo.xml",
            "extra.txt",
            "lib.tar.gz",
            "icon.jpg",
            "other.desktop",
        ] {
            std::fs::write(ex.join(name), "x").unwrap();
        }
        std::fs::write(root.join("outside.svg"), "x").unwrap();
        symlink("org.appbox.Example.svg", ex.join("link.svg")).unwrap();
        symlink("../../outside.svg", ex.join("escape.svg")).unwrap();
        symlink("src", ex.join("srclink")).unwrap();
        tmp
    }

    fn parse_in(tmp: &TempDir, text: &str) -> Result<Manifest, String> {
        Manifest::parse(text, &tmp.path().join("m/app.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn parses_good_manifest() {
        let tmp = fixture();
        let m = parse_in(&tmp, GOOD).unwrap();
        let dir = tmp.path().join("m");
        assert_eq!(m.dir, dir);
        assert_eq!(m.kind, Kind::App);
        assert_eq!(m.id.as_str(), ID);
        assert_eq!(m.description, "First line.\nSecond line.");
        assert_eq!(m.command.as_deref(), Some("example"));
        assert_eq!(m.runtime, Runtime::Host);
        assert_eq!(m.permissions.len(), 1);
        assert_eq!(m.icon, Some(dir.join("ex/org.appbox.Example.svg")));
        assert_eq!(
            m.desktop_file,
            Some(dir.join("ex/org.appbox.Example.desktop"))
        );
        assert_eq!(
            m.sources[0],
            Source::Dir {
                path: dir.join("ex/src"),
                dest: String::new()
            }
        );
        assert_eq!(
            m.sources[1],
            Source::File {
                path: dir.join("ex/extra.txt"),
                dest: "data".into()
            }
        );
        let Source::Archive {
            sha256,
            strip_components,
            dest,
            ..
        } = &m.sources[2]
        else {
            panic!("not an archive: {:?}", m.sources[2]);
        };
        assert_eq!(sha256[0], 0x00);
        assert_eq!(sha256[1], 0x11);
        assert_eq!(sha256[31], 0xff);
        assert_eq!(*strip_components, 1);
        assert_eq!(dest, "vendor/lib");
        assert!(m.build_network);
        assert_eq!(m.build_commands.len(), 2);
        assert_eq!(m.build_commands[1][3], "");
    }

    #[test]
    fn network_is_off_unless_a_source_asks() {
        let tmp = fixture();
        let m = parse_in(&tmp, &GOOD.replace("network = true", "")).unwrap();
        assert!(!m.build_network);
    }

    #[test]
    fn bare_file_name_resolves_against_dot() {
        let err = Manifest::parse(GOOD, Path::new("app.toml")).unwrap_err();
        // The cwd is not the fixture, so the paths are missing; what matters is the dir.
        assert!(
            err.to_string().starts_with("app.toml: field `icon`"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("names ex/org.appbox.Example.svg, which does not exist"),
            "{err}"
        );
    }

    #[test]
    fn runtime_manifest() {
        let tmp = fixture();
        let text = GOOD
            .replace("command = \"example\"\n", "kind = \"runtime\"\n")
            .replace("permissions = [\"--share=network\"]\n", "")
            .replace("desktop-file = \"ex/org.appbox.Example.desktop\"\n", "")
            .replace("icon = \"ex/org.appbox.Example.svg\"\n", "")
            .replace("metainfo = \"ex/org.appbox.Example.metainfo.xml\"\n", "");
        let m = parse_in(&tmp, &text).unwrap();
        assert_eq!(m.kind, Kind::Runtime);
        assert_eq!(m.command, None);
        assert_eq!(m.icon, None);
        assert_eq!(m.metainfo, None);
        assert!(m.permissions.is_empty());

        let cases = [
            (
                text.replace(
                    "kind = \"runtime\"\n",
                    "kind = \"runtime\"\ncommand = \"x\"\n",
                ),
                "field `command` is not allowed",
            ),
            (
                format!("permissions = [\"--share=ipc\"]\n{text}"),
                "field `permissions` is not allowed",
            ),
            (
                format!("desktop-file = \"ex/org.appbox.Example.desktop\"\n{text}"),
                "field `desktop-file` is not allowed",
            ),
            (
                text.replace("runtime = \"host\"", "runtime = \"org.appbox.Example\""),
                "field `runtime` must not be the manifest's own id",
            ),
        ];
        for (text, expected) in cases {
            let err = parse_in(&tmp, &text).unwrap_err();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
        // An empty permission list is harmless.
        let ok = format!("permissions = []\n{text}");
        assert!(parse_in(&tmp, &ok).is_ok());
    }

    #[test]
    fn errors_name_file_field_and_problem() {
        let tmp = fixture();
        let icon = "icon = \"ex/org.appbox.Example.svg\"";
        let src = "path = \"ex/src\"";
        let archive = "path = \"ex/lib.tar.gz\"";
        let sha = "sha256 = \"00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\"";
        let cases: Vec<(String, &str)> = vec![
            // Top-level strings.
            (
                GOOD.replace("id = \"org.appbox.Example\"", "id = \"../x\""),
                "field `id` is invalid",
            ),
            (
                format!("kind = \"library\"\n{GOOD}"),
                "field `kind` is \"library\"; expected",
            ),
            (
                GOOD.replace("\"Example\"", "\"Ex\\u0000ample\""),
                "field `name` contains a NUL byte",
            ),
            (
                GOOD.replace("\"An example app\"", "\"An\\u001b[2J\""),
                "field `summary` contains an escape",
            ),
            (
                GOOD.replace("\"An example app\"", "\"two\\nlines\""),
                "field `summary` contains the control character",
            ),
            (
                GOOD.replace("\"An example app\"", "\"\\u202etxt.exe\""),
                "field `summary` contains the control character U+202E",
            ),
            (
                GOOD.replace("First line.", "First \\u001b line."),
                "field `description` contains an escape",
            ),
            (
                GOOD.replace("First line.\nSecond line.", "  "),
                "field `description` is empty",
            ),
            (
                GOOD.replace("\"1.0.0\"", "\"1.0\\n\""),
                "field `version` contains the control character",
            ),
            (
                GOOD.replace("\"1.0.0\"", "\"\""),
                "field `version` is empty",
            ),
            (
                GOOD.replace("\"MIT\"", "\"MIT\\u0007\""),
                "field `license` contains the control character",
            ),
            // Command, runtime, permissions.
            (
                GOOD.replace("command = \"example\"\n", ""),
                "field `command` is required for apps",
            ),
            (
                GOOD.replace("\"example\"", "\"--bind=/\""),
                "field `command` must not start with '-'",
            ),
            (
                GOOD.replace("\"example\"", "\"../../bin/sh\""),
                "field `command`",
            ),
            (
                GOOD.replace("\"host\"", "\"org..Platform\""),
                "field `runtime` is invalid",
            ),
            (
                GOOD.replace("--share=network", "--share=everything"),
                "field `permissions[0]`",
            ),
            // Icon, desktop file, metainfo.
            (
                GOOD.replace(&format!("{icon}\n"), ""),
                "field `icon` is required for apps",
            ),
            (
                GOOD.replace(icon, "icon = \"ex/icon.jpg\""),
                "field `icon` must be a .svg or .png file",
            ),
            (
                GOOD.replace(icon, "icon = \"ex/missing.svg\""),
                "field `icon` names",
            ),
            (
                GOOD.replace(icon, "icon = \"/etc/x.svg\""),
                "field `icon` must be relative",
            ),
            (
                GOOD.replace(icon, "icon = \"ex/../ex/org.appbox.Example.svg\""),
                "field `icon` must not contain '..'",
            ),
            (
                GOOD.replace(icon, "icon = \"ex/link.svg\""),
                "field `icon` names",
            ),
            (
                GOOD.replace(icon, "icon = \"ex/escape.svg\""),
                "which goes through a symlink",
            ),
            (
                GOOD.replace(icon, "icon = \"ex/src\""),
                "ex/src, which is not a regular file",
            ),
            (
                GOOD.replace(icon, "icon = \".\""),
                "field `icon` must name something inside",
            ),
            (GOOD.replace(icon, "icon = \"\""), "field `icon` is empty"),
            (
                GOOD.replace(
                    "desktop-file = \"ex/org.appbox.Example.desktop\"",
                    "desktop-file = \"ex/other.desktop\"",
                ),
                "field `desktop-file` must name a file called org.appbox.Example.desktop",
            ),
            (
                GOOD.replace("desktop-file = \"ex/org.appbox.Example.desktop\"\n", ""),
                "field `desktop-file` is required",
            ),
            (
                GOOD.replace(
                    "metainfo = \"ex/org.appbox.Example.metainfo.xml\"",
                    "metainfo = \"ex/extra.txt\"",
                ),
                "field `metainfo` must name a file called org.appbox.Example.metainfo.xml",
            ),
            (
                GOOD.replace("metainfo = \"ex/org.appbox.Example.metainfo.xml\"\n", ""),
                "field `metainfo` is required",
            ),
            // Sources.
            (
                GOOD.replace("type = \"dir\"", "type = \"git\""),
                "field `sources[0].type` is \"git\"",
            ),
            (
                GOOD.replace(src, "path = \"ex/extra.txt\""),
                "field `sources[0].path` names ex/extra.txt, which is not a directory",
            ),
            (
                GOOD.replace(src, "path = \"ex/srclink\""),
                "field `sources[0].path` names",
            ),
            (
                GOOD.replace(src, "path = \"../m/ex/src\""),
                "field `sources[0].path` must not contain '..'",
            ),
            (
                GOOD.replace(src, "path = \"/tmp\""),
                "field `sources[0].path` must be relative",
            ),
            (
                GOOD.replace("path = \"ex/extra.txt\"", "path = \"ex/src\""),
                "field `sources[1].path` names ex/src, which is not a regular file",
            ),
            (
                GOOD.replace("dest = \"data\"", "dest = \"/data\""),
                "field `sources[1].dest` must be relative",
            ),
            (
                GOOD.replace("dest = \"data\"", "dest = \"data/../..\""),
                "field `sources[1].dest` must not contain '..'",
            ),
            (
                GOOD.replace("dest = \"data\"", "dest = \"da\\u001bta\""),
                "field `sources[1].dest` contains an escape",
            ),
            (
                GOOD.replace("dest = \"data\"", &format!("dest = \"data\"\n{sha}")),
                "field `sources[1].sha256` is only for archive sources",
            ),
            (
                GOOD.replace("dest = \"data\"", "dest = \"data\"\nstrip-components = 1"),
                "field `sources[1].strip-components` is only for archive",
            ),
            (
                GOOD.replace(&format!("{sha}\n"), ""),
                "field `sources[2].sha256` is required",
            ),
            (
                GOOD.replace(sha, "sha256 = \"abc\""),
                "field `sources[2].sha256` must be 64 hexadecimal characters",
            ),
            (
                GOOD.replace(sha, &sha.replace("00112233", "0011223g")),
                "field `sources[2].sha256` must be 64",
            ),
            (
                GOOD.replace(archive, "path = \"ex/extra.txt\""),
                "field `sources[2].path` must be a .tar, .tar.gz or .tgz archive",
            ),
            (
                GOOD.replace("strip-components = 1", "strip-components = -1"),
                "strip-components",
            ),
            (
                GOOD.replace("network = true", "network = true\nurl = \"http://x\""),
                "unknown field `url`",
            ),
            // Build commands.
            (
                GOOD.replace("[\"mkdir\", \"-p\", \"/app/bin\"]", "[]"),
                "field `build.commands[0]` is empty",
            ),
            (
                GOOD.replace("\"mkdir\"", "\"-rf\""),
                "field `build.commands[0][0]` must not start with '-'",
            ),
            (
                GOOD.replace("\"mkdir\"", "\"bin/../sh\""),
                "field `build.commands[0][0]`",
            ),
            (
                GOOD.replace("\"mkdir\"", "\"\""),
                "field `build.commands[0][0]` is empty",
            ),
            (
                GOOD.replace("\"/app/bin/example\"", "\"/app/\\u001b\""),
                "field `build.commands[1][2]` contains an escape",
            ),
            (
                GOOD.replace("commands = ", "shell = \"make\"\ncommands = "),
                "unknown field `shell`",
            ),
            (
                GOOD.replace("commands = [", "commands = \"make\"\n#["),
                "commands",
            ),
            // Shape.
            (format!("extra = 1\n{GOOD}"), "unknown field `extra`"),
            (
                GOOD.replace("license = \"MIT\"\n", ""),
                "missing field `license`",
            ),
            ("id = ".to_owned(), "app.toml"),
        ];
        for (text, expected) in cases {
            let err = parse_in(&tmp, &text).unwrap_err();
            let file = tmp.path().join("m/app.toml");
            assert!(err.starts_with(&file.display().to_string()), "{err}");
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
    }

    #[test]
    fn load_reports_missing_file() {
        let err = Manifest::load(Path::new("/nonexistent/appbox/x.toml")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/appbox/x.toml"),
            "{err}"
        );
    }

    #[test]
    fn sample_manifests_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let m = match Manifest::load(&path) {
                    Ok(m) => m,
                    // The notes editor's binary is staged by cargo's build
                    // (see its manifest); in a fresh checkout it is missing.
                    Err(e) if e.to_string().contains("prebuilt/appbox-notes") => {
                        let prebuilt = dir.join("org.appbox.Notes/prebuilt/appbox-notes");
                        assert!(!prebuilt.exists(), "{e}");
                        count += 1;
                        continue;
                    }
                    Err(e) => panic!("{e}"),
                };
                let stem = path.file_stem().unwrap_or_default();
                assert_eq!(m.id.as_str(), stem, "{}", path.display());
                count += 1;
            }
        }
        assert!(
            count >= 2,
            "expected the sample manifests in {}",
            dir.display()
        );
    }
}

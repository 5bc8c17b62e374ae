//! Staging a manifest's sources into a build directory, on the host.
//!
//! The sources are the app author's, and archives may come from anywhere, so
//! nothing here trusts a path: every destination is opened fd-relative with
//! RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, every source without following symlinks,
//! and symlinks are re-created as they are, never followed. Files are replaced
//! (unlink, then O_CREAT|O_EXCL) rather than opened for writing, so no write can
//! go through a symlink or a hard link that an earlier entry planted.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use nix::errno::Errno;
use nix::fcntl::{readlinkat, AtFlags};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{linkat, symlinkat, unlinkat, UnlinkatFlags};
use sha2::{Digest, Sha256};

use crate::sandbox::sys::{openat2, RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS};
use crate::store::manifest::{Manifest, Source};
use crate::text::Escaped;

const BENEATH: u64 = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{manifest}: cannot {action} {path}")]
    Setup {
        manifest: PathBuf,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{manifest}: sources[{index}]: cannot {action} {path}")]
    Io {
        manifest: PathBuf,
        index: usize,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{manifest}: sources[{index}]: {path}: {problem}")]
    Refused {
        manifest: PathBuf,
        index: usize,
        path: PathBuf,
        problem: String,
    },
    #[error(
        "{manifest}: sources[{index}].sha256: {path} has sha256 {actual}, but the manifest says {expected}"
    )]
    Digest {
        manifest: PathBuf,
        index: usize,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{manifest}: sources[{index}]: {archive}: entry {entry}: {problem}")]
    Entry {
        manifest: PathBuf,
        index: usize,
        archive: PathBuf,
        entry: String,
        problem: String,
    },
}

/// Copies or extracts every source into `build_dir` (an existing, empty
/// directory), each under its `dest` ("" being `build_dir` itself).
pub fn stage(manifest: &Manifest, build_dir: &Path) -> Result<(), SourceError> {
    let top = |action, path: &Path, source| SourceError::Setup {
        manifest: manifest.file.clone(),
        action,
        path: path.to_owned(),
        source,
    };
    let build = openat2(None, build_dir, libc::O_RDONLY | libc::O_DIRECTORY, 0, 0)
        .map_err(|e| top("open the build directory", build_dir, e))?;
    let build_stat = fstat(build.as_fd())
        .map_err(|e| top("examine the build directory", build_dir, e.into()))?;
    let manifest_dir = openat2(None, &manifest.dir, libc::O_PATH | libc::O_DIRECTORY, 0, 0)
        .map_err(|e| top("open the manifest's directory", &manifest.dir, e))?;
    for (index, source) in manifest.sources.iter().enumerate() {
        let stager = Stager {
            manifest,
            index,
            source: source.path(),
            build_id: (build_stat.st_dev, build_stat.st_ino),
        };
        stager.stage(source, manifest_dir.as_fd(), build.as_fd())?;
    }
    Ok(())
}

/// Error context for one source.
struct Stager<'a> {
    manifest: &'a Manifest,
    index: usize,
    source: &'a Path,
    /// The build directory, so a dir source that contains it is not copied into itself.
    build_id: (libc::dev_t, libc::ino_t),
}

impl Stager<'_> {
    fn io(&self, action: &'static str, path: &Path, source: io::Error) -> SourceError {
        SourceError::Io {
            manifest: self.manifest.file.clone(),
            index: self.index,
            action,
            path: path.to_owned(),
            source,
        }
    }

    fn refused(&self, path: &Path, problem: impl Into<String>) -> SourceError {
        SourceError::Refused {
            manifest: self.manifest.file.clone(),
            index: self.index,
            path: path.to_owned(),
            problem: problem.into(),
        }
    }

    fn stage(
        &self,
        source: &Source,
        manifest_dir: BorrowedFd,
        build: BorrowedFd,
    ) -> Result<(), SourceError> {
        // Re-open the source beneath the manifest's directory: it was checked at
        // load time, but the tree may have changed since.
        let rel = self
            .source
            .strip_prefix(&self.manifest.dir)
            .map_err(|_| self.refused(self.source, "is not inside the manifest's directory"))?;
        let dest = make_dirs(build, Path::new(source.dest()))
            .map_err(|e| self.io("create the destination", Path::new(source.dest()), e))?;
        match source {
            Source::Dir { .. } => {
                let dir = openat2(
                    Some(manifest_dir),
                    rel,
                    libc::O_RDONLY | libc::O_DIRECTORY,
                    0,
                    BENEATH,
                )
                .map_err(|e| self.io("open", self.source, e))?;
                let stat =
                    fstat(dir.as_fd()).map_err(|e| self.io("examine", self.source, e.into()))?;
                if (stat.st_dev, stat.st_ino) == self.build_id {
                    return Err(self.refused(self.source, "is the build directory itself"));
                }
                self.copy_dir(dir, self.source, dest.as_fd())
            }
            Source::File { .. } => {
                let name = rel
                    .file_name()
                    .ok_or_else(|| self.refused(self.source, "has no file name"))?;
                let file = self.open_file(manifest_dir, rel, self.source)?;
                self.copy_file(file, self.source, dest.as_fd(), name)
            }
            Source::Archive {
                sha256,
                strip_components,
                ..
            } => {
                let file = self.open_file(manifest_dir, rel, self.source)?;
                self.extract(file, sha256, *strip_components, dest.as_fd())
            }
        }
    }

    /// Opens a regular file without following a symlink anywhere on the way.
    fn open_file(&self, dir: BorrowedFd, rel: &Path, shown: &Path) -> Result<File, SourceError> {
        let fd = openat2(
            Some(dir),
            rel,
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0,
            BENEATH,
        )
        .map_err(|e| self.io("open", shown, e))?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(|e| self.io("examine", shown, e))?;
        if !meta.is_file() {
            return Err(self.refused(shown, "is not a regular file"));
        }
        Ok(file)
    }

    fn copy_file(
        &self,
        mut from: File,
        shown: &Path,
        dir: BorrowedFd,
        name: &OsStr,
    ) -> Result<(), SourceError> {
        let mode = from
            .metadata()
            .map_err(|e| self.io("examine", shown, e))?
            .permissions()
            .mode();
        let mut to = create_file(dir, name, exec_mode(mode))
            .map_err(|e| self.io("create the copy of", shown, e))?;
        io::copy(&mut from, &mut to).map_err(|e| self.io("copy", shown, e))?;
        Ok(())
    }

    fn copy_dir(&self, from: OwnedFd, shown: &Path, to: BorrowedFd) -> Result<(), SourceError> {
        let listing = from
            .try_clone()
            .and_then(|fd| nix::dir::Dir::from_fd(fd).map_err(io::Error::from))
            .map_err(|e| self.io("read", shown, e))?;
        let mut names: Vec<OsString> = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|e| self.io("read", shown, e.into()))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name != "." && name != ".." {
                names.push(name.to_owned());
            }
        }
        // Sorted, so a build sees the same order on every machine.
        names.sort();
        for name in names {
            let path = shown.join(&name);
            let stat = fstatat(from.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| self.io("examine", &path, e.into()))?;
            match SFlag::from_bits_truncate(stat.st_mode & libc::S_IFMT) {
                SFlag::S_IFDIR => {
                    if (stat.st_dev, stat.st_ino) == self.build_id {
                        return Err(self.refused(&path, "is the build directory itself"));
                    }
                    let child = openat2(
                        Some(from.as_fd()),
                        Path::new(&name),
                        libc::O_RDONLY | libc::O_DIRECTORY,
                        0,
                        BENEATH,
                    )
                    .map_err(|e| self.io("open", &path, e))?;
                    let target =
                        make_dir(to, &name).map_err(|e| self.io("create the copy of", &path, e))?;
                    self.copy_dir(child, &path, target.as_fd())?;
                }
                SFlag::S_IFREG => {
                    let file = self.open_file(from.as_fd(), Path::new(&name), &path)?;
                    self.copy_file(file, &path, to, &name)?;
                }
                SFlag::S_IFLNK => {
                    let target = readlinkat(from.as_fd(), name.as_os_str())
                        .map_err(|e| self.io("read the symlink", &path, e.into()))?;
                    make_symlink(to, &name, &target)
                        .map_err(|e| self.io("create the copy of", &path, e))?;
                }
                _ => return Err(self.refused(
                    &path,
                    "is a device, fifo or socket; only files, directories and symlinks are copied",
                )),
            }
        }
        Ok(())
    }

    fn extract(
        &self,
        mut file: File,
        expected: &[u8; 32],
        strip: u32,
        dest: BorrowedFd,
    ) -> Result<(), SourceError> {
        // Hash and extract through the same open file, so what is extracted is
        // what was checked (unless its owner rewrites it meanwhile).
        let mut hasher = Sha256::new();
        io::copy(&mut file, &mut hasher).map_err(|e| self.io("read", self.source, e))?;
        let actual: [u8; 32] = hasher.finalize().into();
        if &actual != expected {
            return Err(SourceError::Digest {
                manifest: self.manifest.file.clone(),
                index: self.index,
                path: self.source.to_owned(),
                expected: hex(expected),
                actual: hex(&actual),
            });
        }
        let mut magic = [0u8; 2];
        let rewind = |file: &mut File| file.seek(SeekFrom::Start(0)).map(drop);
        rewind(&mut file)
            .and_then(|()| read_up_to(&mut file, &mut magic))
            .and_then(|_| rewind(&mut file))
            .map_err(|e| self.io("read", self.source, e))?;
        let reader = BufReader::new(file);
        if magic == [0x1f, 0x8b] {
            self.extract_tar(tar::Archive::new(GzDecoder::new(reader)), strip, dest)
        } else {
            self.extract_tar(tar::Archive::new(reader), strip, dest)
        }
    }

    fn extract_tar<R: Read>(
        &self,
        mut archive: tar::Archive<R>,
        strip: u32,
        root: BorrowedFd,
    ) -> Result<(), SourceError> {
        let entries = archive
            .entries()
            .map_err(|e| self.io("read the archive", self.source, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.io("read the archive", self.source, e))?;
            let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let bad = |problem: String| SourceError::Entry {
                manifest: self.manifest.file.clone(),
                index: self.index,
                archive: self.source.to_owned(),
                entry: Escaped(&raw_name).to_string(),
                problem,
            };
            let kind = entry.header().entry_type();
            if kind.is_pax_global_extensions() {
                continue;
            }
            let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
            let Some(rel) = entry_path(&path, strip).map_err(|p| bad(p.to_owned()))? else {
                continue; // stripped away entirely, as tar --strip-components does
            };
            let (parent, name) = match (rel.parent(), rel.file_name()) {
                (Some(parent), Some(name)) => (parent.to_owned(), name.to_owned()),
                _ => continue,
            };
            let io_bad = |action: &str, e: io::Error| {
                let problem = match e.raw_os_error() {
                    Some(libc::ELOOP) => {
                        format!("cannot {action}: the path goes through a symlink")
                    }
                    Some(libc::ENOTDIR) => {
                        format!("cannot {action}: a part of the path is not a directory")
                    }
                    _ => format!("cannot {action}: {e}"),
                };
                bad(problem)
            };
            if kind.is_dir() {
                make_dirs(root, &rel).map_err(|e| io_bad("create the directory", e))?;
                continue;
            }
            let dir = make_dirs(root, &parent).map_err(|e| io_bad("create its directory", e))?;
            if kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse() {
                let mode = entry.header().mode().unwrap_or(0o644);
                let mut file = create_file(dir.as_fd(), &name, exec_mode(mode))
                    .map_err(|e| io_bad("create the file", e))?;
                io::copy(&mut entry, &mut file).map_err(|e| io_bad("write the file", e))?;
            } else if kind.is_symlink() {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| bad("is a symlink without a target".into()))?;
                make_symlink(dir.as_fd(), &name, OsStr::from_bytes(&target))
                    .map_err(|e| io_bad("create the symlink", e))?;
            } else if kind.is_hard_link() {
                let target = entry
                    .link_name()
                    .map_err(|e| bad(e.to_string()))?
                    .ok_or_else(|| bad("is a hard link without a target".into()))?;
                let target = entry_path(&target, strip)
                    .map_err(|p| bad(format!("its link target {p}")))?
                    .ok_or_else(|| bad("links to an entry that was stripped away".into()))?;
                let target_dir = target.parent().unwrap_or(Path::new(""));
                let target_name = target.file_name().unwrap_or_default();
                let target_dir = open_dir(root, target_dir)
                    .map_err(|e| io_bad("open the link target's directory", e))?;
                replace_with(dir.as_fd(), &name, || {
                    // No AT_SYMLINK_FOLLOW: a symlink target is linked as the symlink itself.
                    linkat(
                        target_dir.as_fd(),
                        target_name,
                        dir.as_fd(),
                        name.as_os_str(),
                        AtFlags::empty(),
                    )
                    .map_err(io::Error::from)
                })
                .map_err(|e| io_bad("create the hard link", e))?;
            } else {
                return Err(bad(format!(
                    "is a {}; only files, directories and links are extracted",
                    entry_kind_name(kind)
                )));
            }
        }
        Ok(())
    }
}

/// The path an archive entry goes to, relative to the destination, after
/// dropping `strip` leading components; `None` when nothing is left.
fn entry_path(path: &Path, strip: u32) -> Result<Option<PathBuf>, &'static str> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("contains '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    let rest: PathBuf = parts.into_iter().skip(strip as usize).collect();
    Ok((!rest.as_os_str().is_empty()).then_some(rest))
}

fn entry_kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "fifo",
        _ => "kind of entry appbox does not extract",
    }
}

/// Files keep only whether they are executable: no setuid, setgid or odd modes.
fn exec_mode(mode: u32) -> u32 {
    if mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Opens an existing directory beneath `root`, through no symlink. RESOLVE_NO_SYMLINKS
/// covers the last component too, and reports it as ELOOP (O_NOFOLLOW would say ENOTDIR).
fn open_dir(root: BorrowedFd, rel: &Path) -> io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    openat2(
        Some(root),
        rel,
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
        BENEATH,
    )
}

/// Creates `name` in `dir` unless it is already a directory, and opens it.
/// An existing symlink there is refused (ELOOP), not followed.
fn make_dir(dir: BorrowedFd, name: &OsStr) -> io::Result<OwnedFd> {
    match mkdirat(dir, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    open_dir(dir, Path::new(name))
}

/// Creates every directory of `rel` under `root`, one component at a time.
fn make_dirs(root: BorrowedFd, rel: &Path) -> io::Result<OwnedFd> {
    let mut current = open_dir(root, Path::new(""))?;
    for component in rel.components() {
        match component {
            Component::Normal(name) => current = make_dir(current.as_fd(), name)?,
            Component::CurDir => {}
            // The manifest and entry_path already refuse these; this is the last line.
            _ => return Err(io::Error::from_raw_os_error(libc::EXDEV)),
        }
    }
    Ok(current)
}

/// Runs `create` (which fails with EEXIST if `name` exists), removing a
/// non-directory in the way first. Replacing, never opening, is what keeps a
/// planted symlink or hard link from being written through.
fn replace_with(
    dir: BorrowedFd,
    name: &OsStr,
    mut create: impl FnMut() -> io::Result<()>,
) -> io::Result<()> {
    match create() {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?;
            create()
        }
        other => other,
    }
}

fn create_file(dir: BorrowedFd, name: &OsStr, mode: u32) -> io::Result<File> {
    let mut created = None;
    replace_with(dir, name, || {
        let fd = openat2(
            Some(dir),
            Path::new(name),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            mode,
            BENEATH,
        )?;
        // Set after creation, so the user's umask does not change what a build sees.
        fchmod(fd.as_fd(), Mode::from_bits_truncate(mode))?;
        created = Some(File::from(fd));
        Ok(())
    })?;
    created.ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))
}

fn make_symlink(dir: BorrowedFd, name: &OsStr, target: &OsStr) -> io::Result<()> {
    replace_with(dir, name, || {
        symlinkat(target, dir, name).map_err(io::Error::from)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::manifest::tests::TempDir;
    use std::fs;
    use std::os::unix::fs::symlink;

    const HEAD: &str = r#"
id = "org.appbox.Example"
name = "Example"
summary = "An example"
description = "An example."
version = "1.0.0"
license = "MIT"
kind = "runtime"
runtime = "host"
"#;

    /// A manifest directory `m/`, a build directory `build/` and, beside them,
    /// `outside/`, which no test may write into.
    struct Setup {
        tmp: TempDir,
    }

    impl Setup {
        fn new() -> Self {
            let tmp = TempDir::new("sources");
            for dir in ["m", "build", "outside"] {
                fs::create_dir(tmp.path().join(dir)).unwrap();
            }
            fs::write(tmp.path().join("outside/keep"), "original").unwrap();
            Setup { tmp }
        }

        fn m(&self) -> PathBuf {
            self.tmp.path().join("m")
        }

        fn build(&self) -> PathBuf {
            self.tmp.path().join("build")
        }

        fn stage(&self, sources: &str) -> Result<(), String> {
            let file = self.m().join("x.toml");
            let manifest =
                Manifest::parse(&format!("{HEAD}{sources}"), &file).map_err(|e| e.to_string())?;
            stage(&manifest, &self.build()).map_err(|e| e.to_string())
        }

        /// Nothing was written beside the build directory.
        fn assert_outside_untouched(&self) {
            let mut names: Vec<_> = fs::read_dir(self.tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            assert_eq!(names, ["build", "m", "outside"]);
            let outside: Vec<_> = fs::read_dir(self.tmp.path().join("outside"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(outside, ["keep"]);
            assert_eq!(
                fs::read_to_string(self.tmp.path().join("outside/keep")).unwrap(),
                "original"
            );
        }

        /// Writes `name` into the manifest directory and returns its sha256 in hex.
        fn archive(&self, name: &str, data: &[u8]) -> String {
            fs::write(self.m().join(name), data).unwrap();
            hex(&Sha256::digest(data))
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// Builds a tar archive from raw entries; the header is filled by hand so
    /// that paths the tar crate's builder would refuse (`../evil`) can be written.
    fn tar(entries: &[(&str, tar::EntryType, &str, &[u8], u32)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, link, data, mode) in entries {
            let mut header = tar::Header::new_gnu();
            {
                let gnu = header.as_gnu_mut().unwrap();
                gnu.name[..name.len()].copy_from_slice(name.as_bytes());
                gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(*mode);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn archive_source(name: &str, sha: &str, extra: &str) -> String {
        format!("[[sources]]\ntype = \"archive\"\npath = \"{name}\"\nsha256 = \"{sha}\"\n{extra}\n")
    }

    use tar::EntryType::{Block, Char, Directory, Fifo, Link, Regular, Symlink};

    #[test]
    fn copies_a_directory_keeping_exec_bits_and_symlinks() {
        let s = Setup::new();
        let src = s.m().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o4750)).unwrap();
        fs::write(src.join("data.txt"), "data").unwrap();
        fs::set_permissions(src.join("data.txt"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(src.join("sub/nested.txt"), "nested").unwrap();
        symlink("data.txt", src.join("link")).unwrap();
        // Copied as a symlink, never followed: the target is outside.
        symlink("../../outside/keep", src.join("escape")).unwrap();
        fs::write(s.m().join("single"), "single").unwrap();

        s.stage(
            "[[sources]]\ntype = \"dir\"\npath = \"src\"\n\
             [[sources]]\ntype = \"file\"\npath = \"single\"\ndest = \"more/files\"\n\
             [[sources]]\ntype = \"dir\"\npath = \"src/sub\"\ndest = \"again\"\n",
        )
        .unwrap();

        let b = s.build();
        assert_eq!(fs::read_to_string(b.join("run.sh")).unwrap(), "#!/bin/sh\n");
        assert_eq!(mode(&b.join("run.sh")), 0o755, "exec kept, setuid dropped");
        assert_eq!(mode(&b.join("data.txt")), 0o644);
        assert_eq!(
            fs::read_to_string(b.join("sub/nested.txt")).unwrap(),
            "nested"
        );
        assert_eq!(
            fs::read_link(b.join("link")).unwrap(),
            Path::new("data.txt")
        );
        assert_eq!(
            fs::read_link(b.join("escape")).unwrap(),
            Path::new("../../outside/keep")
        );
        assert_eq!(
            fs::read_to_string(b.join("more/files/single")).unwrap(),
            "single"
        );
        assert_eq!(
            fs::read_to_string(b.join("again/nested.txt")).unwrap(),
            "nested"
        );
        s.assert_outside_untouched();
    }

    #[test]
    fn a_later_source_replaces_a_symlink_instead_of_writing_through_it() {
        let s = Setup::new();
        fs::create_dir(s.m().join("a")).unwrap();
        fs::create_dir(s.m().join("b")).unwrap();
        symlink("../outside/keep", s.m().join("a/keep")).unwrap();
        fs::write(s.m().join("b/keep"), "replaced").unwrap();
        s.stage(
            "[[sources]]\ntype = \"dir\"\npath = \"a\"\n\
             [[sources]]\ntype = \"dir\"\npath = \"b\"\n",
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(s.build().join("keep")).unwrap(),
            "replaced"
        );
        s.assert_outside_untouched();
    }

    #[test]
    fn a_symlinked_destination_is_refused() {
        let s = Setup::new();
        fs::create_dir(s.m().join("a")).unwrap();
        fs::create_dir(s.m().join("b")).unwrap();
        symlink("../outside", s.m().join("a/dir")).unwrap();
        fs::write(s.m().join("b/evil"), "evil").unwrap();
        let err = s
            .stage(
                "[[sources]]\ntype = \"dir\"\npath = \"a\"\n\
                 [[sources]]\ntype = \"file\"\npath = \"b/evil\"\ndest = \"dir\"\n",
            )
            .unwrap_err();
        assert!(
            err.contains("sources[1]: cannot create the destination dir"),
            "{err}"
        );
        s.assert_outside_untouched();
    }

    #[test]
    fn special_files_in_a_dir_source_are_refused() {
        let s = Setup::new();
        fs::create_dir(s.m().join("src")).unwrap();
        nix::unistd::mkfifo(&s.m().join("src/pipe"), Mode::from_bits_truncate(0o600)).unwrap();
        let err = s
            .stage("[[sources]]\ntype = \"dir\"\npath = \"src\"\n")
            .unwrap_err();
        assert!(err.contains("sources[0]"), "{err}");
        assert!(
            err.contains("src/pipe: is a device, fifo or socket"),
            "{err}"
        );
    }

    #[test]
    fn a_dir_source_holding_the_build_directory_is_refused() {
        let s = Setup::new();
        fs::create_dir_all(s.m().join("src")).unwrap();
        let manifest = Manifest::parse(
            &format!("{HEAD}[[sources]]\ntype = \"dir\"\npath = \"src\"\n"),
            &s.m().join("x.toml"),
        )
        .unwrap();
        let err = stage(&manifest, &s.m().join("src"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is the build directory itself"), "{err}");
    }

    #[test]
    fn extracts_archives_with_good_sha256() {
        let s = Setup::new();
        let data = tar(&[
            ("pkg-1.0/", Directory, "", b"", 0o755),
            ("pkg-1.0/bin/tool", Regular, "", b"#!/bin/sh\n", 0o4755),
            ("pkg-1.0/README", Regular, "", b"readme", 0o600),
            ("pkg-1.0/link", Symlink, "bin/tool", b"", 0o777),
            ("pkg-1.0/abs", Symlink, "/etc/passwd", b"", 0o777),
            ("pkg-1.0/hard", Link, "pkg-1.0/README", b"", 0o644),
            ("pkg-1.0/README", Regular, "", b"newer", 0o644),
            ("top-level-only", Regular, "", b"", 0o644),
        ]);
        let plain = s.archive("pkg.tar", &data);
        let gz = s.archive("pkg.tgz", &gzip(&data));
        s.stage(&format!(
            "{}{}",
            archive_source("pkg.tar", &plain, "strip-components = 1\ndest = \"plain\""),
            archive_source("pkg.tgz", &gz, "dest = \"gz\"")
        ))
        .unwrap();

        let b = s.build();
        assert_eq!(mode(&b.join("plain/bin/tool")), 0o755);
        assert_eq!(
            fs::read_to_string(b.join("plain/bin/tool")).unwrap(),
            "#!/bin/sh\n"
        );
        assert_eq!(fs::read_to_string(b.join("plain/README")).unwrap(), "newer");
        // The hard link was made before README was replaced, so it keeps the old text.
        assert_eq!(fs::read_to_string(b.join("plain/hard")).unwrap(), "readme");
        assert_eq!(
            fs::read_link(b.join("plain/abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(
            fs::read_link(b.join("plain/link")).unwrap(),
            Path::new("bin/tool")
        );
        assert!(!b.join("plain/top-level-only").exists(), "stripped away");
        assert_eq!(
            fs::read_to_string(b.join("gz/pkg-1.0/README")).unwrap(),
            "newer"
        );
        assert!(b.join("gz/top-level-only").exists());
        s.assert_outside_untouched();
    }

    #[test]
    fn a_sha256_mismatch_names_both_digests() {
        let s = Setup::new();
        let data = tar(&[("file", Regular, "", b"x", 0o644)]);
        let good = s.archive("a.tar", &data);
        let wrong = "ab".repeat(32);
        let err = s.stage(&archive_source("a.tar", &wrong, "")).unwrap_err();
        assert!(err.contains("sources[0].sha256"), "{err}");
        assert!(err.contains(&good) && err.contains(&wrong), "{err}");
        assert!(!s.build().join("file").exists());
    }

    fn assert_refused(entries: &[(&str, tar::EntryType, &str, &[u8], u32)], expected: &str) {
        let s = Setup::new();
        let sha = s.archive("evil.tar.gz", &gzip(&tar(entries)));
        let err = s
            .stage(&archive_source("evil.tar.gz", &sha, "dest = \"sub\""))
            .unwrap_err();
        assert!(err.contains("sources[0]"), "{err}");
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        s.assert_outside_untouched();
    }

    #[test]
    fn archive_paths_outside_the_destination_are_refused() {
        assert_refused(
            &[("../evil", Regular, "", b"evil", 0o644)],
            "entry \"../evil\": contains '..'",
        );
        assert_refused(
            &[("a/../../../outside/evil", Regular, "", b"evil", 0o644)],
            "contains '..'",
        );
        assert_refused(
            &[("/tmp/appbox-evil", Regular, "", b"evil", 0o644)],
            "is an absolute path",
        );
        assert_refused(
            &[
                ("ok", Regular, "", b"ok", 0o644),
                ("hard", Link, "../outside/keep", b"", 0o644),
            ],
            "its link target contains '..'",
        );
    }

    #[test]
    fn writing_through_a_planted_symlink_is_refused() {
        // Absolute and relative links to a directory outside, then a write through them.
        let s = Setup::new();
        let outside = s.tmp.path().join("outside");
        let outside = outside.to_str().unwrap();
        assert_refused(
            &[
                ("link", Symlink, outside, b"", 0o777),
                ("link/evil", Regular, "", b"evil", 0o644),
            ],
            "entry \"link/evil\": cannot create its directory: the path goes through a symlink",
        );
        assert_refused(
            &[
                ("link", Symlink, "../../outside", b"", 0o777),
                ("link/", Directory, "", b"", 0o755),
            ],
            "goes through a symlink",
        );
        assert_refused(
            &[
                ("d/", Directory, "", b"", 0o755),
                ("d/link", Symlink, "../../../outside", b"", 0o777),
                ("d/link/sub/evil", Regular, "", b"evil", 0o644),
            ],
            "goes through a symlink",
        );
    }

    #[test]
    fn a_symlink_to_a_file_is_replaced_not_written_through() {
        let s = Setup::new();
        let keep = s.tmp.path().join("outside/keep");
        let sha = s.archive(
            "a.tar",
            &tar(&[
                ("keep", Symlink, keep.to_str().unwrap(), b"", 0o777),
                ("keep", Regular, "", b"evil", 0o644),
                ("hard", Link, "keep", b"", 0o644),
                ("hard", Regular, "", b"again", 0o644),
            ]),
        );
        s.stage(&archive_source("a.tar", &sha, "")).unwrap();
        assert_eq!(fs::read_to_string(s.build().join("keep")).unwrap(), "evil");
        assert_eq!(fs::read_to_string(s.build().join("hard")).unwrap(), "again");
        s.assert_outside_untouched();
    }

    #[test]
    fn device_nodes_and_fifos_are_refused() {
        for (kind, name) in [
            (Char, "character device"),
            (Block, "block device"),
            (Fifo, "fifo"),
        ] {
            assert_refused(
                &[("dev", kind, "", b"", 0o644)],
                &format!("entry \"dev\": is a {name}"),
            );
        }
    }

    #[test]
    fn sample_manifests_stage() {
        for (id, file) in [("org.appbox.Wc", "wc.c"), ("org.appbox.Fetch", "fetch.c")] {
            let path =
                Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../manifests/{id}.toml"));
            let manifest = Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let build = TempDir::new("sample-build");
            stage(&manifest, build.path()).unwrap_or_else(|e| panic!("{e}"));
            assert!(build.path().join(file).is_file(), "{id}: {file} not staged");
        }
    }

    #[test]
    fn strip_components_drops_leading_parts() {
        assert_eq!(
            entry_path(Path::new("./a/b/c"), 1).unwrap(),
            Some("b/c".into())
        );
        assert_eq!(entry_path(Path::new("a/"), 1).unwrap(), None);
        assert_eq!(
            entry_path(Path::new("a//b"), 0).unwrap(),
            Some("a/b".into())
        );
        assert!(entry_path(Path::new("a/../b"), 0).is_err());
    }
}

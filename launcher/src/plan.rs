//! The pure planner: metadata + overrides + host facts → [`SandboxPlan`].
//!
//! Nothing here touches the kernel or the filesystem. The plan lists, in order,
//! every mount the executor performs, the Landlock rules that mirror them, the
//! seccomp policy, the environment and the command. Golden tests pin it down.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::appid::AppId;
use crate::hostfacts::{clean_absolute, HostFacts, ROOT_SANDBOX_ID};
use crate::metadata::{validate_command, AppMetadata};
use crate::permissions::{
    Change, Device, FsAccess, FsLocation, Permissions, Share, Socket, XdgDir,
};
use crate::seccomp_policy::SeccompPolicy;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("command {command:?} {problem}")]
    BadCommand {
        command: String,
        problem: &'static str,
    },
    #[error("filesystem={location}: {path} holds appbox's own state, which no app may change (nor read, for the instance records)")]
    StateGrant { location: String, path: PathBuf },
    #[error("document {doc_id} ({name}): {problem}")]
    BadDocument {
        doc_id: String,
        name: String,
        problem: &'static str,
    },
    #[error("document {0} is granted twice; each document id names one file")]
    DuplicateDocument(String),
}

/// What to launch: the app, where its files are, and one-off overrides.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    pub metadata: AppMetadata,
    /// Host directory that becomes `/app`.
    pub app_files: PathBuf,
    /// Host directory that becomes `/usr`; `None` for the host runtime.
    pub runtime_files: Option<PathBuf>,
    /// Overrides applied after the metadata, in order.
    pub overrides: Vec<Change>,
    /// Replaces the metadata's command.
    pub command: Option<String>,
    pub args: Vec<String>,
    /// The socket of this launch's filtering bus proxy (see `busproxy`),
    /// which becomes the sandbox's session bus. `None` when the host has no
    /// session bus.
    pub bus_proxy_socket: Option<PathBuf>,
    /// Set when the sandbox runs a manifest's build commands: this host
    /// directory becomes `/run/build`, the working directory, and `/app` is
    /// writable so the build can install into it.
    pub build_dir: Option<PathBuf>,
    /// Host files the portal granted to the app, shown under
    /// `/run/user/UID/doc/` (see [`DocumentMount`]).
    pub documents: Vec<DocumentMount>,
}

impl LaunchRequest {
    /// The app as its metadata describes it: the host runtime, no overrides,
    /// no bus, no documents.
    pub fn new(metadata: AppMetadata, app_files: PathBuf) -> Self {
        LaunchRequest {
            metadata,
            app_files,
            runtime_files: None,
            overrides: Vec::new(),
            command: None,
            args: Vec::new(),
            bus_proxy_socket: None,
            build_dir: None,
            documents: Vec::new(),
        }
    }
}

/// Where a build's sources appear inside the build sandbox.
pub const BUILD_DIR_IN_SANDBOX: &str = "/run/build";

/// A host file granted to the app through the portal. It appears as
/// `/run/user/UID/doc/<doc_id>/<name>`: a bind mount of the host file itself,
/// read-only unless `writable`. The `<doc_id>` directory is read-only (0555),
/// so GLib and most editors save in place instead of renaming a temporary file
/// over the mount point (which would fail with EBUSY).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentMount {
    /// 8 characters from `0-9a-f` (see [`check_doc_id`]).
    pub doc_id: String,
    /// The file's name in the sandbox: one path component (see [`check_doc_name`]).
    pub name: String,
    /// Absolute, without `.` or `..`; no component may be a symlink.
    pub host_path: PathBuf,
    pub writable: bool,
}

/// The directory of the granted documents under the sandbox's runtime dir.
pub const DOCUMENTS_DIR: &str = "doc";

/// `/run/user/UID/doc`, where documents appear for an app running as `app_uid`.
pub fn documents_dir(app_uid: u32) -> PathBuf {
    PathBuf::from(format!("/run/user/{app_uid}/{DOCUMENTS_DIR}"))
}

/// A document id is exactly 8 characters from `0-9a-f`.
pub fn check_doc_id(doc_id: &str) -> Result<(), &'static str> {
    if doc_id.len() == 8
        && doc_id
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err("a document id is exactly 8 characters from 0-9 and a-f")
    }
}

/// A document's name is one path component: not empty, `.` or `..`, without
/// `/` or NUL, and at most 255 bytes (NAME_MAX).
pub fn check_doc_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name == "." || name == ".." {
        return Err("a document name must name a file, not be empty, '.' or '..'");
    }
    if name.contains('/') {
        return Err("a document name must not contain '/'");
    }
    if name.contains('\0') {
        return Err("a document name must not contain a NUL byte");
    }
    if name.len() > 255 {
        return Err("a document name must be at most 255 bytes");
    }
    Ok(())
}

/// Checks a document before it is planned or mounted: its id, its name, and
/// that its host path is absolute and clean.
pub fn check_document(doc: &DocumentMount) -> Result<(), PlanError> {
    let problem = check_doc_id(&doc.doc_id)
        .and_then(|()| check_doc_name(&doc.name))
        .and_then(|()| {
            if clean_absolute(&doc.host_path) && doc.host_path.file_name().is_some() {
                Ok(())
            } else {
                Err("the host path must be absolute, without '.' or '..', and name a file")
            }
        });
    problem.map_err(|problem| PlanError::BadDocument {
        doc_id: crate::text::Escaped(&doc.doc_id).to_string(),
        name: crate::text::Escaped(&doc.name).to_string(),
        problem,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespaces {
    pub user: bool,
    pub mount: bool,
    pub pid: bool,
    pub ipc: bool,
    pub uts: bool,
    pub cgroup: bool,
    pub net: bool,
}

/// One line of a uid_map or gid_map: `inside outside count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMaps {
    pub uid_map: Vec<IdRange>,
    pub gid_map: Vec<IdRange>,
    /// Write "deny" to setgroups before the gid map (required when unprivileged).
    pub deny_setgroups: bool,
    /// The uid and gid the app runs as inside.
    pub app_uid: u32,
    pub app_gid: u32,
}

/// How much a host path is trusted when it is opened as a bind source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceTrust {
    /// A root-owned system path (`/usr`, `/etc/...`, `/dev/...`): symlinks may be followed.
    System,
    /// Anything an app or user could have written: every component must be a real
    /// directory, never a symlink (RESOLVE_NO_SYMLINKS).
    NoSymlinks,
    /// As `NoSymlinks`, and it must be a regular file: a granted document.
    /// Anything else there now (a directory, a device) is left out.
    RegularFile,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BindAccess {
    ReadOnly,
    ReadWrite,
    /// A device node or device tree: read-write, device files allowed.
    Device,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum MountOp {
    /// A directory on the sandbox's root tmpfs.
    Dir {
        path: PathBuf,
        mode: u32,
    },
    Tmpfs {
        path: PathBuf,
        mode: u32,
        /// Owner inside the sandbox; `None` keeps the creator.
        owner: Option<(u32, u32)>,
    },
    Bind {
        source: PathBuf,
        dest: PathBuf,
        access: BindAccess,
        trust: SourceTrust,
        /// A missing source is skipped with a note instead of failing the launch.
        optional: bool,
    },
    Proc {
        path: PathBuf,
    },
    Devpts {
        path: PathBuf,
    },
    Symlink {
        target: PathBuf,
        path: PathBuf,
    },
    File {
        path: PathBuf,
        contents: String,
        mode: u32,
    },
    /// A copy of the host's Xauthority holding only the cookies for `display`.
    Xauthority {
        source: PathBuf,
        display: String,
        path: PathBuf,
    },
}

impl MountOp {
    /// The path inside the sandbox that this operation creates.
    pub fn target(&self) -> &Path {
        match self {
            MountOp::Dir { path, .. }
            | MountOp::Tmpfs { path, .. }
            | MountOp::Proc { path }
            | MountOp::Devpts { path }
            | MountOp::Symlink { path, .. }
            | MountOp::File { path, .. }
            | MountOp::Xauthority { path, .. } => path,
            MountOp::Bind { dest, .. } => dest,
        }
    }
}

/// The Landlock access granted beneath a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LandlockAccess {
    /// List directories only.
    ListOnly,
    /// Read files and directories and execute.
    ReadOnly,
    /// Everything, including creating, removing and renaming.
    ReadWrite,
    /// Read, write and ioctl on device files.
    Device,
    /// `/proc`: read, and write existing files.
    Proc,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandlockRule {
    pub path: PathBuf,
    pub access: LandlockAccess,
}

/// A directory created on the host, fd-relative under home, before the launch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostDir {
    /// Relative to home; no component may be a symlink.
    pub path_in_home: PathBuf,
    /// Hand the directory to the sandbox's uid (only when root launches): always
    /// for the app's own data, and otherwise only if this launch created it.
    pub chown_to: Option<(u32, u32)>,
    /// Whether an existing directory is handed over too (the app's own data only).
    pub chown_existing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxPlan {
    pub app_id: AppId,
    pub namespaces: Namespaces,
    pub ids: IdMaps,
    pub hostname: String,
    pub host_dirs: Vec<HostDir>,
    pub mounts: Vec<MountOp>,
    pub landlock: Vec<LandlockRule>,
    pub seccomp: SeccompPolicy,
    /// The most tasks (processes and threads) the sandbox may hold at once;
    /// see [`DEFAULT_MAX_PROCESSES`]. Records written before the limit
    /// existed read back with the default.
    #[serde(default = "default_max_processes")]
    pub max_processes: u64,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    /// `argv[0]` is an absolute path inside the sandbox; nothing is looked up in PATH.
    pub argv: Vec<String>,
    /// The permissions this plan enforces, as canonical finish-args.
    pub permissions: Vec<String>,
    /// Things the user should know, such as a granted socket whose host side is missing.
    pub notes: Vec<String>,
}

/// How many tasks (processes and threads) one sandbox may hold at once, so a
/// fork bomb inside it runs out of processes long before the host does.
///
/// Enforced as `RLIMIT_NPROC` on every process of the sandbox, set after it
/// entered the sandbox's user namespace (see `sandbox::limits`). Since Linux
/// 5.14 the kernel counts that limit per user namespace, so it counts this
/// sandbox's tasks only: neither the user's other processes nor other
/// sandboxes. Busy browsers run a few hundred to a couple of thousand
/// threads; 4096 leaves them room while staying far below the host's
/// `kernel.pid_max` (32768 on many systems).
pub const DEFAULT_MAX_PROCESSES: u64 = 4096;

fn default_max_processes() -> u64 {
    DEFAULT_MAX_PROCESSES
}

/// Host `/etc` entries a host-runtime app needs; each is bound read-only if present.
const HOST_ETC: &[&str] = &[
    "alternatives",
    "fonts",
    "gtk-3.0",
    "gtk-4.0",
    "host.conf",
    "ld.so.cache",
    "localtime",
    "machine-id",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "protocols",
    "pulse",
    "services",
    "ssl",
    "xdg",
];

/// Host directories that `filesystem=host` never exposes: the sandbox supplies its own.
const HOST_NOT_EXPORTED: &[&str] = &[
    "app",
    "bin",
    "boot",
    "dev",
    "etc",
    "lib",
    "lib32",
    "lib64",
    "libx32",
    "lost+found",
    "proc",
    "root",
    "run",
    "sbin",
    "sys",
    "tmp",
    "usr",
    "var",
];

/// Host environment variables passed through unchanged. Everything else is dropped.
pub const ENV_ALLOWLIST: &[&str] = &[
    "COLORTERM",
    "DESKTOP_SESSION",
    "LANG",
    "LANGUAGE",
    "LC_ADDRESS",
    "LC_ALL",
    "LC_COLLATE",
    "LC_CTYPE",
    "LC_IDENTIFICATION",
    "LC_MEASUREMENT",
    "LC_MESSAGES",
    "LC_MONETARY",
    "LC_NAME",
    "LC_NUMERIC",
    "LC_PAPER",
    "LC_TELEPHONE",
    "LC_TIME",
    "NO_COLOR",
    "TERM",
    "TZ",
    "XDG_CURRENT_DESKTOP",
    "XDG_SESSION_DESKTOP",
    "XDG_SESSION_TYPE",
];

struct Builder<'a> {
    facts: &'a HostFacts,
    mounts: Vec<MountOp>,
    env: BTreeMap<String, String>,
    notes: Vec<String>,
    sandbox_runtime_dir: PathBuf,
}

impl Builder<'_> {
    fn dir(&mut self, path: impl Into<PathBuf>, mode: u32) {
        self.mounts.push(MountOp::Dir {
            path: path.into(),
            mode,
        });
    }

    fn bind(
        &mut self,
        source: impl Into<PathBuf>,
        dest: impl Into<PathBuf>,
        access: BindAccess,
        trust: SourceTrust,
        optional: bool,
    ) {
        self.mounts.push(MountOp::Bind {
            source: source.into(),
            dest: dest.into(),
            access,
            trust,
            optional,
        });
    }

    fn symlink(&mut self, target: &str, path: &str) {
        self.mounts.push(MountOp::Symlink {
            target: target.into(),
            path: path.into(),
        });
    }

    /// Binds a host socket into the sandbox's runtime dir under `name`.
    fn runtime_socket(&mut self, source: PathBuf, name: &str) -> PathBuf {
        let dest = self.sandbox_runtime_dir.join(name);
        self.bind(
            source,
            &dest,
            BindAccess::ReadWrite,
            SourceTrust::NoSymlinks,
            true,
        );
        dest
    }
}

/// Computes the effective permissions: the metadata's, then each override in order.
pub fn effective_permissions(metadata: &AppMetadata, overrides: &[Change]) -> Permissions {
    Permissions::from_changes(metadata.permissions.iter().chain(overrides))
}

pub fn plan(request: &LaunchRequest, facts: &HostFacts) -> Result<SandboxPlan, PlanError> {
    let meta = &request.metadata;
    let permissions = effective_permissions(meta, &request.overrides);
    let command = request.command.as_deref().unwrap_or(&meta.command);
    validate_command(command).map_err(|problem| PlanError::BadCommand {
        command: command.to_owned(),
        problem,
    })?;
    let program = if command.starts_with('/') {
        command.to_owned()
    } else {
        format!("/app/bin/{command}")
    };

    let (app_uid, app_gid) = if facts.is_root() {
        (ROOT_SANDBOX_ID, ROOT_SANDBOX_ID)
    } else {
        (facts.uid, facts.gid)
    };
    let ids = id_maps(facts, app_uid, app_gid);
    let app_home = facts.home.join(".var/app").join(meta.id.as_str());
    let sandbox_runtime_dir = PathBuf::from(format!("/run/user/{app_uid}"));

    let mut b = Builder {
        facts,
        mounts: Vec::new(),
        env: BTreeMap::new(),
        notes: Vec::new(),
        sandbox_runtime_dir: sandbox_runtime_dir.clone(),
    };

    base_system(&mut b, request, &permissions, app_uid, app_gid);
    let state_dirs = filesystem_grants(&mut b, &permissions, &app_home)?;

    // The app's own home comes after the grants, so a granted parent never hides it.
    b.bind(
        &app_home,
        &app_home,
        BindAccess::ReadWrite,
        SourceTrust::NoSymlinks,
        false,
    );

    if let Some(build_dir) = &request.build_dir {
        b.bind(
            build_dir,
            BUILD_DIR_IN_SANDBOX,
            BindAccess::ReadWrite,
            SourceTrust::NoSymlinks,
            false,
        );
    }

    sockets(&mut b, &permissions, request.bus_proxy_socket.as_deref());
    devices(&mut b, &permissions);
    documents(&mut b, &request.documents)?;

    let chown_to = facts.is_root().then_some((app_uid, app_gid));
    let app_home_rel = app_home
        .strip_prefix(&facts.home)
        .unwrap_or(&app_home)
        .to_path_buf();
    let app_dir = |path_in_home: PathBuf| HostDir {
        path_in_home,
        chown_to,
        chown_existing: true,
    };
    let mut host_dirs = vec![app_dir(app_home_rel.clone())];
    for sub in ["data", "config", "cache", ".local/state"] {
        host_dirs.push(app_dir(app_home_rel.join(sub)));
    }
    for persist in &permissions.persist {
        host_dirs.push(app_dir(app_home_rel.join(persist.as_str())));
    }
    for (location, access) in &permissions.filesystems {
        if *access != FsAccess::Create {
            continue;
        }
        let Some(host) = host_path(facts, location) else {
            continue;
        };
        match host.strip_prefix(&facts.home) {
            Ok(rel) if !rel.as_os_str().is_empty() => host_dirs.push(HostDir {
                path_in_home: rel.to_path_buf(),
                chown_to,
                chown_existing: false,
            }),
            _ => b.notes.push(format!(
                "filesystem={location}:create: only directories inside home are created; shared only if it exists"
            )),
        }
    }
    // appbox's state dirs under a writable grant must exist, so that they can be
    // covered read-only before the app could create them itself.
    for state in state_dirs {
        if let Ok(rel) = state.strip_prefix(&facts.home) {
            host_dirs.push(HostDir {
                path_in_home: rel.to_path_buf(),
                chown_to: None,
                chown_existing: false,
            });
        }
    }

    environment(&mut b, meta, &app_home, app_uid, &permissions);

    let mut argv = vec![program];
    argv.extend(request.args.iter().cloned());

    let landlock = landlock_rules(&b.mounts);
    let Builder {
        mounts, env, notes, ..
    } = b;
    Ok(SandboxPlan {
        app_id: meta.id.clone(),
        namespaces: Namespaces {
            user: true,
            mount: true,
            pid: true,
            ipc: !permissions.shares.contains(&Share::Ipc),
            uts: true,
            cgroup: true,
            net: !permissions.shares.contains(&Share::Network),
        },
        ids,
        hostname: facts.hostname.clone(),
        host_dirs,
        mounts,
        landlock,
        seccomp: SeccompPolicy::default_for_apps(),
        max_processes: DEFAULT_MAX_PROCESSES,
        env,
        cwd: match request.build_dir {
            Some(_) => PathBuf::from(BUILD_DIR_IN_SANDBOX),
            None => app_home,
        },
        argv,
        permissions: permissions.to_args(),
        notes,
    })
}

fn id_maps(facts: &HostFacts, app_uid: u32, app_gid: u32) -> IdMaps {
    let one = |id: u32| IdRange {
        inside: id,
        outside: id,
        count: 1,
    };
    if facts.is_root() {
        // Root keeps uid 0 for the setup process only; the app drops to an
        // unprivileged uid that is mapped to itself.
        IdMaps {
            uid_map: vec![one(0), one(app_uid)],
            gid_map: vec![one(0), one(app_gid)],
            deny_setgroups: false,
            app_uid,
            app_gid,
        }
    } else {
        IdMaps {
            uid_map: vec![one(facts.uid)],
            gid_map: vec![one(facts.gid)],
            deny_setgroups: true,
            app_uid,
            app_gid,
        }
    }
}

fn base_system(
    b: &mut Builder,
    request: &LaunchRequest,
    permissions: &Permissions,
    app_uid: u32,
    app_gid: u32,
) {
    let facts = b.facts;
    // The runtime at /usr, with the usual links.
    match &request.runtime_files {
        Some(files) => b.bind(
            files,
            "/usr",
            BindAccess::ReadOnly,
            SourceTrust::NoSymlinks,
            false,
        ),
        None => b.bind(
            "/usr",
            "/usr",
            BindAccess::ReadOnly,
            SourceTrust::System,
            false,
        ),
    }
    let host_runtime = request.runtime_files.is_none();
    if facts.merged_usr || !host_runtime {
        for (link, target) in [
            ("/bin", "usr/bin"),
            ("/sbin", "usr/sbin"),
            ("/lib", "usr/lib"),
            ("/lib64", "usr/lib64"),
        ] {
            b.symlink(target, link);
        }
    } else {
        for dir in ["/bin", "/sbin", "/lib", "/lib64"] {
            b.bind(dir, dir, BindAccess::ReadOnly, SourceTrust::System, true);
        }
    }
    b.bind(
        &request.app_files,
        "/app",
        if request.build_dir.is_some() {
            BindAccess::ReadWrite
        } else {
            BindAccess::ReadOnly
        },
        SourceTrust::NoSymlinks,
        false,
    );

    // A minimal /etc: generated identity files, and a fixed list from the host.
    b.dir("/etc", 0o755);
    let user = if facts.is_root() {
        "nobody"
    } else {
        facts.user_name.as_str()
    };
    // The passwd home matches $HOME, so getpwuid() and $HOME agree.
    let home = facts
        .home
        .join(".var/app")
        .join(request.metadata.id.as_str());
    let home = home.display();
    b.mounts.push(MountOp::File {
        path: "/etc/passwd".into(),
        contents: format!(
            "{user}:x:{app_uid}:{app_gid}::{home}:/bin/sh\n{}",
            if app_uid == ROOT_SANDBOX_ID {
                String::new()
            } else {
                format!("nobody:x:{ROOT_SANDBOX_ID}:{ROOT_SANDBOX_ID}::/:/usr/sbin/nologin\n")
            }
        ),
        mode: 0o644,
    });
    let group = if facts.is_root() { "nogroup" } else { user };
    b.mounts.push(MountOp::File {
        path: "/etc/group".into(),
        contents: format!(
            "{group}:x:{app_gid}:\n{}",
            if app_gid == ROOT_SANDBOX_ID {
                String::new()
            } else {
                format!("nogroup:x:{ROOT_SANDBOX_ID}:\n")
            }
        ),
        mode: 0o644,
    });
    b.mounts.push(MountOp::File {
        path: "/etc/hostname".into(),
        contents: format!("{}\n", facts.hostname),
        mode: 0o644,
    });
    b.mounts.push(MountOp::File {
        path: "/etc/hosts".into(),
        contents: format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
            facts.hostname
        ),
        mode: 0o644,
    });
    if host_runtime {
        for name in HOST_ETC {
            let path = format!("/etc/{name}");
            b.bind(
                &path,
                &path,
                BindAccess::ReadOnly,
                SourceTrust::System,
                true,
            );
        }
    }
    if permissions.shares.contains(&Share::Network) {
        b.bind(
            "/etc/resolv.conf",
            "/etc/resolv.conf",
            BindAccess::ReadOnly,
            SourceTrust::System,
            true,
        );
    }

    // /dev: a tmpfs with the harmless nodes, a private devpts and private shm.
    let share_all_devices = permissions.devices.contains(&Device::All);
    if share_all_devices {
        b.bind(
            "/dev",
            "/dev",
            BindAccess::Device,
            SourceTrust::System,
            false,
        );
    } else {
        b.mounts.push(MountOp::Tmpfs {
            path: "/dev".into(),
            mode: 0o755,
            owner: None,
        });
        for node in ["null", "zero", "full", "random", "urandom", "tty"] {
            let path = format!("/dev/{node}");
            b.bind(&path, &path, BindAccess::Device, SourceTrust::System, false);
        }
        b.dir("/dev/pts", 0o755);
        b.symlink("pts/ptmx", "/dev/ptmx");
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("core", "/proc/kcore"),
        ] {
            b.symlink(target, &format!("/dev/{name}"));
        }
    }
    b.mounts.push(MountOp::Devpts {
        path: "/dev/pts".into(),
    });
    if permissions.devices.contains(&Device::Shm) {
        if !share_all_devices {
            b.dir("/dev/shm", 0o1777);
            b.bind(
                "/dev/shm",
                "/dev/shm",
                BindAccess::ReadWrite,
                SourceTrust::System,
                false,
            );
        }
    } else {
        // Shared memory stays private unless device=shm, even with device=all.
        b.mounts.push(MountOp::Tmpfs {
            path: "/dev/shm".into(),
            mode: 0o1777,
            owner: None,
        });
    }

    b.mounts.push(MountOp::Proc {
        path: "/proc".into(),
    });
    b.dir("/sys", 0o755);
    for dir in ["block", "bus", "class", "dev", "devices"] {
        let path = format!("/sys/{dir}");
        b.bind(
            &path,
            &path,
            BindAccess::ReadOnly,
            SourceTrust::System,
            true,
        );
    }

    b.mounts.push(MountOp::Tmpfs {
        path: "/tmp".into(),
        mode: 0o1777,
        owner: None,
    });
    b.dir("/var", 0o755);
    b.symlink("../tmp", "/var/tmp");
    b.dir("/run", 0o755);
    b.dir("/run/user", 0o755);
    b.mounts.push(MountOp::Tmpfs {
        path: b.sandbox_runtime_dir.clone(),
        mode: 0o700,
        owner: Some((app_uid, app_gid)),
    });
    // Made by the setup, read-only, so the app cannot plant anything where the
    // portal will put documents, even when it has none yet.
    b.dir(b.sandbox_runtime_dir.join(DOCUMENTS_DIR), 0o555);
}

/// Binds each granted document at `/run/user/UID/doc/<doc_id>/<name>`, in a
/// read-only directory of its own. A file deleted since the grant is skipped.
fn documents(b: &mut Builder, documents: &[DocumentMount]) -> Result<(), PlanError> {
    let mut seen = BTreeSet::new();
    for doc in documents {
        check_document(doc)?;
        if !seen.insert(doc.doc_id.as_str()) {
            return Err(PlanError::DuplicateDocument(doc.doc_id.clone()));
        }
    }
    let dir = b.sandbox_runtime_dir.join(DOCUMENTS_DIR);
    for doc in documents {
        let doc_dir = dir.join(&doc.doc_id);
        b.dir(&doc_dir, 0o555);
        b.bind(
            &doc.host_path,
            doc_dir.join(&doc.name),
            if doc.writable {
                BindAccess::ReadWrite
            } else {
                BindAccess::ReadOnly
            },
            SourceTrust::RegularFile,
            true,
        );
    }
    Ok(())
}

/// The host path a filesystem location names, if the host has one.
fn host_path(facts: &HostFacts, location: &FsLocation) -> Option<PathBuf> {
    let join = |base: &Path, sub: &crate::permissions::RelPath| {
        if sub.is_empty() {
            base.to_path_buf()
        } else {
            base.join(sub.as_str())
        }
    };
    match location {
        FsLocation::Home => Some(facts.home.clone()),
        FsLocation::HomePath(p) => Some(facts.home.join(p.as_str())),
        FsLocation::Absolute(p) => Some(Path::new("/").join(p.as_str())),
        FsLocation::Xdg(dir, sub) => {
            let base = match dir {
                XdgDir::Config => facts.home.join(".config"),
                XdgDir::Cache => facts.home.join(".cache"),
                XdgDir::Data => facts.home.join(".local/share"),
                XdgDir::Run => facts.runtime_dir.clone(),
                user_dir => facts.user_dirs.get(user_dir)?.clone(),
            };
            Some(join(&base, sub))
        }
        FsLocation::Host | FsLocation::HostOs | FsLocation::HostEtc => None,
    }
}

/// Where appbox keeps its own state: its config and overrides, its store, the
/// launchers it exports, and its instance records. An app that could write
/// there could rewrite its own or another app's permissions (firejail #7154).
/// Also the session bus's activation files (in the data home and the runtime
/// dir), where `appbox run` registers the portal: every app may start the
/// portal, so an app that rewrote them would start its own program outside
/// any sandbox.
fn appbox_state_dirs(facts: &HostFacts) -> [PathBuf; 6] {
    let config = facts.config_home();
    let data = facts.data_home();
    [
        config.join("appbox"),
        data.join("appbox"),
        data.join("applications"),
        data.join("dbus-1"),
        facts.runtime_dir.join("appbox"),
        facts.runtime_dir.join("dbus-1"),
    ]
}

/// Binds the filesystem grants and persisted directories. Returns appbox's
/// state dirs that a writable grant covers: they are covered read-only here and
/// must be created on the host before the launch.
fn filesystem_grants(
    b: &mut Builder,
    permissions: &Permissions,
    app_home: &Path,
) -> Result<Vec<PathBuf>, PlanError> {
    let facts = b.facts;
    // (source, dest, access, trust); grants are optional: a missing path is skipped.
    let mut binds: Vec<(PathBuf, PathBuf, BindAccess, SourceTrust)> = Vec::new();
    let access_of = |access: FsAccess| {
        if access.is_writable() {
            BindAccess::ReadWrite
        } else {
            BindAccess::ReadOnly
        }
    };
    for (location, access) in &permissions.filesystems {
        match location {
            FsLocation::Host => {
                for dir in &facts.root_dirs {
                    if !HOST_NOT_EXPORTED.contains(&dir.as_str()) {
                        let path = Path::new("/").join(dir);
                        binds.push((
                            path.clone(),
                            path,
                            access_of(*access),
                            SourceTrust::NoSymlinks,
                        ));
                    }
                }
                let media = PathBuf::from("/run/media");
                binds.push((
                    media.clone(),
                    media,
                    access_of(*access),
                    SourceTrust::NoSymlinks,
                ));
            }
            FsLocation::HostOs => {
                for dir in ["usr", "bin", "sbin", "lib", "lib64", "lib32"] {
                    binds.push((
                        Path::new("/").join(dir),
                        Path::new("/run/host").join(dir),
                        BindAccess::ReadOnly,
                        SourceTrust::System,
                    ));
                }
            }
            FsLocation::HostEtc => binds.push((
                "/etc".into(),
                "/run/host/etc".into(),
                BindAccess::ReadOnly,
                SourceTrust::System,
            )),
            FsLocation::Xdg(XdgDir::Run, sub) => {
                if sub.is_empty() {
                    b.notes.push(format!(
                        "filesystem={location}: the whole runtime directory is not shared; name a path inside it"
                    ));
                    continue;
                }
                // The sandbox's own `doc` holds the documents the portal grants:
                // a host directory there would receive what appbox creates in it.
                if Path::new(sub.as_str()).starts_with(DOCUMENTS_DIR) {
                    b.notes.push(format!(
                        "filesystem={location}: {DOCUMENTS_DIR} in the runtime directory is where granted documents appear; not shared"
                    ));
                    continue;
                }
                binds.push((
                    facts.runtime_dir.join(sub.as_str()),
                    b.sandbox_runtime_dir.join(sub.as_str()),
                    access_of(*access),
                    SourceTrust::NoSymlinks,
                ));
            }
            other => match host_path(facts, other) {
                Some(path) => binds.push((
                    path.clone(),
                    path,
                    access_of(*access),
                    SourceTrust::NoSymlinks,
                )),
                None => b.notes.push(format!(
                    "filesystem={location}: this XDG directory is not set up on the host; skipped"
                )),
            },
        }
    }

    let state_dirs = appbox_state_dirs(facts);
    let records = facts.runtime_dir.join("appbox");
    for (source, _, access, _) in &binds {
        // Instance records describe every running app: not even readable.
        if *access != BindAccess::ReadWrite && !source.starts_with(&records) {
            continue;
        }
        if let Some(state) = state_dirs.iter().find(|state| source.starts_with(state)) {
            let location = permissions
                .filesystems
                .keys()
                .find(|l| host_path(facts, l).is_some_and(|p| p == *source))
                .map_or_else(|| source.display().to_string(), ToString::to_string);
            return Err(PlanError::StateGrant {
                location,
                path: state.clone(),
            });
        }
    }

    // A writable grant above a state dir: cover the state dir read-only, and pin
    // every directory between the grant and it with a bind of its own, because a
    // mount point cannot be renamed away (rename returns EBUSY) while a plain
    // parent could be, with a fresh state dir made in its place.
    let mut covered = Vec::new();
    let mut extra = Vec::new();
    for state in &state_dirs {
        let Some(outermost) = binds
            .iter()
            .filter(|(_, dest, access, _)| {
                *access == BindAccess::ReadWrite && state.starts_with(dest)
            })
            .map(|(_, dest, ..)| dest.clone())
            .min_by_key(|dest| dest.components().count())
        else {
            continue;
        };
        for pinned in state.ancestors().skip(1) {
            if pinned == outermost {
                break;
            }
            extra.push((
                pinned.to_path_buf(),
                pinned.to_path_buf(),
                BindAccess::ReadWrite,
                SourceTrust::NoSymlinks,
            ));
        }
        extra.push((
            state.clone(),
            state.clone(),
            BindAccess::ReadOnly,
            SourceTrust::NoSymlinks,
        ));
        covered.push(state.clone());
    }
    binds.extend(extra);

    // A persisted directory lives in the app's own data but appears in home.
    // When a grant already shows that place in home, the grant wins.
    for persist in &permissions.persist {
        let dest = facts.home.join(persist.as_str());
        if binds
            .iter()
            .any(|(_, granted, ..)| dest.starts_with(granted))
        {
            b.notes.push(format!(
                "persist={}: home is shared there already; nothing to persist",
                persist.as_str()
            ));
            continue;
        }
        binds.push((
            app_home.join(persist.as_str()),
            dest,
            BindAccess::ReadWrite,
            SourceTrust::NoSymlinks,
        ));
    }

    // Parents before children, so a narrower grant is mounted on top of a wider
    // one; of two grants of one path, the stronger is kept.
    binds.sort_by(|a, b| {
        a.1.cmp(&b.1)
            .then_with(|| access_rank(b.2).cmp(&access_rank(a.2)))
    });
    binds.dedup_by(|later, earlier| later.1 == earlier.1);
    for (source, dest, access, trust) in binds {
        // Persisted directories and covered state are created beforehand, so
        // they must exist; grants of missing paths are skipped.
        let created = covered
            .iter()
            .any(|s| s.starts_with(&source) && s.starts_with(&facts.home));
        let optional = !source.starts_with(app_home) && !created;
        b.bind(source, dest, access, trust, optional);
    }
    Ok(covered)
}

fn access_rank(access: BindAccess) -> u8 {
    match access {
        BindAccess::ReadOnly => 0,
        BindAccess::ReadWrite => 1,
        BindAccess::Device => 2,
    }
}

/// X11 display number from `DISPLAY` (`:0`, `:0.0`, `unix:1`); TCP displays are not supported.
fn x11_display_number(display: &str) -> Option<&str> {
    let rest = display.strip_prefix("unix").unwrap_or(display);
    let rest = rest.strip_prefix(':')?;
    let number = rest.split('.').next()?;
    (!number.is_empty() && number.bytes().all(|c| c.is_ascii_digit())).then_some(number)
}

fn sockets(b: &mut Builder, permissions: &Permissions, bus_proxy: Option<&Path>) {
    let facts = b.facts;
    let has = |s: Socket| permissions.sockets.contains(&s);
    let wayland_granted = has(Socket::Wayland);
    if wayland_granted {
        match &facts.wayland_socket {
            Some(source) => {
                b.runtime_socket(source.clone(), "wayland-0");
                b.env.insert("WAYLAND_DISPLAY".into(), "wayland-0".into());
            }
            None => b.notes.push(
                "socket=wayland: no Wayland socket (WAYLAND_DISPLAY) on the host; Wayland is not shared"
                    .to_owned(),
            ),
        }
    }
    let wayland_available = wayland_granted && facts.wayland_socket.is_some();
    if has(Socket::X11) || (has(Socket::FallbackX11) && !wayland_available) {
        match facts.env.get("DISPLAY").map(|d| (d, x11_display_number(d))) {
            Some((_, Some(number))) => {
                let socket = format!("/tmp/.X11-unix/X{number}");
                b.dir("/tmp/.X11-unix", 0o755);
                b.bind(
                    &socket,
                    &socket,
                    BindAccess::ReadWrite,
                    SourceTrust::NoSymlinks,
                    true,
                );
                b.env.insert("DISPLAY".into(), format!(":{number}"));
                let xauthority = facts
                    .env
                    .get("XAUTHORITY")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| facts.home.join(".Xauthority"));
                let dest = b.sandbox_runtime_dir.join("Xauthority");
                b.mounts.push(MountOp::Xauthority {
                    source: xauthority,
                    display: number.to_owned(),
                    path: dest.clone(),
                });
                b.env
                    .insert("XAUTHORITY".into(), dest.display().to_string());
            }
            Some((display, None)) => b.notes.push(format!(
                "socket=x11: DISPLAY={} is not a local display; X11 is not shared",
                crate::text::Escaped(display)
            )),
            None => b
                .notes
                .push("socket=x11: DISPLAY is not set; X11 is not shared".to_owned()),
        }
    }
    if has(Socket::Pulseaudio) {
        let dest = b.runtime_socket(facts.runtime_dir.join("pulse/native"), "pulse/native");
        b.env
            .insert("PULSE_SERVER".into(), format!("unix:{}", dest.display()));
    }
    if has(Socket::Pipewire) {
        b.runtime_socket(facts.runtime_dir.join("pipewire-0"), "pipewire-0");
    }
    // The session bus is the launch's proxy, which filters by the app's
    // talk/own/see names (all of the bus with socket=session-bus) and tells
    // the app's identity from the socket. Without a proxy, only
    // socket=session-bus shares the host's bus, unfiltered.
    let session_bus = match bus_proxy {
        Some(proxy) => Some(proxy.to_owned()),
        None if has(Socket::SessionBus) => Some(host_session_bus(facts)),
        None => None,
    };
    if let Some(source) = session_bus {
        let dest = b.runtime_socket(source, "bus");
        b.env.insert(
            "DBUS_SESSION_BUS_ADDRESS".into(),
            format!("unix:path={}", dest.display()),
        );
        // Through the proxy, the portal names reach appbox's portal. GTK uses
        // portals for its file choosers only when told (or in Flatpak):
        // GTK 4 reads GDK_DEBUG=portals, GTK 3 GTK_USE_PORTAL=1. An app's
        // own --env settings come later and win.
        if bus_proxy.is_some() {
            b.env.insert("GDK_DEBUG".into(), "portals".into());
            b.env.insert("GTK_USE_PORTAL".into(), "1".into());
        }
    }
    if has(Socket::SystemBus) {
        let socket = "/run/dbus/system_bus_socket";
        b.dir("/run/dbus", 0o755);
        b.bind(
            socket,
            socket,
            BindAccess::ReadWrite,
            SourceTrust::System,
            true,
        );
        b.env.insert(
            "DBUS_SYSTEM_BUS_ADDRESS".into(),
            format!("unix:path={socket}"),
        );
    }
    if has(Socket::SshAuth) {
        if let Some(sock) = facts
            .env
            .get("SSH_AUTH_SOCK")
            .map(PathBuf::from)
            .filter(|p| clean_absolute(p))
        {
            let dest = b.runtime_socket(sock, "ssh-auth");
            b.env
                .insert("SSH_AUTH_SOCK".into(), dest.display().to_string());
        } else {
            b.notes.push(
                "socket=ssh-auth: SSH_AUTH_SOCK is not set to an absolute path; skipped".to_owned(),
            );
        }
    }
    if has(Socket::Cups) {
        let socket = "/run/cups/cups.sock";
        b.dir("/run/cups", 0o755);
        b.bind(
            socket,
            socket,
            BindAccess::ReadWrite,
            SourceTrust::System,
            true,
        );
    }
    if has(Socket::GpgAgent) {
        // Only the agent itself: the directory also holds the SSH agent socket.
        b.runtime_socket(
            facts.runtime_dir.join("gnupg/S.gpg-agent"),
            "gnupg/S.gpg-agent",
        );
    }
}

/// The path of a `unix:path=...` D-Bus address; abstract addresses have none.
/// The host's session bus socket: from DBUS_SESSION_BUS_ADDRESS when it names
/// a clean absolute `unix:path=`, else `$XDG_RUNTIME_DIR/bus`.
pub fn host_session_bus(facts: &HostFacts) -> PathBuf {
    facts
        .env
        .get("DBUS_SESSION_BUS_ADDRESS")
        .and_then(|a| unix_path_of_bus_address(a))
        .filter(|p| clean_absolute(p))
        .unwrap_or_else(|| facts.runtime_dir.join("bus"))
}

fn unix_path_of_bus_address(address: &str) -> Option<PathBuf> {
    address
        .split(';')
        .filter_map(|a| a.strip_prefix("unix:"))
        .flat_map(|params| params.split(','))
        .find_map(|kv| kv.strip_prefix("path="))
        .map(PathBuf::from)
}

fn devices(b: &mut Builder, permissions: &Permissions) {
    if permissions.devices.contains(&Device::All) {
        return;
    }
    for device in &permissions.devices {
        let nodes: &[&str] = match device {
            Device::Dri => &[
                "/dev/dri",
                "/dev/nvidia0",
                "/dev/nvidiactl",
                "/dev/nvidia-modeset",
                "/dev/nvidia-uvm",
                "/dev/nvidia-uvm-tools",
            ],
            Device::Kvm => &["/dev/kvm"],
            Device::Input => &["/dev/input"],
            Device::Usb => &["/dev/bus/usb"],
            Device::Shm | Device::All => &[],
        };
        for node in nodes {
            b.bind(*node, *node, BindAccess::Device, SourceTrust::System, true);
        }
    }
}

fn environment(
    b: &mut Builder,
    meta: &AppMetadata,
    app_home: &Path,
    app_uid: u32,
    permissions: &Permissions,
) {
    let facts = b.facts;
    for name in ENV_ALLOWLIST {
        if let Some(value) = facts.env.get(*name) {
            b.env.insert((*name).to_owned(), value.clone());
        }
    }
    let home = app_home.display().to_string();
    let user = if facts.is_root() {
        "nobody".to_owned()
    } else {
        facts.user_name.clone()
    };
    let fixed = [
        ("PATH", "/app/bin:/usr/bin:/bin".to_owned()),
        ("HOME", home.clone()),
        ("USER", user.clone()),
        ("LOGNAME", user),
        ("SHELL", "/bin/sh".to_owned()),
        ("XDG_RUNTIME_DIR", format!("/run/user/{app_uid}")),
        ("XDG_DATA_HOME", format!("{home}/data")),
        ("XDG_CONFIG_HOME", format!("{home}/config")),
        ("XDG_CACHE_HOME", format!("{home}/cache")),
        ("XDG_STATE_HOME", format!("{home}/.local/state")),
        ("XDG_DATA_DIRS", "/app/share:/usr/share".to_owned()),
        ("XDG_CONFIG_DIRS", "/app/etc/xdg:/etc/xdg".to_owned()),
        ("APPBOX_ID", meta.id.to_string()),
        ("container", "appbox".to_owned()),
    ];
    for (name, value) in fixed {
        b.env.insert(name.to_owned(), value);
    }
    for (name, value) in &permissions.env {
        b.env.insert(name.clone(), value.clone());
    }
}

/// Landlock rules that mirror the mounts: each mounted path gets the access its
/// mount allows, and the root tmpfs only lets directories be listed. Landlock
/// grants the union of a path's rules and its parents', so a read-only mount
/// nested in a writable one is enforced by the mount alone.
pub fn landlock_rules(mounts: &[MountOp]) -> Vec<LandlockRule> {
    let mut rules = vec![
        LandlockRule {
            path: "/".into(),
            access: LandlockAccess::ListOnly,
        },
        LandlockRule {
            path: "/etc".into(),
            access: LandlockAccess::ReadOnly,
        },
    ];
    for op in mounts {
        let access = match op {
            MountOp::Bind { access, .. } => match access {
                BindAccess::ReadOnly => LandlockAccess::ReadOnly,
                BindAccess::ReadWrite => LandlockAccess::ReadWrite,
                BindAccess::Device => LandlockAccess::Device,
            },
            MountOp::Tmpfs { path, .. } if path == Path::new("/dev") => LandlockAccess::ReadOnly,
            MountOp::Tmpfs { .. } => LandlockAccess::ReadWrite,
            MountOp::Devpts { .. } => LandlockAccess::Device,
            MountOp::Proc { .. } => LandlockAccess::Proc,
            MountOp::Xauthority { .. } => LandlockAccess::ReadOnly,
            MountOp::Dir { .. } | MountOp::Symlink { .. } | MountOp::File { .. } => continue,
        };
        rules.push(LandlockRule {
            path: op.target().to_path_buf(),
            access,
        });
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_numbers() {
        assert_eq!(x11_display_number(":0"), Some("0"));
        assert_eq!(x11_display_number(":12.0"), Some("12"));
        assert_eq!(x11_display_number("unix:3"), Some("3"));
        assert_eq!(x11_display_number("remote:0"), None);
        assert_eq!(x11_display_number(":../x"), None);
        assert_eq!(x11_display_number(""), None);
    }

    #[test]
    fn document_ids() {
        assert_eq!(check_doc_id("0123abcd"), Ok(()));
        assert_eq!(check_doc_id("ffffffff"), Ok(()));
        for bad in [
            "",
            "0123abc",
            "0123abcde",
            "0123ABCD",
            "0123abcg",
            "../../..",
            "0123abc/",
            "0123ab.d",
            "0123abc\0",
            "０１２３abcd",
        ] {
            assert!(check_doc_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn document_names() {
        for good in [
            "notes.txt",
            ".hidden",
            "...",
            "a b",
            "ünïcødé",
            &"x".repeat(255),
        ] {
            assert_eq!(check_doc_name(good), Ok(()), "{good:?}");
        }
        let long = "x".repeat(256);
        // 128 two-byte characters: 256 bytes.
        let long_utf8 = "é".repeat(128);
        for bad in [
            "", ".", "..", "a/b", "/", "../x", "x/", "a\0b", &long, &long_utf8,
        ] {
            assert!(check_doc_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn document_host_paths_are_absolute_and_clean() {
        let doc = |host_path: &str| DocumentMount {
            doc_id: "0123abcd".into(),
            name: "notes.txt".into(),
            host_path: host_path.into(),
            writable: false,
        };
        assert_eq!(check_document(&doc("/home/ada/notes.txt")), Ok(()));
        for bad in ["notes.txt", "/home/ada/../x", "../x", "/"] {
            assert!(
                matches!(
                    check_document(&doc(bad)),
                    Err(PlanError::BadDocument { .. })
                ),
                "{bad:?}"
            );
        }
    }

    fn facts(uid: u32) -> HostFacts {
        let home = PathBuf::from(if uid == 0 { "/root" } else { "/home/ada" });
        HostFacts {
            uid,
            gid: uid,
            user_name: "ada".into(),
            user_dirs: BTreeMap::new(),
            runtime_dir: PathBuf::from(format!("/run/user/{uid}")),
            home,
            env: BTreeMap::new(),
            hostname: "host".into(),
            merged_usr: true,
            root_dirs: Vec::new(),
            wayland_socket: None,
        }
    }

    fn request() -> LaunchRequest {
        let text = "id = \"org.example.Limits\"\nname = \"Limits\"\ncommand = \"app\"\nruntime = \"host\"\npermissions = [\"--share=network\"]\n";
        LaunchRequest::new(
            AppMetadata::parse(text, Path::new("metadata.toml")).unwrap(),
            PathBuf::from("/apps/org.example.Limits/files"),
        )
    }

    #[test]
    fn every_sandbox_gets_the_process_limit() {
        for uid in [1000, 0] {
            let plan = plan(&request(), &facts(uid)).unwrap();
            assert_eq!(plan.max_processes, DEFAULT_MAX_PROCESSES, "uid {uid}");
        }
        // Room for a busy browser, and far below a 32768 pid_max.
        const { assert!(DEFAULT_MAX_PROCESSES >= 2048 && DEFAULT_MAX_PROCESSES <= 8192) };
    }

    #[test]
    fn a_record_without_the_limit_reads_back_with_the_default() {
        let plan = plan(&request(), &facts(1000)).unwrap();
        let mut json = serde_json::to_value(&plan).unwrap();
        assert_eq!(json["max_processes"], DEFAULT_MAX_PROCESSES);
        json.as_object_mut().unwrap().remove("max_processes");
        let read: SandboxPlan = serde_json::from_value(json).unwrap();
        assert_eq!(read, plan);
    }

    #[test]
    fn bus_addresses() {
        assert_eq!(
            unix_path_of_bus_address("unix:path=/run/user/1000/bus,guid=1"),
            Some(PathBuf::from("/run/user/1000/bus"))
        );
        assert_eq!(unix_path_of_bus_address("unix:abstract=/tmp/dbus-x"), None);
    }
}

//! What the planner needs to know about the host, gathered in one place so that
//! the planner itself stays pure and its tests can describe any host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::permissions::XdgDir;

#[derive(Debug, thiserror::Error)]
pub enum HostFactsError {
    #[error("cannot find uid {uid} in the user database")]
    NoHome { uid: u32 },
    #[error("cannot resolve the home directory {path}")]
    Home {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("XDG_RUNTIME_DIR is not set and /run/user/{uid} does not exist; log in through a session manager or set XDG_RUNTIME_DIR")]
    NoRuntimeDir { uid: u32 },
}

/// The unprivileged uid and gid that apps run as when appbox is started by root.
pub const ROOT_SANDBOX_ID: u32 = 65534;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub uid: u32,
    pub gid: u32,
    pub user_name: String,
    /// The canonical home directory, from the user database.
    pub home: PathBuf,
    /// The host's `$XDG_RUNTIME_DIR`.
    pub runtime_dir: PathBuf,
    /// The host's XDG user directories that lie inside home (documents, music, ...).
    pub user_dirs: BTreeMap<XdgDir, PathBuf>,
    /// The launcher's own environment; only an allowlist of it reaches the app.
    pub env: BTreeMap<String, String>,
    pub hostname: String,
    /// Whether `/bin`, `/lib` and friends are links into `/usr`.
    pub merged_usr: bool,
    /// Names of the host's top-level directories, for `filesystem=host`.
    pub root_dirs: Vec<String>,
    /// The host's Wayland socket, if `WAYLAND_DISPLAY` names one that exists.
    /// `fallback-x11` needs to know: X11 is shared when Wayland is not there.
    pub wayland_socket: Option<PathBuf>,
}

impl HostFacts {
    pub fn gather() -> Result<Self, HostFactsError> {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let user = nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .ok_or(HostFactsError::NoHome { uid })?;
        let env: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        // Like GLib, $HOME wins over the user database; it is the user's own choice.
        let home_dir = match env.get("HOME") {
            Some(home) if Path::new(home).is_absolute() => PathBuf::from(home),
            _ => user.dir.clone(),
        };
        let home = std::fs::canonicalize(&home_dir).map_err(|source| HostFactsError::Home {
            path: home_dir,
            source,
        })?;
        let runtime_dir = match env.get("XDG_RUNTIME_DIR") {
            Some(dir) if Path::new(dir).is_absolute() => PathBuf::from(dir),
            _ => {
                let fallback = PathBuf::from(format!("/run/user/{uid}"));
                if !fallback.is_dir() {
                    return Err(HostFactsError::NoRuntimeDir { uid });
                }
                fallback
            }
        };
        let user_dirs = std::fs::read_to_string(home.join(".config/user-dirs.dirs"))
            .map(|text| parse_user_dirs(&text, &home))
            .unwrap_or_else(|_| default_user_dirs(&home));
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "appbox".to_owned());
        let merged_usr = std::fs::read_link("/bin").is_ok_and(|t| t == Path::new("usr/bin"));
        let mut root_dirs: Vec<String> = std::fs::read_dir("/")
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        root_dirs.sort();
        let wayland_socket = env
            .get("WAYLAND_DISPLAY")
            .and_then(|name| wayland_socket_path(&runtime_dir, name))
            .filter(|path| path.exists());
        Ok(HostFacts {
            uid,
            gid,
            user_name: user.name,
            home,
            runtime_dir,
            user_dirs,
            env,
            hostname,
            merged_usr,
            root_dirs,
            wayland_socket,
        })
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// `$XDG_DATA_HOME`, or `~/.local/share`.
    pub fn data_home(&self) -> PathBuf {
        self.xdg_base("XDG_DATA_HOME", ".local/share")
    }

    /// `$XDG_CONFIG_HOME`, or `~/.config`.
    pub fn config_home(&self) -> PathBuf {
        self.xdg_base("XDG_CONFIG_HOME", ".config")
    }

    /// `$VAR` if it is a clean absolute path (the XDG base directory rules),
    /// else `default` in home.
    fn xdg_base(&self, var: &str, default: &str) -> PathBuf {
        self.env
            .get(var)
            .map(PathBuf::from)
            .filter(|p| clean_absolute(p))
            .unwrap_or_else(|| self.home.join(default))
    }
}

/// An absolute path with no `.` or `..` components.
pub fn clean_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path.components().all(|c| {
            matches!(
                c,
                std::path::Component::RootDir | std::path::Component::Normal(_)
            )
        })
}

/// Where `WAYLAND_DISPLAY` points: a name in the runtime dir, or an absolute
/// path. Anything with `.` or `..` components, or a relative path, is refused.
pub fn wayland_socket_path(runtime_dir: &Path, name: &str) -> Option<PathBuf> {
    let path = if name.starts_with('/') {
        PathBuf::from(name)
    } else if name.contains('/') || name.is_empty() {
        return None;
    } else {
        runtime_dir.join(name)
    };
    let clean = path.components().all(|c| {
        matches!(
            c,
            std::path::Component::RootDir | std::path::Component::Normal(_)
        )
    });
    clean.then_some(path)
}

const USER_DIR_KEYS: &[(&str, XdgDir, &str)] = &[
    ("XDG_DESKTOP_DIR", XdgDir::Desktop, "Desktop"),
    ("XDG_DOCUMENTS_DIR", XdgDir::Documents, "Documents"),
    ("XDG_DOWNLOAD_DIR", XdgDir::Download, "Downloads"),
    ("XDG_MUSIC_DIR", XdgDir::Music, "Music"),
    ("XDG_PICTURES_DIR", XdgDir::Pictures, "Pictures"),
    ("XDG_PUBLICSHARE_DIR", XdgDir::PublicShare, "Public"),
    ("XDG_TEMPLATES_DIR", XdgDir::Templates, "Templates"),
    ("XDG_VIDEOS_DIR", XdgDir::Videos, "Videos"),
];

fn default_user_dirs(home: &Path) -> BTreeMap<XdgDir, PathBuf> {
    USER_DIR_KEYS
        .iter()
        .map(|(_, dir, name)| (*dir, home.join(name)))
        .collect()
}

/// Parses `user-dirs.dirs`. Only directories strictly inside home are kept: an
/// entry pointing at home itself, or outside it, would widen an `xdg-*` grant.
pub fn parse_user_dirs(text: &str, home: &Path) -> BTreeMap<XdgDir, PathBuf> {
    let mut dirs = default_user_dirs(home);
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let Some(&(_, dir, _)) = USER_DIR_KEYS.iter().find(|(k, _, _)| *k == key) else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        let Some(rel) = value.strip_prefix("$HOME/") else {
            dirs.remove(&dir);
            continue;
        };
        let clean = !rel.is_empty()
            && rel
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..")
            && !rel.chars().any(char::is_control);
        if clean {
            dirs.insert(dir, home.join(rel));
        } else {
            dirs.remove(&dir);
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wayland_socket_names_stay_clean() {
        let run = Path::new("/run/user/1000");
        assert_eq!(
            wayland_socket_path(run, "wayland-0"),
            Some(PathBuf::from("/run/user/1000/wayland-0"))
        );
        assert_eq!(
            wayland_socket_path(run, "/tmp/w"),
            Some(PathBuf::from("/tmp/w"))
        );
        for bad in ["../x", "a/b", "", "/run/../etc/w", ".."] {
            assert_eq!(wayland_socket_path(run, bad), None, "{bad}");
        }
    }

    #[test]
    fn user_dirs_stay_inside_home() {
        let home = Path::new("/home/ada");
        let text = r#"
XDG_DOCUMENTS_DIR="$HOME/Papers"
XDG_MUSIC_DIR="$HOME"
XDG_VIDEOS_DIR="$HOME/../bob"
XDG_PICTURES_DIR="/etc"
"#;
        let dirs = parse_user_dirs(text, home);
        assert_eq!(dirs[&XdgDir::Documents], Path::new("/home/ada/Papers"));
        assert_eq!(dirs[&XdgDir::Download], Path::new("/home/ada/Downloads"));
        assert!(!dirs.contains_key(&XdgDir::Music));
        assert!(!dirs.contains_key(&XdgDir::Videos));
        assert!(!dirs.contains_key(&XdgDir::Pictures));
    }
}

//! Making appbox's portal start on demand.
//!
//! The portal is a D-Bus activatable service: the first call to one of its
//! names starts it. A package installs the activation files from `data/`
//! system-wide; when none is installed, `appbox run` writes them for the
//! user under `$XDG_DATA_HOME/dbus-1/services`, pointing at the
//! `appbox-portal` next to `appbox`. The session bus looks there too, and
//! rescans its service directories when a name it does not know is called.

use std::io;
use std::path::{Path, PathBuf};

/// The activation files, by bus name, from `data/dbus-1/services/*.in`.
const SERVICES: &[(&str, &str)] = &[
    (
        "org.appbox.Portal.Desktop",
        include_str!("../../data/dbus-1/services/org.appbox.Portal.Desktop.service.in"),
    ),
    (
        "org.appbox.Portal.Documents",
        include_str!("../../data/dbus-1/services/org.appbox.Portal.Documents.service.in"),
    ),
];

/// The directories the session bus reads activation files from, besides the
/// user's own: `$XDG_DATA_DIRS/dbus-1/services`.
pub fn system_service_dirs(xdg_data_dirs: Option<&str>) -> Vec<PathBuf> {
    let dirs = xdg_data_dirs
        .filter(|dirs| !dirs.is_empty())
        .unwrap_or("/usr/local/share:/usr/share");
    dirs.split(':')
        .filter(|dir| dir.starts_with('/'))
        .map(|dir| Path::new(dir).join("dbus-1/services"))
        .collect()
}

/// The activation file for `name` that runs `portal`.
fn service_file(template: &str, portal: &Path) -> Option<String> {
    let bindir = portal.parent()?.to_str()?;
    // The Exec line is split on spaces by dbus-daemon; such a path cannot be written.
    if bindir.contains(|c: char| c.is_whitespace() || c == '\\' || c == '"' || c == '\'') {
        return None;
    }
    Some(template.replace("@bindir@", bindir))
}

/// Writes the user's activation files for the portal at `portal`, unless
/// the system has them already. Returns whether anything was written.
pub fn ensure_user_activation(
    data_home: &Path,
    system_dirs: &[PathBuf],
    portal: &Path,
) -> io::Result<bool> {
    let user_dir = data_home.join("dbus-1/services");
    let mut wrote = false;
    for (name, template) in SERVICES {
        let file_name = format!("{name}.service");
        if system_dirs.iter().any(|dir| dir.join(&file_name).is_file()) {
            continue;
        }
        let Some(wanted) = service_file(template, portal) else {
            continue;
        };
        let path = user_dir.join(&file_name);
        if std::fs::read_to_string(&path).is_ok_and(|current| current == wanted) {
            continue;
        }
        std::fs::create_dir_all(&user_dir)?;
        crate::store::write_atomically(&path, wanted.as_bytes())?;
        wrote = true;
    }
    Ok(wrote)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_once_and_only_without_a_system_copy() {
        let root = std::env::temp_dir().join(format!("appbox-activation-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let data_home = root.join("data");
        let system = root.join("system/dbus-1/services");
        let portal = Path::new("/opt/appbox/bin/appbox-portal");
        let systems = [system.clone()];

        assert!(ensure_user_activation(&data_home, &systems, portal).unwrap());
        let desktop = data_home.join("dbus-1/services/org.appbox.Portal.Desktop.service");
        let text = std::fs::read_to_string(&desktop).unwrap();
        assert!(text.contains("Name=org.appbox.Portal.Desktop\n"), "{text}");
        assert!(
            text.contains("Exec=/opt/appbox/bin/appbox-portal\n"),
            "{text}"
        );
        assert!(!ensure_user_activation(&data_home, &systems, portal).unwrap());

        // A moved binary is followed.
        let moved = Path::new("/usr/local/bin/appbox-portal");
        assert!(ensure_user_activation(&data_home, &systems, moved).unwrap());
        assert!(std::fs::read_to_string(&desktop)
            .unwrap()
            .contains("Exec=/usr/local/bin/appbox-portal\n"));

        // A system-wide install wins; the user's copy is left alone.
        std::fs::create_dir_all(&system).unwrap();
        for (name, _) in SERVICES {
            std::fs::write(system.join(format!("{name}.service")), "x").unwrap();
        }
        assert!(!ensure_user_activation(&data_home, &[system], portal).unwrap());

        // A path dbus-daemon would split is not written.
        let spaced = Path::new("/opt/my apps/appbox-portal");
        let fresh = root.join("fresh");
        assert!(!ensure_user_activation(&fresh, &[], spaced).unwrap());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn system_dirs_follow_xdg_data_dirs() {
        assert_eq!(
            system_service_dirs(None),
            [
                PathBuf::from("/usr/local/share/dbus-1/services"),
                PathBuf::from("/usr/share/dbus-1/services")
            ]
        );
        assert_eq!(
            system_service_dirs(Some("/a:relative:/b")),
            [
                PathBuf::from("/a/dbus-1/services"),
                PathBuf::from("/b/dbus-1/services")
            ]
        );
    }
}

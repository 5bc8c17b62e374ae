//! The permission switches of an installed app, as Flatseal shows them:
//! each switch is on when the app has the permission now (its own
//! permissions, then the user's overrides), and flipping it stores an
//! override, or drops the user's one when the switch returns to the app's
//! own choice.

use appbox::overrides::normalize;
use appbox::permissions::{Change, FsLocation, Permissions};

use super::permissions::Strength;

/// One switch: the finish-args that turn it on and off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Toggle {
    pub on: &'static str,
    pub off: &'static str,
    pub label: &'static str,
    pub strength: Strength,
}

const fn toggle(
    on: &'static str,
    off: &'static str,
    label: &'static str,
    strength: Strength,
) -> Toggle {
    Toggle {
        on,
        off,
        label,
        strength,
    }
}

use Strength::{Normal, Strong};

/// The switches, in the order they are shown.
pub const TOGGLES: &[Toggle] = &[
    toggle("--share=network", "--unshare=network", "Network", Normal),
    toggle(
        "--share=ipc",
        "--unshare=ipc",
        "Shared memory with other programs",
        Normal,
    ),
    toggle(
        "--socket=wayland",
        "--nosocket=wayland",
        "Wayland windows",
        Normal,
    ),
    toggle("--socket=x11", "--nosocket=x11", "X11 windows", Strong),
    toggle(
        "--socket=pulseaudio",
        "--nosocket=pulseaudio",
        "Sound",
        Normal,
    ),
    toggle(
        "--socket=pipewire",
        "--nosocket=pipewire",
        "PipeWire",
        Normal,
    ),
    toggle("--socket=cups", "--nosocket=cups", "Printing", Normal),
    toggle(
        "--socket=session-bus",
        "--nosocket=session-bus",
        "Whole session bus",
        Strong,
    ),
    toggle(
        "--socket=system-bus",
        "--nosocket=system-bus",
        "Whole system bus",
        Strong,
    ),
    toggle(
        "--socket=ssh-auth",
        "--nosocket=ssh-auth",
        "SSH keys",
        Strong,
    ),
    toggle(
        "--socket=gpg-agent",
        "--nosocket=gpg-agent",
        "GnuPG keys",
        Strong,
    ),
    toggle(
        "--device=dri",
        "--nodevice=dri",
        "Graphics acceleration",
        Normal,
    ),
    toggle(
        "--device=kvm",
        "--nodevice=kvm",
        "Virtual machines (KVM)",
        Normal,
    ),
    toggle(
        "--device=input",
        "--nodevice=input",
        "Input devices",
        Strong,
    ),
    toggle("--device=usb", "--nodevice=usb", "USB devices", Strong),
    toggle("--device=all", "--nodevice=all", "All devices", Strong),
    toggle(
        "--filesystem=home",
        "--nofilesystem=home",
        "Home folder",
        Strong,
    ),
    toggle(
        "--filesystem=host",
        "--nofilesystem=host",
        "All files",
        Strong,
    ),
];

/// The finish-args that parse; an app's broken one grants nothing.
pub(crate) fn parse_all(args: &[String]) -> Vec<Change> {
    args.iter()
        .filter_map(|arg| Change::parse(arg).ok())
        .collect()
}

/// Whether the permission `on` names is in force in `permissions`.
fn granted(permissions: &Permissions, on: &str) -> bool {
    match Change::parse(on) {
        Ok(Change::Share(share, true)) => permissions.shares.contains(&share),
        Ok(Change::Socket(socket, true)) => permissions.sockets.contains(&socket),
        Ok(Change::Device(device, true)) => permissions.devices.contains(&device),
        Ok(Change::Filesystem(location, _)) => permissions.filesystems.contains_key(&location),
        _ => false,
    }
}

/// The permissions in force: the app's own, then the user's overrides.
pub(crate) fn effective(app: &[Change], overrides: &[Change]) -> Permissions {
    Permissions::from_changes(app.iter().chain(overrides))
}

/// Whether `toggle` is on for an app with `app_args`, under `overrides`.
pub fn is_on(app_args: &[String], overrides: &[Change], toggle: &Toggle) -> bool {
    granted(&effective(&parse_all(app_args), overrides), toggle.on)
}

/// The overrides after setting `toggle` to `on`: the user's earlier
/// choices for that switch are dropped, and a new one is kept only if it
/// differs from the app's own.
pub fn set(app_args: &[String], overrides: &[Change], toggle: &Toggle, on: bool) -> Vec<Change> {
    let app = parse_all(app_args);
    let mine: Vec<Change> = [toggle.on, toggle.off]
        .iter()
        .filter_map(|arg| Change::parse(arg).ok())
        .collect();
    let touches = |change: &Change| mine.iter().any(|m| same_switch(m, change));
    let mut kept: Vec<Change> = overrides.iter().filter(|c| !touches(c)).cloned().collect();
    if granted(&effective(&app, &kept), toggle.on) != on {
        let arg = if on { toggle.on } else { toggle.off };
        if let Ok(change) = Change::parse(arg) {
            kept.push(change);
        }
    }
    normalize(kept)
}

/// Whether two changes set the same switch (either way).
fn same_switch(a: &Change, b: &Change) -> bool {
    match (a, b) {
        (Change::Share(x, _), Change::Share(y, _)) => x == y,
        (Change::Socket(x, _), Change::Socket(y, _)) => x == y,
        (Change::Device(x, _), Change::Device(y, _)) => x == y,
        (
            Change::Filesystem(x, _) | Change::NoFilesystem(x),
            Change::Filesystem(y, _) | Change::NoFilesystem(y),
        ) => x == y && matches!(x, FsLocation::Home | FsLocation::Host),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(on: &str) -> &'static Toggle {
        TOGGLES.iter().find(|t| t.on == on).unwrap()
    }

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn switches_follow_the_app_then_the_overrides() {
        let app = args(&["--share=network", "--socket=wayland"]);
        let network = find("--share=network");
        let home = find("--filesystem=home");
        assert!(is_on(&app, &[], network));
        assert!(!is_on(&app, &[], home));

        // Off, then back on: the override goes, it is the app's own choice.
        let off = set(&app, &[], network, false);
        assert_eq!(off, [Change::parse("--unshare=network").unwrap()]);
        assert!(!is_on(&app, &off, network));
        let back = set(&app, &off, network, true);
        assert!(back.is_empty(), "{back:?}");
        assert!(is_on(&app, &back, network));

        // Home on, alongside another override.
        let both = set(&app, &off, home, true);
        assert!(is_on(&app, &both, home));
        assert!(!is_on(&app, &both, network));
        assert_eq!(both.len(), 2, "{both:?}");
        let home_off = set(&app, &both, home, false);
        assert_eq!(home_off, off);
    }

    #[test]
    fn every_switch_parses_both_ways() {
        for toggle in TOGGLES {
            assert!(Change::parse(toggle.on).is_ok(), "{}", toggle.on);
            assert!(Change::parse(toggle.off).is_ok(), "{}", toggle.off);
            let on = set(&[], &[], toggle, true);
            assert!(is_on(&[], &on, toggle), "{}", toggle.on);
            assert!(set(&[], &on, toggle, false).is_empty(), "{}", toggle.on);
        }
    }
}

//! Permissions in plain words, with a warning on those that open the
//! sandbox wide (home, host, devices, the session bus), as GNOME Software
//! and Flatseal show them.

use appbox::permissions::{Change, Device, FsAccess, FsLocation, Share, Socket};

/// How much a permission lets an app do outside its sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    Normal,
    /// Worth a warning: much of the user's data or the system.
    Strong,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub text: String,
    pub strength: Strength,
}

fn normal(text: impl Into<String>) -> Described {
    Described {
        text: text.into(),
        strength: Strength::Normal,
    }
}

fn strong(text: impl Into<String>) -> Described {
    Described {
        text: text.into(),
        strength: Strength::Strong,
    }
}

fn access(access: FsAccess) -> &'static str {
    match access {
        FsAccess::ReadOnly => "Read",
        FsAccess::ReadWrite => "Read and change",
        FsAccess::Create => "Read, change and create",
    }
}

/// One finish-arg, in words; the arg itself, escaped, if it does not parse.
pub fn describe(arg: &str) -> Described {
    let Ok(change) = Change::parse(arg) else {
        return strong(format!("Unknown permission {}", super::text::one_line(arg)));
    };
    match change {
        Change::Share(Share::Network, true) => normal("Network access"),
        Change::Share(Share::Ipc, true) => normal("Shared memory with other programs"),
        Change::Share(what, false) => normal(format!("No {what} access")),
        Change::Socket(socket, true) => match socket {
            Socket::Wayland => normal("Show windows (Wayland)"),
            Socket::X11 | Socket::FallbackX11 => {
                strong("Show windows with X11, which lets it see other windows and keystrokes")
            }
            Socket::Pulseaudio => normal("Play and record sound"),
            Socket::Pipewire => normal("Use PipeWire: screen, camera and sound streams"),
            Socket::SessionBus => strong(
                "Talk to every service of your session, which can run programs outside the sandbox",
            ),
            Socket::SystemBus => strong("Talk to every system service"),
            Socket::SshAuth => strong("Use your SSH keys"),
            Socket::Cups => normal("Print"),
            Socket::GpgAgent => strong("Use your GnuPG keys"),
        },
        Change::Socket(socket, false) => normal(format!("No {socket}")),
        Change::Device(device, true) => match device {
            Device::Dri => normal("Graphics acceleration"),
            Device::Input => strong("Read input devices such as game controllers"),
            Device::Usb => strong("Use USB devices"),
            Device::Kvm => normal("Run virtual machines (KVM)"),
            Device::Shm => normal("Shared memory in /dev/shm"),
            Device::All => strong("Use every device, such as cameras, microphones and disks"),
        },
        Change::Device(device, false) => normal(format!("No {device} device")),
        Change::Filesystem(location, how) => {
            let verb = access(how);
            match location {
                FsLocation::Host => strong(format!("{verb} all your files and the system's")),
                FsLocation::HostOs => strong(format!("{verb} the system's programs and libraries")),
                FsLocation::HostEtc => strong(format!("{verb} the system's configuration")),
                FsLocation::Home => strong(format!("{verb} all files in your home folder")),
                FsLocation::HomePath(path) => {
                    let path = super::text::one_line(path.as_str());
                    if path.starts_with('.') {
                        strong(format!(
                            "{verb} ~/{path}, hidden settings in your home folder"
                        ))
                    } else {
                        normal(format!("{verb} ~/{path}"))
                    }
                }
                FsLocation::Xdg(dir, path) => {
                    let name = dir.as_str().trim_start_matches("xdg-");
                    let sub = super::text::one_line(path.as_str());
                    if sub.is_empty() {
                        normal(format!("{verb} your {name} folder"))
                    } else {
                        normal(format!("{verb} {sub} in your {name} folder"))
                    }
                }
                FsLocation::Absolute(path) => {
                    strong(format!("{verb} /{}", super::text::one_line(path.as_str())))
                }
            }
        }
        Change::NoFilesystem(location) => {
            normal(format!("No access to {}", location_words(&location)))
        }
        Change::TalkName(name, true) => normal(format!("Talk to {}", super::text::one_line(&name))),
        Change::OwnName(name, true) => {
            normal(format!("Own the name {}", super::text::one_line(&name)))
        }
        Change::SeeName(name, true) => normal(format!("See {}", super::text::one_line(&name))),
        Change::TalkName(name, false)
        | Change::OwnName(name, false)
        | Change::SeeName(name, false) => {
            normal(format!("No access to {}", super::text::one_line(&name)))
        }
        Change::Persist(path) => normal(format!(
            "Keep ~/{} in its own data",
            super::text::one_line(path.as_str())
        )),
        Change::Env(name, _) => normal(format!("Sets {}", super::text::one_line(&name))),
        Change::UnsetEnv(name) => normal(format!("Unsets {}", super::text::one_line(&name))),
    }
}

fn location_words(location: &FsLocation) -> String {
    match location {
        FsLocation::Host => "your files and the system's".into(),
        FsLocation::HostOs => "the system's programs".into(),
        FsLocation::HostEtc => "the system's configuration".into(),
        FsLocation::Home => "your home folder".into(),
        FsLocation::HomePath(path) => format!("~/{}", super::text::one_line(path.as_str())),
        FsLocation::Xdg(dir, _) => {
            format!("your {} folder", dir.as_str().trim_start_matches("xdg-"))
        }
        FsLocation::Absolute(path) => format!("/{}", super::text::one_line(path.as_str())),
    }
}

/// Every permission of an app, strong ones first; an app with none says so.
pub fn describe_all(args: &[String]) -> Vec<Described> {
    let mut all: Vec<Described> = args.iter().map(|arg| describe(arg)).collect();
    all.sort_by_key(|d| std::cmp::Reverse(d.strength));
    if all.is_empty() {
        all.push(normal("No permissions: it sees only its own files"));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strong_permissions_are_flagged_and_worded() {
        for (arg, strength, words) in [
            ("--share=network", Strength::Normal, "Network access"),
            (
                "--filesystem=home",
                Strength::Strong,
                "Read and change all files in your home folder",
            ),
            (
                "--filesystem=host:ro",
                Strength::Strong,
                "Read all your files and the system's",
            ),
            (
                "--filesystem=xdg-documents",
                Strength::Normal,
                "Read and change your documents folder",
            ),
            (
                "--filesystem=~/.ssh:ro",
                Strength::Strong,
                "Read ~/.ssh, hidden settings",
            ),
            ("--device=all", Strength::Strong, "every device"),
            (
                "--socket=session-bus",
                Strength::Strong,
                "every service of your session",
            ),
            ("--socket=x11", Strength::Strong, "keystrokes"),
            ("--socket=wayland", Strength::Normal, "Wayland"),
        ] {
            let d = describe(arg);
            assert_eq!(d.strength, strength, "{arg}");
            assert!(d.text.contains(words), "{arg}: {}", d.text);
        }
    }

    #[test]
    fn unknown_or_hostile_args_are_shown_escaped_and_strong() {
        let d = describe("--filesystem=\u{1b}[2Jhome");
        assert_eq!(d.strength, Strength::Strong);
        assert!(!d.text.contains('\u{1b}'), "{:?}", d.text);
        let all = describe_all(&["--share=network".into(), "--filesystem=home".into()]);
        assert_eq!(all[0].strength, Strength::Strong);
        assert_eq!(
            describe_all(&[])[0].text,
            "No permissions: it sees only its own files"
        );
    }
}

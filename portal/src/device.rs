//! `org.appbox.portal.Device`: devices for sandboxed apps, after consent.
//!
//! The app asks for a device by kind and, once the user agrees, gets an open
//! descriptor on it over D-Bus. No device node enters the sandbox: Landlock
//! confines what the app opens by path, but a descriptor opened here works.
//! (xdg-desktop-portal's Device interface only records consent, for
//! PipeWire; this one hands over the device itself.)

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zbus::interface;
use zbus::message::Header;

use appbox::consent::ConsentStore;
use appbox::sandbox::sys::{openat2, RESOLVE_NO_SYMLINKS};

use crate::consent::{decide, Prompter};
use crate::error::PortalError;
use crate::identity::Caller;
use crate::service::Portal;

const TABLE: &str = "devices";

pub struct Device {
    portal: Arc<Portal>,
    answers: Arc<ConsentStore>,
    prompter: Arc<dyn Prompter>,
}

impl Device {
    pub fn new(portal: Arc<Portal>, answers: ConsentStore, prompter: Arc<dyn Prompter>) -> Device {
        Device {
            portal,
            answers: Arc::new(answers),
            prompter,
        }
    }
}

/// The device node a request names. `kvm` and `camera` name their node;
/// `input` and `usb` need the node's path, under `/dev/input/` or
/// `/dev/bus/usb/`. Pure, so the rules are tested without devices.
pub fn device_node(kind: &str, path: Option<&str>) -> Result<PathBuf, PortalError> {
    let under = |prefix: &str, depth: usize| -> Result<PathBuf, PortalError> {
        let path = path.ok_or_else(|| {
            PortalError::InvalidArgument(format!(
                "{kind} needs the option path, a node under {prefix}"
            ))
        })?;
        let rest = path.strip_prefix(prefix).unwrap_or("");
        let parts: Vec<&str> = rest.split('/').collect();
        let clean = parts.len() == depth
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !clean {
            return Err(PortalError::InvalidArgument(format!(
                "{kind}: {} is not a device node under {prefix}",
                appbox::text::Escaped(path)
            )));
        }
        Ok(PathBuf::from(path))
    };
    match kind {
        "kvm" => Ok(PathBuf::from("/dev/kvm")),
        "camera" => Ok(PathBuf::from("/dev/video0")),
        "input" => under("/dev/input/", 1),
        "usb" => under("/dev/bus/usb/", 2),
        "microphone" => Err(PortalError::NotAllowed(
            "the microphone is reached through PipeWire or PulseAudio (socket=pulseaudio), not as a device".into(),
        )),
        other => Err(PortalError::InvalidArgument(format!(
            "{} is not a device kind: kvm, camera, input or usb",
            appbox::text::Escaped(other)
        ))),
    }
}

/// Opens a character device for reading and writing, through no symlink.
fn open_device(node: &Path) -> Result<OwnedFd, PortalError> {
    let fd = openat2(
        None,
        node,
        libc::O_RDWR | libc::O_NOCTTY,
        0,
        RESOLVE_NO_SYMLINKS,
    )
    .map_err(|e| PortalError::Failed(format!("cannot open {}: {e}", node.display())))?;
    let st = nix::sys::stat::fstat(&fd)
        .map_err(|e| PortalError::Failed(format!("cannot inspect {}: {e}", node.display())))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR {
        return Err(PortalError::Failed(format!(
            "{} is not a device",
            node.display()
        )));
    }
    Ok(fd)
}

#[interface(name = "org.appbox.portal.Device")]
impl Device {
    /// After the user agrees, an open descriptor on the device. Waits for
    /// the answer: call it with a long timeout.
    async fn open_device(
        &self,
        #[zbus(header)] header: Header<'_>,
        device: &str,
        options: std::collections::HashMap<String, zbus::OwnedVariant>,
    ) -> Result<zbus::OwnedFd, PortalError> {
        let caller: Caller = self.portal.caller(&header)?;
        let path = match options.get("path") {
            Some(value) => Some(
                String::try_from(
                    value
                        .try_clone()
                        .map_err(|e| PortalError::InvalidArgument(e.to_string()))?,
                )
                .map_err(|_| PortalError::InvalidArgument("option path must be a string".into()))?,
            ),
            None => None,
        };
        let node = device_node(device, path.as_deref())?;
        let (answers, prompter, kind) = (
            self.answers.clone(),
            self.prompter.clone(),
            device.to_owned(),
        );
        let app = caller.app_id.clone();
        let allowed = tokio::task::spawn_blocking(move || {
            decide(&answers, prompter.as_ref(), &app, TABLE, &kind)
        })
        .await
        .map_err(|e| PortalError::Failed(e.to_string()))?
        .map_err(|e| PortalError::NotAllowed(appbox::sandbox::chain(&e)))?;
        if !allowed {
            return Err(PortalError::NotAllowed(format!(
                "the user did not allow {} to use {device}; `appbox permission-set {TABLE} {device} {} allow` changes that",
                caller.app_id, caller.app_id
            )));
        }
        eprintln!("appbox-portal: {} gets {}", caller.app_id, node.display());
        Ok(zbus::OwnedFd::from(open_device(&node)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_kinds_name_their_nodes_and_nothing_else() {
        assert_eq!(device_node("kvm", None).unwrap(), Path::new("/dev/kvm"));
        assert_eq!(
            device_node("input", Some("/dev/input/event3")).unwrap(),
            Path::new("/dev/input/event3")
        );
        assert_eq!(
            device_node("usb", Some("/dev/bus/usb/001/004")).unwrap(),
            Path::new("/dev/bus/usb/001/004")
        );
        for (kind, path) in [
            ("input", None),
            ("input", Some("/dev/input/../mem")),
            ("input", Some("/dev/input/by-id/x")),
            ("input", Some("/dev/mem")),
            ("usb", Some("/dev/bus/usb/001")),
            ("usb", Some("/dev/bus/usb/001/../../../../dev/sda")),
            ("../../dev/mem", None),
            ("microphone", None),
        ] {
            assert!(device_node(kind, path).is_err(), "{kind} {path:?}");
        }
    }
}

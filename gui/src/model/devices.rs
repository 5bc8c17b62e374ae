//! The devices the portal asks about ([`appbox::consent::DEVICES`]), in
//! words: the name the permissions page lists, and the noun and purpose the
//! consent dialog asks with.

/// What is said about one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceWords {
    /// The entry of [`appbox::consent::DEVICE_TABLE`].
    pub id: &'static str,
    /// Its name in a list: "Camera".
    pub name: &'static str,
    /// What the app would use: "the camera".
    pub noun: &'static str,
    /// What the app asks to do, after "asks to": "use the camera".
    pub purpose: &'static str,
}

/// Every device of [`appbox::consent::DEVICES`].
pub const DEVICE_WORDS: &[DeviceWords] = &[
    DeviceWords {
        id: "kvm",
        name: "Virtual machines (KVM)",
        noun: "KVM",
        purpose: "run virtual machines with KVM",
    },
    DeviceWords {
        id: "camera",
        name: "Camera",
        noun: "the camera",
        purpose: "use the camera",
    },
    DeviceWords {
        id: "input",
        name: "Input devices",
        noun: "an input device",
        purpose: "read an input device, such as a game controller",
    },
    DeviceWords {
        id: "usb",
        name: "USB devices",
        noun: "a USB device",
        purpose: "use a USB device",
    },
    DeviceWords {
        id: "microphone",
        name: "Microphone",
        noun: "the microphone",
        purpose: "use the microphone",
    },
];

/// The words for device `id`, if it is one appbox knows.
pub fn device_words(id: &str) -> Option<&'static DeviceWords> {
    DEVICE_WORDS.iter().find(|words| words.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use appbox::consent::DEVICES;

    #[test]
    fn every_device_has_words_and_no_more() {
        for id in DEVICES {
            assert!(device_words(id).is_some(), "no words for {id}");
        }
        assert_eq!(DEVICE_WORDS.len(), DEVICES.len());
    }
}

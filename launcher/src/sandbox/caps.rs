//! Capabilities: the app keeps none, not even in its bounding set, so nothing it
//! executes can ever regain one.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("cannot drop capability {cap} from the bounding set")]
    Bounding {
        cap: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot clear the ambient capabilities")]
    Ambient(#[source] io::Error),
    #[error("cannot clear the capability sets")]
    Capset(#[source] io::Error),
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// Drops every capability from the bounding set. Needs CAP_SETPCAP, so it runs
/// before the ids change.
pub fn drop_bounding_set() -> Result<(), CapsError> {
    for cap in 0..=last_cap() {
        // SAFETY: prctl with integer arguments only.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if ret != 0 {
            let source = io::Error::last_os_error();
            // Capabilities above what the kernel supports report EINVAL.
            if source.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(CapsError::Bounding { cap, source });
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Clears the ambient, effective, permitted and inheritable sets.
pub fn clear_all() -> Result<(), CapsError> {
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if ret != 0 {
        return Err(CapsError::Ambient(io::Error::last_os_error()));
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: header and two data structs, as version 3 requires, outlive the call.
    let ret =
        unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if ret != 0 {
        return Err(CapsError::Capset(io::Error::last_os_error()));
    }
    Ok(())
}

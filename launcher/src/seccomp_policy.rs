//! The seccomp policy as data: which system calls the app may not make, and how
//! each one fails. `sandbox::seccomp` compiles it to BPF.
//!
//! The list is Flatpak's (its `syscall_blocklist` and non-devel list) plus the
//! calls that have since been used to escape or attack kernels: bpf, io_uring,
//! userfaultfd, kexec, module loading and time setting.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeccompPolicy {
    /// Calls that fail with EPERM whatever their arguments.
    pub deny: Vec<String>,
    /// Calls that fail with ENOSYS, so libcs fall back to an older call we can
    /// filter (clone3's flags live in memory that seccomp cannot read).
    pub unsupported: Vec<String>,
    /// ioctl requests refused with EPERM, compared on the low 32 bits only
    /// (CVE-2019-10063: the kernel ignores the high bits, so must the filter).
    pub deny_ioctls: Vec<(String, u32)>,
    /// clone flags refused with EPERM (CLONE_NEWUSER: no nested sandboxes).
    pub deny_clone_flags: u64,
    /// personality values allowed; every other value fails with EPERM.
    pub allowed_personalities: Vec<u32>,
    /// Socket address families allowed; others fail with EAFNOSUPPORT.
    pub allowed_socket_families: Vec<u32>,
    /// 32-bit and x32 system calls kill the process instead of bypassing the filter.
    pub kill_foreign_abis: bool,
}

const DENY: &[&str] = &[
    // Flatpak's blocklist.
    "syslog",
    "uselib",
    "acct",
    "quotactl",
    "add_key",
    "keyctl",
    "request_key",
    "move_pages",
    "mbind",
    "get_mempolicy",
    "set_mempolicy",
    "migrate_pages",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "open_tree_attr",
    // Flatpak's non-devel list: profiling and debugging happen from outside.
    "perf_event_open",
    "ptrace",
    // Added by appbox.
    "bpf",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "settimeofday",
    "swapon",
    "swapoff",
    "reboot",
    "open_by_handle_at",
    "name_to_handle_at",
    "lookup_dcookie",
    "vhangup",
    "iopl",
    "ioperm",
    "fanotify_init",
];

/// TIOCSTI pushes keystrokes into the terminal (CVE-2017-5226); TIOCLINUX copies
/// and pastes on a virtual console (CVE-2023-28100).
const DENY_IOCTLS: &[(&str, u32)] = &[("TIOCSTI", 0x5412), ("TIOCLINUX", 0x541c)];

const CLONE_NEWUSER: u64 = 0x1000_0000;

/// PER_LINUX and the query value 0xffffffff.
const ALLOWED_PERSONALITIES: &[u32] = &[0, 0xffff_ffff];

/// AF_UNSPEC, AF_UNIX, AF_INET, AF_INET6, AF_NETLINK.
const ALLOWED_SOCKET_FAMILIES: &[u32] = &[0, 1, 2, 10, 16];

impl SeccompPolicy {
    pub fn default_for_apps() -> Self {
        SeccompPolicy {
            deny: DENY.iter().map(|s| (*s).to_owned()).collect(),
            unsupported: vec!["clone3".to_owned()],
            deny_ioctls: DENY_IOCTLS
                .iter()
                .map(|(name, value)| ((*name).to_owned(), *value))
                .collect(),
            deny_clone_flags: CLONE_NEWUSER,
            allowed_personalities: ALLOWED_PERSONALITIES.to_vec(),
            allowed_socket_families: ALLOWED_SOCKET_FAMILIES.to_vec(),
            kill_foreign_abis: true,
        }
    }
}

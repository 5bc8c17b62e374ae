//! Attacks that the seccomp filter must stop: terminal injection, the mount API and namespaces,
//! clone3, and the list of dangerous system calls.
//!
//! Each attack is a raw system call run in a throwaway child (see `sys::isolated`). Where the
//! kernel would check a path before checking privileges, the attack names a path that cannot
//! exist, so that an unfiltered call fails with ENOENT (reported as FAIL) instead of EPERM from
//! a missing capability, and so that running the probe by mistake as root on a host can never
//! mount over /tmp, detach /proc or pivot the root.

use crate::report::Outcome;
use crate::sys::{self, SETUP_FAILED};
use libc::{c_long, c_ulong, c_void};
use std::ptr;

/// A path that cannot exist: procfs refuses to create anything under /proc/self, and without
/// /proc the lookup fails too.
const NONEXISTENT: &std::ffi::CStr = c"/proc/self/appbox-probe-nonexistent";

/// One attack: a name for the report and a raw system call.
struct Attack {
    name: &'static str,
    call: fn() -> c_long,
}

/// Runs every attack; the check passes only if each failed with one of `accepted`.
fn run_attacks(attacks: &[Attack], accepted: &[i32]) -> Outcome {
    let mut held = Vec::new();
    let mut broke = Vec::new();
    for attack in attacks {
        let call = sys::isolated(attack.call);
        let entry = format!("{}={}", attack.name, call.describe());
        match call.errno() {
            Some(errno) if accepted.contains(&errno) => held.push(entry),
            _ => broke.push(entry),
        }
    }
    if broke.is_empty() {
        Outcome::pass(held.join(" "))
    } else if held.is_empty() {
        Outcome::fail(format!("not blocked: {}", broke.join(" ")))
    } else {
        Outcome::fail(format!(
            "not blocked: {}; blocked: {}",
            broke.join(" "),
            held.join(" ")
        ))
    }
}

/// The request with bit 32 set: the kernel truncates `cmd` to 32 bits, so a filter that
/// compares all 64 bits lets this through (CVE-2019-10063).
const fn high_bits(request: c_ulong) -> c_ulong {
    request | (1 << 32)
}

/// TIOCSTI on stdin and on fd -1, plain and with high bits. A filter answers EPERM whatever the
/// fd; without one the kernel says ENOTTY/EBADF (or EPERM when stdin is a tty that is not our
/// controlling terminal, which is why the fd -1 variants are there too).
pub fn tiocsti() -> Outcome {
    run_attacks(
        &[
            Attack {
                name: "fd0",
                call: || {
                    let byte = b'x';
                    // SAFETY: TIOCSTI reads one byte from the pointer, which points at `byte`.
                    c_long::from(unsafe { libc::ioctl(0, libc::TIOCSTI, &byte) })
                },
            },
            Attack {
                name: "fd0|1<<32",
                call: || {
                    let byte = b'x';
                    // SAFETY: as above; the request is passed as a full 64-bit unsigned long.
                    unsafe {
                        libc::syscall(
                            libc::SYS_ioctl,
                            0 as c_long,
                            high_bits(libc::TIOCSTI as c_ulong),
                            &byte as *const u8,
                        )
                    }
                },
            },
            Attack {
                name: "fd-1",
                call: || {
                    let byte = b'x';
                    // SAFETY: as above; fd -1 is never valid.
                    c_long::from(unsafe { libc::ioctl(-1, libc::TIOCSTI, &byte) })
                },
            },
            Attack {
                name: "fd-1|1<<32",
                call: || {
                    let byte = b'x';
                    // SAFETY: as above.
                    unsafe {
                        libc::syscall(
                            libc::SYS_ioctl,
                            -1 as c_long,
                            high_bits(libc::TIOCSTI as c_ulong),
                            &byte as *const u8,
                        )
                    }
                },
            },
        ],
        &[libc::EPERM],
    )
}

/// TIOCLINUX, the same four ways. The subcode byte is 0, which no VT accepts (EINVAL), so even
/// an unfiltered call on a real VT does nothing.
pub fn tioclinux() -> Outcome {
    run_attacks(
        &[
            Attack {
                name: "fd0",
                call: || {
                    let mut subcode = [0u8; 8];
                    // SAFETY: TIOCLINUX reads a subcode byte (and may write a few) at the pointer,
                    // which points at an 8-byte buffer.
                    c_long::from(unsafe { libc::ioctl(0, libc::TIOCLINUX, subcode.as_mut_ptr()) })
                },
            },
            Attack {
                name: "fd0|1<<32",
                call: || {
                    let mut subcode = [0u8; 8];
                    // SAFETY: as above; the request is passed as a full 64-bit unsigned long.
                    unsafe {
                        libc::syscall(
                            libc::SYS_ioctl,
                            0 as c_long,
                            high_bits(libc::TIOCLINUX as c_ulong),
                            subcode.as_mut_ptr(),
                        )
                    }
                },
            },
            Attack {
                name: "fd-1",
                call: || {
                    let mut subcode = [0u8; 8];
                    // SAFETY: as above; fd -1 is never valid.
                    c_long::from(unsafe { libc::ioctl(-1, libc::TIOCLINUX, subcode.as_mut_ptr()) })
                },
            },
            Attack {
                name: "fd-1|1<<32",
                call: || {
                    let mut subcode = [0u8; 8];
                    // SAFETY: as above.
                    unsafe {
                        libc::syscall(
                            libc::SYS_ioctl,
                            -1 as c_long,
                            high_bits(libc::TIOCLINUX as c_ulong),
                            subcode.as_mut_ptr(),
                        )
                    }
                },
            },
        ],
        &[libc::EPERM],
    )
}

/// The new mount API, the old one, and the namespace calls (CVE-2021-41133).
pub fn mount_api() -> Outcome {
    run_attacks(
        &[
            Attack {
                name: "fsopen",
                call: || {
                    // SAFETY: the argument is a NUL-terminated string literal.
                    unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), 0 as c_long) }
                },
            },
            Attack {
                name: "fspick",
                call: || {
                    // SAFETY: the path is a NUL-terminated string literal.
                    unsafe {
                        libc::syscall(
                            libc::SYS_fspick,
                            libc::AT_FDCWD as c_long,
                            c"/".as_ptr(),
                            0 as c_long,
                        )
                    }
                },
            },
            Attack {
                name: "open_tree",
                call: || {
                    // SAFETY: the path is a NUL-terminated string literal; a detached clone,
                    // if made, dies with this child.
                    unsafe {
                        libc::syscall(
                            libc::SYS_open_tree,
                            libc::AT_FDCWD as c_long,
                            c"/".as_ptr(),
                            1 as c_long, // OPEN_TREE_CLONE
                        )
                    }
                },
            },
            Attack {
                name: "move_mount",
                call: || {
                    // SAFETY: both paths are NUL-terminated string literals.
                    unsafe {
                        libc::syscall(
                            libc::SYS_move_mount,
                            -1 as c_long,
                            c"".as_ptr(),
                            libc::AT_FDCWD as c_long,
                            c"/tmp".as_ptr(),
                            0 as c_long,
                        )
                    }
                },
            },
            Attack {
                name: "mount_setattr",
                call: || {
                    // struct mount_attr (MOUNT_ATTR_SIZE_VER0 = 32 bytes), all zero: a no-op.
                    let attr = [0u64; 4];
                    // SAFETY: the path is a string literal and `attr` is 32 readable bytes.
                    unsafe {
                        libc::syscall(
                            libc::SYS_mount_setattr,
                            libc::AT_FDCWD as c_long,
                            c"/".as_ptr(),
                            0 as c_long,
                            attr.as_ptr(),
                            std::mem::size_of_val(&attr) as c_long,
                        )
                    }
                },
            },
            Attack {
                name: "fsconfig",
                call: || {
                    // SAFETY: NULL key and value with fd -1; the kernel reads nothing.
                    unsafe {
                        libc::syscall(
                            libc::SYS_fsconfig,
                            -1 as c_long,
                            0 as c_long,
                            ptr::null::<c_void>(),
                            ptr::null::<c_void>(),
                            0 as c_long,
                        )
                    }
                },
            },
            Attack {
                name: "fsmount",
                call: || {
                    // SAFETY: integer arguments only.
                    unsafe {
                        libc::syscall(libc::SYS_fsmount, -1 as c_long, 0 as c_long, 0 as c_long)
                    }
                },
            },
            Attack {
                name: "mount",
                call: || {
                    // SAFETY: string literals and a NULL data pointer. The target cannot exist.
                    unsafe {
                        libc::syscall(
                            libc::SYS_mount,
                            c"none".as_ptr(),
                            NONEXISTENT.as_ptr(),
                            c"tmpfs".as_ptr(),
                            0 as c_long,
                            ptr::null::<c_void>(),
                        )
                    }
                },
            },
            Attack {
                name: "umount2",
                call: || {
                    // SAFETY: the path is a string literal that cannot exist.
                    unsafe {
                        libc::syscall(
                            libc::SYS_umount2,
                            NONEXISTENT.as_ptr(),
                            libc::MNT_DETACH as c_long,
                        )
                    }
                },
            },
            Attack {
                name: "pivot_root",
                call: || {
                    // SAFETY: the paths are string literals that cannot exist.
                    unsafe {
                        libc::syscall(
                            libc::SYS_pivot_root,
                            NONEXISTENT.as_ptr(),
                            NONEXISTENT.as_ptr(),
                        )
                    }
                },
            },
            Attack {
                name: "chroot",
                call: || {
                    // SAFETY: the path is a string literal that cannot exist.
                    unsafe { libc::syscall(libc::SYS_chroot, NONEXISTENT.as_ptr()) }
                },
            },
            Attack {
                name: "unshare(CLONE_NEWUSER)",
                call: || {
                    // SAFETY: integer argument; a new namespace would only affect this child.
                    unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER as c_long) }
                },
            },
            Attack {
                name: "unshare(CLONE_NEWNS)",
                call: || {
                    // SAFETY: integer argument; a new namespace would only affect this child.
                    unsafe { libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS as c_long) }
                },
            },
            Attack {
                name: "setns(mnt)",
                call: || {
                    // SAFETY: open takes a string literal; setns takes that fd (or -1) and 0.
                    unsafe {
                        let fd = libc::open(
                            c"/proc/self/ns/mnt".as_ptr(),
                            libc::O_RDONLY | libc::O_CLOEXEC,
                        );
                        libc::syscall(libc::SYS_setns, fd as c_long, 0 as c_long)
                    }
                },
            },
        ],
        &[libc::EPERM, libc::ENOSYS],
    )
}

/// clone3 must fail with ENOSYS exactly: EPERM would stop glibc from falling back to clone,
/// where the flags can be filtered (clone3 passes them in memory, out of seccomp's reach).
pub fn clone3() -> Outcome {
    run_attacks(
        &[Attack {
            name: "clone3",
            call: || {
                // struct clone_args (88 bytes), all zero: a plain fork with no exit signal.
                let args = [0u64; 11];
                // SAFETY: `args` is 88 readable bytes. Without CLONE_VM a new child gets a copy
                // of this address space, so returning here is like fork; it `_exit`s at once.
                unsafe {
                    let ret = libc::syscall(
                        libc::SYS_clone3,
                        args.as_ptr(),
                        std::mem::size_of_val(&args) as c_long,
                    );
                    if ret == 0 {
                        libc::_exit(0);
                    }
                    if ret > 0 {
                        libc::waitpid(ret as libc::pid_t, ptr::null_mut(), libc::__WALL);
                    }
                    ret
                }
            },
        }],
        &[libc::ENOSYS],
    )
}

/// clone with CLONE_NEWUSER must fail with EPERM.
pub fn clone_newuser() -> Outcome {
    run_attacks(
        &[Attack {
            name: "clone(CLONE_NEWUSER)",
            call: || {
                // SAFETY: a zero stack pointer makes the child run on a copy of this stack, as
                // after fork; it `_exit`s at once.
                unsafe {
                    let ret = libc::syscall(
                        libc::SYS_clone,
                        (libc::CLONE_NEWUSER | libc::SIGCHLD) as c_long,
                        0 as c_long,
                        0 as c_long,
                        0 as c_long,
                        0 as c_long,
                    );
                    if ret == 0 {
                        libc::_exit(0);
                    }
                    if ret > 0 {
                        libc::waitpid(ret as libc::pid_t, ptr::null_mut(), 0);
                    }
                    ret
                }
            },
        }],
        &[libc::EPERM],
    )
}

/// Reads CLOCK_REALTIME, so that setting the clock "succeeds" without changing it.
fn now() -> Option<libc::timespec> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the kernel to fill.
    (unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) } == 0).then_some(now)
}

/// A zeroed `struct timex`: modes 0 only reads the clock state.
fn zeroed_timex() -> libc::timex {
    // SAFETY: timex is a plain C struct of integers, for which all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// System calls no app needs: BPF, io_uring, userfaultfd, kexec, modules, the clock, perf,
/// ptrace, personality, keyrings, syslog, accounting, quotas, swap, reboot, uselib and
/// open_by_handle_at.
pub fn syscalls() -> Outcome {
    let attacks = [
        Attack {
            name: "bpf",
            call: || {
                // SAFETY: NULL attr with size 0; the kernel reads nothing.
                unsafe {
                    libc::syscall(
                        libc::SYS_bpf,
                        5 as c_long, // BPF_PROG_LOAD
                        ptr::null::<c_void>(),
                        0 as c_long,
                    )
                }
            },
        },
        Attack {
            name: "io_uring_setup",
            call: || {
                // SAFETY: NULL params; the kernel fails with EFAULT rather than dereference it.
                unsafe {
                    libc::syscall(libc::SYS_io_uring_setup, 1 as c_long, ptr::null::<c_void>())
                }
            },
        },
        Attack {
            name: "userfaultfd",
            call: || {
                // SAFETY: integer argument; a new fd dies with this child.
                unsafe { libc::syscall(libc::SYS_userfaultfd, 0 as c_long) }
            },
        },
        Attack {
            name: "kexec_load",
            call: || {
                // 17 segments is one more than KEXEC_SEGMENT_MAX, so even root gets EINVAL
                // (0 segments would unload a loaded kexec image).
                // SAFETY: NULL segments; the kernel rejects the count before reading them.
                unsafe {
                    libc::syscall(
                        libc::SYS_kexec_load,
                        0 as c_long,
                        17 as c_long,
                        ptr::null::<c_void>(),
                        0 as c_long,
                    )
                }
            },
        },
        Attack {
            name: "kexec_file_load",
            call: || {
                // SAFETY: fds -1 and a NULL command line of length 0.
                unsafe {
                    libc::syscall(
                        libc::SYS_kexec_file_load,
                        -1 as c_long,
                        -1 as c_long,
                        0 as c_long,
                        ptr::null::<c_void>(),
                        0 as c_long,
                    )
                }
            },
        },
        Attack {
            name: "init_module",
            call: || {
                // SAFETY: NULL image of length 0 and a string literal.
                unsafe {
                    libc::syscall(
                        libc::SYS_init_module,
                        ptr::null::<c_void>(),
                        0 as c_long,
                        c"".as_ptr(),
                    )
                }
            },
        },
        Attack {
            name: "finit_module",
            call: || {
                // SAFETY: fd -1 and a string literal.
                unsafe {
                    libc::syscall(
                        libc::SYS_finit_module,
                        -1 as c_long,
                        c"".as_ptr(),
                        0 as c_long,
                    )
                }
            },
        },
        Attack {
            name: "delete_module",
            call: || {
                // SAFETY: a string literal naming no module.
                unsafe { libc::syscall(libc::SYS_delete_module, c"x".as_ptr(), 0 as c_long) }
            },
        },
        Attack {
            name: "clock_settime",
            call: || {
                let Some(now) = now() else {
                    return SETUP_FAILED;
                };
                // SAFETY: `now` is a valid timespec holding the current time.
                unsafe {
                    libc::syscall(
                        libc::SYS_clock_settime,
                        libc::CLOCK_REALTIME as c_long,
                        &now as *const libc::timespec,
                    )
                }
            },
        },
        Attack {
            name: "adjtimex",
            call: || {
                let mut timex = zeroed_timex();
                // SAFETY: `timex` is a valid, writable struct timex.
                unsafe { libc::syscall(libc::SYS_adjtimex, &mut timex as *mut libc::timex) }
            },
        },
        Attack {
            name: "clock_adjtime",
            call: || {
                let mut timex = zeroed_timex();
                // SAFETY: `timex` is a valid, writable struct timex.
                unsafe {
                    libc::syscall(
                        libc::SYS_clock_adjtime,
                        libc::CLOCK_REALTIME as c_long,
                        &mut timex as *mut libc::timex,
                    )
                }
            },
        },
        Attack {
            name: "perf_event_open",
            call: || {
                // struct perf_event_attr, zeroed (size 0 means the first 64-byte version).
                let attr = [0u64; 16];
                // SAFETY: `attr` is 128 readable bytes; a new fd dies with this child.
                unsafe {
                    libc::syscall(
                        libc::SYS_perf_event_open,
                        attr.as_ptr(),
                        0 as c_long,
                        -1 as c_long,
                        -1 as c_long,
                        0 as c_long,
                    )
                }
            },
        },
        Attack {
            name: "ptrace(TRACEME)",
            call: || {
                // SAFETY: integer arguments; becoming a tracee only affects this child.
                unsafe {
                    libc::syscall(
                        libc::SYS_ptrace,
                        libc::PTRACE_TRACEME as c_long,
                        0 as c_long,
                        0 as c_long,
                        0 as c_long,
                    )
                }
            },
        },
        Attack {
            name: "personality(PER_LINUX32)",
            call: || {
                // SAFETY: integer argument; a new personality only affects this child.
                unsafe { libc::syscall(libc::SYS_personality, 0x0008 as c_long) }
            },
        },
        Attack {
            name: "keyctl",
            call: || {
                // SAFETY: integer arguments.
                unsafe {
                    libc::syscall(
                        libc::SYS_keyctl,
                        0 as c_long,
                        0 as c_long,
                        0 as c_long,
                        0 as c_long,
                        0 as c_long,
                    )
                }
            },
        },
        Attack {
            name: "add_key",
            call: || {
                // SAFETY: string literals and a NULL payload of length 0; the process keyring
                // dies with this child.
                unsafe {
                    libc::syscall(
                        libc::SYS_add_key,
                        c"user".as_ptr(),
                        c"x".as_ptr(),
                        ptr::null::<c_void>(),
                        0 as c_long,
                        -2 as c_long, // KEY_SPEC_PROCESS_KEYRING
                    )
                }
            },
        },
        Attack {
            name: "request_key",
            call: || {
                // SAFETY: string literals and a NULL callout.
                unsafe {
                    libc::syscall(
                        libc::SYS_request_key,
                        c"user".as_ptr(),
                        c"x".as_ptr(),
                        ptr::null::<c_void>(),
                        0 as c_long,
                    )
                }
            },
        },
        Attack {
            name: "syslog(READ_ALL)",
            call: || {
                let mut buf = [0u8; 1024];
                // SAFETY: `buf` is a writable buffer of the length passed.
                unsafe {
                    libc::syscall(
                        libc::SYS_syslog,
                        3 as c_long,
                        buf.as_mut_ptr(),
                        buf.len() as c_long,
                    )
                }
            },
        },
        Attack {
            name: "acct",
            call: || {
                // A path that cannot exist rather than NULL, which would switch host
                // accounting off if this ran as real root.
                // SAFETY: the path is a string literal.
                unsafe { libc::syscall(libc::SYS_acct, NONEXISTENT.as_ptr()) }
            },
        },
        Attack {
            name: "quotactl",
            call: || {
                // SAFETY: NULL special and address.
                unsafe {
                    libc::syscall(
                        libc::SYS_quotactl,
                        0 as c_long,
                        ptr::null::<c_void>(),
                        0 as c_long,
                        ptr::null::<c_void>(),
                    )
                }
            },
        },
        Attack {
            name: "swapon",
            call: || {
                // SAFETY: the path is a string literal that cannot exist.
                unsafe { libc::syscall(libc::SYS_swapon, NONEXISTENT.as_ptr(), 0 as c_long) }
            },
        },
        Attack {
            name: "reboot",
            call: || {
                // SAFETY: wrong magic numbers and a NULL argument: the kernel refuses.
                unsafe {
                    libc::syscall(
                        libc::SYS_reboot,
                        0 as c_long,
                        0 as c_long,
                        0 as c_long,
                        ptr::null::<c_void>(),
                    )
                }
            },
        },
        Attack {
            name: "settimeofday",
            call: || {
                let Some(now) = now() else {
                    return SETUP_FAILED;
                };
                let tv = libc::timeval {
                    tv_sec: now.tv_sec,
                    tv_usec: now.tv_nsec / 1000,
                };
                // SAFETY: `tv` is a valid timeval holding the current time; no timezone.
                unsafe {
                    libc::syscall(
                        libc::SYS_settimeofday,
                        &tv as *const libc::timeval,
                        ptr::null::<c_void>(),
                    )
                }
            },
        },
        #[cfg(target_arch = "x86_64")]
        Attack {
            name: "uselib",
            call: || {
                // SAFETY: the path is a string literal.
                unsafe { libc::syscall(libc::SYS_uselib, c"".as_ptr()) }
            },
        },
        Attack {
            name: "open_by_handle_at",
            call: || {
                // SAFETY: fd -1 and a NULL handle.
                unsafe {
                    libc::syscall(
                        libc::SYS_open_by_handle_at,
                        -1 as c_long,
                        ptr::null::<c_void>(),
                        0 as c_long,
                    )
                }
            },
        },
    ];
    run_attacks(&attacks, &[libc::EPERM, libc::ENOSYS])
}

/// 32-bit system calls from a 64-bit process must kill it: x32 calls (bit 30 set
/// in the number) and i386 calls through `int 0x80` would otherwise reach a
/// different table that the filter's rules never name.
pub fn foreign_abi() -> Outcome {
    let attacks = [
        Attack {
            name: "x32 getpid",
            call: || {
                const X32_SYSCALL_BIT: c_long = 0x4000_0000;
                // SAFETY: getpid through the x32 table takes no arguments and changes nothing.
                unsafe { libc::syscall(X32_SYSCALL_BIT | libc::SYS_getpid) }
            },
        },
        Attack {
            name: "i386 getpid",
            call: || {
                let ret: c_long;
                // SAFETY: i386 syscall 20 is getpid: no arguments, no memory access; eax holds
                // the number on entry and the result on return, and nothing else is clobbered.
                unsafe {
                    std::arch::asm!("int 0x80", inlateout("rax") 20 as c_long => ret, options(nostack));
                }
                ret
            },
        },
    ];
    let mut held = Vec::new();
    let mut broke = Vec::new();
    for attack in attacks {
        let outcome = sys::isolated(attack.call);
        let entry = format!("{}={}", attack.name, outcome.describe());
        if matches!(&outcome, sys::Call::Broken(why) if why.contains("SIGSYS")) {
            held.push(entry);
        } else {
            broke.push(entry);
        }
    }
    if broke.is_empty() {
        Outcome::pass(held.join(" "))
    } else {
        Outcome::fail(format!(
            "not killed: {}; killed: {}",
            broke.join(" "),
            held.join(" ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_bits_keep_the_low_32_bits() {
        let request = high_bits(libc::TIOCSTI as c_ulong);
        assert_eq!(request & 0xffff_ffff, libc::TIOCSTI as c_ulong);
        assert_eq!(request >> 32, 1);
    }
}

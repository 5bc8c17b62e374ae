//! A syscall-heavy loop for `tests/bench/runtime.sh`, run on the host and in
//! sandboxes: each round opens, reads and closes a file under /usr, stats it,
//! and asks for the parent pid and the uid (getppid and getuid are not cached
//! by glibc, so they reach the kernel and seccomp). Times ROUNDS rounds
//! REPEATS times and prints the best of those timings as `ns_per_round N`.
//!
//! Usage: bench-syscalls [ROUNDS] [REPEATS] [MODE]
//! ROUNDS and REPEATS default to 50000 and 20, as in `tests/bench/runtime.sh`.
//! MODE `files` (the default) is the round above; `ids` only asks for the
//! parent pid and the uid, which isolates the cost of the seccomp filter
//! from Landlock's, which checks each path an open walks. Anything else is
//! refused (exit status 2).

use std::ffi::CStr;
use std::time::Instant;

const FILE: &CStr = c"/usr/lib/os-release";

fn ids() {
    // SAFETY: system calls without arguments.
    unsafe {
        libc::syscall(libc::SYS_getppid);
        libc::syscall(libc::SYS_getuid);
    }
}

fn round(buffer: &mut [u8; 256]) -> Result<(), std::io::Error> {
    // SAFETY: plain system calls on a static path and a buffer we own.
    unsafe {
        let fd = libc::open(FILE.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let read = libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len());
        let mut stat: libc::stat = std::mem::zeroed();
        let stated = libc::fstat(fd, &mut stat);
        libc::close(fd);
        if read < 0 || stated < 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::syscall(libc::SYS_getppid);
        libc::syscall(libc::SYS_getuid);
    }
    Ok(())
}

const USAGE: &str = "usage: bench-syscalls [ROUNDS] [REPEATS] [files|ids]";

/// Says what is wrong with the arguments, and exits with status 2.
fn refuse(message: &str) -> ! {
    eprintln!("bench-syscalls: {message}\n{USAGE}");
    std::process::exit(2);
}

/// The positive number `arg`, or `default` when it is absent.
fn count<T: std::str::FromStr + Default + PartialOrd>(
    arg: Option<String>,
    name: &str,
    default: T,
) -> T {
    match arg {
        None => default,
        Some(arg) => match arg.parse() {
            Ok(n) if n > T::default() => n,
            _ => refuse(&format!("{name} must be a positive number, not '{arg}'")),
        },
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: u64 = count(args.next(), "ROUNDS", 50_000);
    let repeats: u32 = count(args.next(), "REPEATS", 20);
    let files = match args.next().as_deref() {
        None | Some("files") => true,
        Some("ids") => false,
        Some(mode) => refuse(&format!(
            "unknown mode '{mode}' (the modes are files and ids)"
        )),
    };
    if let Some(extra) = args.next() {
        refuse(&format!("unexpected argument '{extra}'"));
    }
    let mut buffer = [0u8; 256];
    let mut best = f64::MAX;
    for _ in 0..repeats {
        let start = Instant::now();
        for _ in 0..rounds {
            if !files {
                ids();
            } else if let Err(e) = round(&mut buffer) {
                eprintln!("bench-syscalls: {}: {e}", FILE.to_string_lossy());
                std::process::exit(1);
            }
        }
        best = best.min(start.elapsed().as_nanos() as f64 / rounds as f64);
    }
    println!("ns_per_round {best:.1}");
}

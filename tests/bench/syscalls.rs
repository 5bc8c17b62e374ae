//! A syscall-heavy loop for `tests/bench/runtime.sh`, run on the host and in
//! sandboxes: each round opens, reads and closes a file under /usr, stats it,
//! and asks for the parent pid and the uid (getppid and getuid are not cached
//! by glibc, so they reach the kernel and seccomp). Prints the best of
//! ROUNDS_OF_ROUNDS timings as `ns_per_round N`.
//!
//! Usage: bench-syscalls [ROUNDS] [REPEATS] [MODE]
//! MODE `files` (the default) is the round above; `ids` only asks for the
//! parent pid and the uid, which isolates the cost of the seccomp filter
//! from Landlock's, which checks each path an open walks.

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

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let repeats: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let files = args.next().as_deref() != Some("ids");
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

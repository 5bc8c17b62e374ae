//! Helper modes for tests of process behaviour: exit codes, signals, stdio, the environment
//! and argument passing. They look like checks on the command line and do what they say.

use crate::errno;
use crate::param;
use crate::report::{self, printable, Outcome};
use crate::signals;
use libc::c_int;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `exit=N`: flush stdout and `_exit(N)` at once.
pub fn exit(param: &OsStr) -> Outcome {
    let status = match param::number::<u8>(param, "an exit status 0-255") {
        Ok(status) => status,
        Err(outcome) => return outcome,
    };
    report::flush();
    // SAFETY: `_exit` ends the process; stdout was flushed just before.
    unsafe { libc::_exit(c_int::from(status)) }
}

fn signal_param(param: &OsStr) -> Result<c_int, Outcome> {
    let text = param::text(param)?;
    signals::parse(text).ok_or_else(|| {
        Outcome::fail(format!(
            "unknown signal {:?} (use a name like TERM or a number)",
            printable(text)
        ))
    })
}

/// Sets the disposition of `signal` and removes it from the blocked mask.
fn set_handler(signal: c_int, handler: libc::sighandler_t) -> Result<(), String> {
    // SAFETY: a zeroed sigaction is valid; `handler` is SIG_DFL or an `extern "C"` function
    // that only stores to an atomic, which is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
            return Err(format!("sigaction: {}", errno::describe(errno::last())));
        }
    }
    Ok(())
}

fn set_blocked(signal: c_int, how: c_int) {
    // SAFETY: a properly initialised signal set, passed to sigprocmask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::sigprocmask(how, &set, std::ptr::null_mut());
    }
}

/// `kill-self=SIG`: die of the signal with its default disposition.
pub fn kill_self(param: &OsStr) -> Outcome {
    let signal = match signal_param(param) {
        Ok(signal) => signal,
        Err(outcome) => return outcome,
    };
    // SIGKILL and SIGSTOP cannot be caught, so setting their disposition fails harmlessly.
    let _ = set_handler(signal, libc::SIG_DFL);
    set_blocked(signal, libc::SIG_UNBLOCK);
    report::flush();
    // SAFETY: raising a signal at ourselves.
    unsafe { libc::raise(signal) };
    Outcome::fail(format!(
        "still alive after raising {}",
        signals::describe(signal)
    ))
}

/// `sleep=SECS`: sleep that long (fractions allowed).
pub fn sleep(param: &OsStr) -> Outcome {
    let seconds = match param::number::<f64>(param, "a number of seconds") {
        Ok(seconds) => seconds,
        Err(outcome) => return outcome,
    };
    match Duration::try_from_secs_f64(seconds) {
        Ok(duration) => {
            report::flush();
            std::thread::sleep(duration);
            Outcome::pass(format!("slept {seconds} s"))
        }
        Err(_) => Outcome::fail(format!("cannot sleep {seconds} s")),
    }
}

/// `cat`: copy stdin to stdout until EOF. The verdict line starts on a line of its own.
pub fn cat() -> Outcome {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    let mut last = b'\n';
    let mut stdin = std::io::stdin().lock();
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => {
                return Outcome::fail(format!(
                    "read stdin after {total} bytes: {}",
                    errno::describe_io(&err)
                ))
            }
        };
        if let Err(err) = std::io::stdout().lock().write_all(&buf[..n]) {
            return Outcome::fail(format!(
                "write stdout after {total} bytes: {}",
                errno::describe_io(&err)
            ));
        }
        total += n as u64;
        last = buf[n - 1];
    }
    if last != b'\n' {
        report::out_bytes(b"\n");
    }
    Outcome::pass(format!("copied {total} bytes"))
}

/// `print=TEXT`: TEXT and a newline on stdout.
pub fn print(param: &OsStr) -> Outcome {
    report::out_bytes(param.as_bytes());
    report::out_bytes(b"\n");
    Outcome::pass(format!("printed {} bytes", param.len()))
}

/// `eprint=TEXT`: TEXT and a newline on stderr.
pub fn eprint(param: &OsStr) -> Outcome {
    report::err_bytes(param.as_bytes());
    report::err_bytes(b"\n");
    Outcome::pass(format!("printed {} bytes on stderr", param.len()))
}

/// `isatty`: which of fds 0, 1, 2 are terminals.
pub fn isatty() -> Outcome {
    // SAFETY: isatty only queries the fds.
    let ttys = unsafe { [libc::isatty(0), libc::isatty(1), libc::isatty(2)] };
    let line = format!(
        "isatty 0={} 1={} 2={}",
        ttys[0] == 1,
        ttys[1] == 1,
        ttys[2] == 1
    );
    report::out(&line);
    Outcome::pass(line)
}

static SIGNAL_ARRIVED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_signal(_signal: c_int) {
    SIGNAL_ARRIVED.store(true, Ordering::SeqCst);
}

/// `wait-signal=SIG`: print `ready`, wait for SIG, print `got signal SIG`.
///
/// SIG stays blocked except inside sigsuspend, so a signal sent right after `ready` is
/// never lost.
pub fn wait_signal(param: &OsStr) -> Outcome {
    let signal = match signal_param(param) {
        Ok(signal) => signal,
        Err(outcome) => return outcome,
    };
    if signal == libc::SIGKILL || signal == libc::SIGSTOP {
        return Outcome::fail(format!("{} cannot be caught", signals::describe(signal)));
    }
    SIGNAL_ARRIVED.store(false, Ordering::SeqCst);
    // SAFETY: a properly initialised signal set; sigprocmask fills `waiting` with the old mask.
    let mut waiting: libc::sigset_t = unsafe {
        let mut block: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, signal);
        libc::sigprocmask(libc::SIG_BLOCK, &block, &mut old);
        old
    };
    // SAFETY: `waiting` is a valid signal set.
    unsafe { libc::sigdelset(&mut waiting, signal) };
    if let Err(err) = set_handler(signal, note_signal as extern "C" fn(c_int) as usize) {
        set_blocked(signal, libc::SIG_UNBLOCK);
        return Outcome::fail(err);
    }
    report::out("ready");
    report::flush();
    while !SIGNAL_ARRIVED.load(Ordering::SeqCst) {
        // SAFETY: `waiting` is a valid signal set; sigsuspend returns after a handler ran.
        unsafe { libc::sigsuspend(&waiting) };
    }
    let _ = set_handler(signal, libc::SIG_DFL);
    set_blocked(signal, libc::SIG_UNBLOCK);
    let text = printable(&param.to_string_lossy());
    report::out(&format!("got signal {text}"));
    Outcome::pass(format!("got {}", signals::describe(signal)))
}

/// `env`: the environment, sorted, printed after the verdict as `env: KEY=VALUE`.
pub fn env() -> Outcome {
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    vars.sort();
    let lines: Vec<String> = vars
        .iter()
        .map(|(key, value)| {
            format!(
                "env: {}={}",
                printable(&key.to_string_lossy()),
                printable(&value.to_string_lossy())
            )
        })
        .collect();
    Outcome::pass(format!("{} variables", lines.len())).with_after(lines)
}

/// `args`: every later argument is data, printed after the verdict as `arg: VALUE`.
pub fn args(rest: &[OsString]) -> Outcome {
    let lines: Vec<String> = rest
        .iter()
        .map(|arg| format!("arg: {}", printable(&arg.to_string_lossy())))
        .collect();
    Outcome::pass(format!("{} arguments", lines.len())).with_after(lines)
}

/// `fork-and-exit`: leave a child sleeping 1000 s (holding our stdio) and exit 0 at once.
/// The verdict line is printed by the parent before it exits; no summary follows.
pub fn fork_and_exit() -> Outcome {
    report::flush();
    // SAFETY: the probe is single-threaded; the child only sleeps and `_exit`s.
    let pid = unsafe { libc::fork() };
    match pid {
        0 => {
            // SAFETY: async-signal-safe calls only.
            unsafe {
                libc::sleep(1000);
                libc::_exit(0);
            }
        }
        -1 => Outcome::fail(format!("fork: {}", errno::describe(errno::last()))),
        child => {
            report::out(&format!(
                "ok fork-and-exit: child {child} sleeps 1000 s, parent exits 0"
            ));
            report::flush();
            // SAFETY: `_exit` ends the process; stdout was flushed just before.
            unsafe { libc::_exit(0) }
        }
    }
}

/// `fork-bomb=MAX`: every process forks until the kernel refuses, then waits
/// for a signal forever. The first process, once refused, prints its verdict
/// (the error, the forks begun in all, its `RLIMIT_NPROC`) and waits too; no
/// summary follows, the test kills the sandbox. MAX forks in all is a safety
/// cap for when no limit holds: reaching it is a failure.
pub fn fork_bomb(param: &OsStr) -> Outcome {
    use std::sync::atomic::AtomicU64;
    let cap = match param::number::<u64>(param, "the most forks in all") {
        Ok(cap) => cap,
        Err(outcome) => return outcome,
    };
    // SAFETY: a fresh anonymous mapping shared with every child, sized and
    // aligned for one AtomicU64 (a page); nothing else refers to it.
    let shared = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            std::mem::size_of::<AtomicU64>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if shared == libc::MAP_FAILED {
        return Outcome::fail(format!("mmap: {}", errno::describe(errno::last())));
    }
    // SAFETY: the mapping is zeroed, page-aligned and never unmapped; an
    // all-zero AtomicU64 is 0, and atomics are sound across processes.
    let forks: &AtomicU64 = unsafe { &*(shared as *const AtomicU64) };
    report::flush();
    let original = std::process::id();
    let refusal = loop {
        if forks.fetch_add(1, Ordering::SeqCst) >= cap {
            break None;
        }
        // SAFETY: the probe is single-threaded; a child only goes on with
        // this loop, which forks, counts in the shared atomic and pauses.
        match unsafe { libc::fork() } {
            -1 => {
                let error = errno::last();
                forks.fetch_sub(1, Ordering::SeqCst);
                break Some(error);
            }
            _ => continue,
        }
    };
    if std::process::id() == original {
        // SAFETY: getrlimit writes one rlimit struct into the one we own.
        let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut limit) };
        let line = match refusal {
            Some(error) => format!(
                "ok fork-bomb={cap}: refused with {}; {} forks begun in all; RLIMIT_NPROC {}/{}",
                errno::describe(error),
                forks.load(Ordering::SeqCst),
                limit.rlim_cur,
                limit.rlim_max
            ),
            None => format!(
                "FAIL fork-bomb={cap}: {cap} forks and no refusal; RLIMIT_NPROC {}/{}",
                limit.rlim_cur, limit.rlim_max
            ),
        };
        report::out(&line);
        report::flush();
    }
    loop {
        // SAFETY: pause only waits for a signal.
        unsafe { libc::pause() };
    }
}

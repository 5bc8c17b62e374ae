//! Checks of the network view: interfaces, loopback TCP, and abstract unix sockets.

use crate::errno;
use crate::param;
use crate::report::{printable, Outcome};
use std::ffi::{CStr, OsStr};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixStream};
use std::time::Duration;

/// How long a TCP connect may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Interface names from the text of /proc/net/dev (two header lines, then `name: counters`).
pub fn parse_net_dev(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect()
}

/// The interfaces of our network namespace: /proc/net/dev, or if_nameindex without /proc.
fn interfaces() -> Result<Vec<String>, String> {
    match std::fs::read_to_string("/proc/net/dev") {
        Ok(text) => Ok(parse_net_dev(&text)),
        Err(proc_err) => if_nameindex().map_err(|err| {
            format!(
                "/proc/net/dev: {}; if_nameindex: {err}",
                errno::describe_io(&proc_err)
            )
        }),
    }
}

fn if_nameindex() -> Result<Vec<String>, String> {
    // SAFETY: if_nameindex returns NULL or an array ending with an entry whose index is 0;
    // each name is a NUL-terminated string; the array is freed once with if_freenameindex.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return Err(errno::describe(errno::last()));
        }
        let mut names = Vec::new();
        let mut entry = list;
        while (*entry).if_index != 0 && !(*entry).if_name.is_null() {
            names.push(
                CStr::from_ptr((*entry).if_name)
                    .to_string_lossy()
                    .into_owned(),
            );
            entry = entry.add(1);
        }
        libc::if_freenameindex(list);
        Ok(names)
    }
}

/// The interface flags, from SIOCGIFFLAGS on an AF_INET datagram socket.
fn interface_flags(name: &str) -> Result<libc::c_int, String> {
    // SAFETY: plain socket creation; the fd is owned below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(format!("socket: {}", errno::describe(errno::last())));
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is a plain C struct (a name and a union of integers, addresses and a
    // pointer) for which all-zero is valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= request.ifr_name.len() {
        return Err(format!("interface name {name:?} too long"));
    }
    for (slot, &byte) in request.ifr_name.iter_mut().zip(bytes) {
        *slot = byte as libc::c_char;
    }
    // SAFETY: `request` is a valid ifreq with a NUL-terminated name, as SIOCGIFFLAGS expects.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut request) } != 0 {
        return Err(format!("SIOCGIFFLAGS: {}", errno::describe(errno::last())));
    }
    // SAFETY: on success the kernel filled the flags member of the union.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    Ok(libc::c_int::from(flags))
}

/// The only interface is `lo`, and it is up.
pub fn net_none() -> Outcome {
    let names = match interfaces() {
        Ok(names) => names,
        Err(err) => return Outcome::fail(err),
    };
    let listed = printable(&names.join(" "));
    if names != ["lo"] {
        return Outcome::fail(format!("interfaces: {listed}"));
    }
    match interface_flags("lo") {
        Ok(flags) if flags & libc::IFF_UP != 0 => Outcome::pass("only lo, and it is up"),
        Ok(flags) => Outcome::fail(format!("only lo, but it is down (flags {flags:#x})")),
        Err(err) => Outcome::fail(format!("only lo, but its flags are unknown: {err}")),
    }
}

/// More than one interface: the host's network namespace is shared.
pub fn net_host() -> Outcome {
    match interfaces() {
        Ok(names) => Outcome::verdict(
            names.len() > 1,
            format!("interfaces: {}", printable(&names.join(" "))),
        ),
        Err(err) => Outcome::fail(err),
    }
}

/// `HOST:PORT` with HOST an IPv4 loopback address. The probe never connects anywhere else.
pub fn parse_loopback_target(text: &str) -> Result<SocketAddrV4, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("expected HOST:PORT, got {:?}", printable(text)))?;
    let host: Ipv4Addr = host
        .parse()
        .map_err(|_| format!("{:?} is not an IPv4 address", printable(host)))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{:?} is not a port", printable(port)))?;
    if !host.is_loopback() {
        return Err(format!(
            "refusing to connect to non-loopback address {host}"
        ));
    }
    Ok(SocketAddrV4::new(host, port))
}

fn tcp_connect(param: &OsStr) -> Result<(SocketAddrV4, std::io::Result<TcpStream>), Outcome> {
    let text = param::text(param)?;
    let target = parse_loopback_target(text).map_err(Outcome::fail)?;
    let result = TcpStream::connect_timeout(&SocketAddr::V4(target), CONNECT_TIMEOUT);
    Ok((target, result))
}

/// A TCP connect to the loopback address must fail.
pub fn tcp_refused(param: &OsStr) -> Outcome {
    match tcp_connect(param) {
        Ok((target, Ok(_))) => Outcome::fail(format!("connected to {target}")),
        Ok((target, Err(err))) => {
            Outcome::pass(format!("connect {target}: {}", errno::describe_io(&err)))
        }
        Err(outcome) => outcome,
    }
}

/// A TCP connect to the loopback address must succeed.
pub fn tcp_connects(param: &OsStr) -> Outcome {
    match tcp_connect(param) {
        Ok((target, Ok(_))) => Outcome::pass(format!("connected to {target}")),
        Ok((target, Err(err))) => {
            Outcome::fail(format!("connect {target}: {}", errno::describe_io(&err)))
        }
        Err(outcome) => outcome,
    }
}

fn abstract_connect(param: &OsStr) -> Result<UnixStream, String> {
    let address = UnixAddr::from_abstract_name(param.as_bytes())
        .map_err(|err| format!("bad abstract name: {}", errno::describe_io(&err)))?;
    UnixStream::connect_addr(&address).map_err(|err| errno::describe_io(&err))
}

/// Connecting to the abstract socket `\0NAME` must fail.
pub fn abstract_refused(param: &OsStr) -> Outcome {
    let name = printable(&param.to_string_lossy());
    match abstract_connect(param) {
        Ok(_) => Outcome::fail(format!("connected to @{name}")),
        Err(err) => Outcome::pass(format!("connect @{name}: {err}")),
    }
}

/// Connecting to the abstract socket `\0NAME` must succeed.
pub fn abstract_connects(param: &OsStr) -> Outcome {
    let name = printable(&param.to_string_lossy());
    match abstract_connect(param) {
        Ok(_) => Outcome::pass(format!("connected to @{name}")),
        Err(err) => Outcome::fail(format!("connect @{name}: {err}")),
    }
}

/// Connecting a stream socket to the unix socket at PATH must succeed.
pub fn unix_connects(param: &OsStr) -> Outcome {
    let path = std::path::Path::new(param);
    let shown = printable(&param.to_string_lossy());
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Outcome::pass(format!("connected to {shown}")),
        Err(err) => Outcome::fail(format!("connect {shown}: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_dev() {
        let text = "Inter-|   Receive                            |  Transmit\n \
            face |bytes    packets errs drop fifo frame compressed multicast|bytes\n    \
            lo:       0       0    0    0    0     0          0         0        0\n  \
            eth0: 1234      10    0    0    0     0          0         0     5678\n";
        assert_eq!(parse_net_dev(text), ["lo", "eth0"]);
        assert!(parse_net_dev("").is_empty());
    }

    #[test]
    fn only_loopback_targets() {
        assert_eq!(
            parse_loopback_target("127.0.0.1:8080"),
            Ok(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080))
        );
        assert!(parse_loopback_target("127.3.2.1:1").is_ok());
        assert!(parse_loopback_target("10.0.0.1:80").is_err());
        assert!(parse_loopback_target("1.1.1.1:53").is_err());
        assert!(parse_loopback_target("localhost:80").is_err());
        assert!(parse_loopback_target("127.0.0.1").is_err());
        assert!(parse_loopback_target("127.0.0.1:99999").is_err());
        assert!(parse_loopback_target("[::1]:80").is_err());
    }
}

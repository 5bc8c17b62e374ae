//! Helpers shared by the bus proxy's tests: private directories, child
//! processes killed on drop, a private dbus-daemon, a deterministic
//! generator, and the match rules that do or do not ask to eavesdrop.

use super::message::MAX_MATCH_RULE_LENGTH;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub(crate) const DBUS_DAEMON: &str = "/usr/bin/dbus-daemon";

/// Whether `program` (a full path) exists; says so when it is skipped.
pub(crate) fn have(program: &str) -> bool {
    let found = Path::new(program).exists();
    if !found {
        eprintln!("skipped: {program} is not installed");
    }
    found
}

// ---- processes and directories --------------------------------------------

/// A private directory, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "appbox-busproxy-{tag}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        // Left over from an earlier process with the same pid.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .expect("create a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills its child (by its pid) and reaps it on drop, unless `finish`
/// already did.
pub(crate) struct ChildGuard(Option<Child>);

impl ChildGuard {
    pub(crate) fn spawn(command: &mut Command) -> ChildGuard {
        ChildGuard(Some(command.spawn().expect("spawn")))
    }

    pub(crate) fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child still owned")
    }

    pub(crate) fn exited(&mut self) -> bool {
        matches!(self.child().try_wait(), Ok(Some(_)))
    }

    /// Waits up to `timeout` for the child (then kills it); its output.
    pub(crate) fn finish(mut self, timeout: Duration) -> Output {
        let mut child = self.0.take().expect("child still owned");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                break child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let Some(mut pipe) = child.stdout.take() {
            let _ = pipe.read_to_end(&mut stdout);
        }
        if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_end(&mut stderr);
        }
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A private dbus-daemon; its fields drop in order: daemon, then dir.
pub(crate) struct Daemon {
    _child: ChildGuard,
    pub(crate) socket: PathBuf,
    pub(crate) dir: TempDir,
}

/// Starts a dbus-daemon on `bus` in a private directory, with a session
/// policy that allows eavesdropping (so tests can see that the proxy, not
/// the daemon, refuses it). Returns once the socket is listening.
pub(crate) fn start_daemon() -> Daemon {
    let dir = TempDir::new("daemon");
    let socket = dir.0.join("bus");
    let config = dir.0.join("bus.conf");
    std::fs::write(
        &config,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
            socket.display()
        ),
    )
    .unwrap();
    let mut child = ChildGuard::spawn(
        Command::new(DBUS_DAEMON)
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let stdout = child.child().stdout.take().expect("stdout");
    // The address is printed once the socket is listening.
    let mut address = String::new();
    BufReader::new(stdout)
        .read_line(&mut address)
        .expect("dbus-daemon's address");
    assert!(address.starts_with("unix:path="), "{address:?}");
    Daemon {
        _child: child,
        socket,
        dir,
    }
}

// ---- pseudo-random numbers -------------------------------------------------

/// A small deterministic generator (xorshift64), so the pseudo-fuzz tests
/// need no dependency and fail the same way every time.
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n`; 0 when `n` is 0.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

// ---- match rules -------------------------------------------------------------

/// Rules dbus-daemon refuses.
pub(crate) fn rejected_rules() -> Vec<String> {
    [
        "type='bogus'",
        "type=''",
        "type",
        "type ",
        "type='signal",
        "foo='bar'",
        "Type='signal'",
        "path='/a/'",
        "path='a'",
        "path='/a',path_namespace='/b'",
        "path_namespace='/a',path_namespace='/b'",
        "type='signal',type='signal'",
        "sender='x'",
        "sender='a',sender='a.b'",
        "member='a.b'",
        "interface='nodot'",
        "destination='a.'",
        "arg64='x'",
        "arg99999999999999999999='x'",
        "arg1namespace='org.a'",
        "arg0namespace='1bad'",
        "arg0namespace='a.'",
        "arg0='a',arg0='b'",
        "arg0path='/a',arg0='b'",
        "argx='y'",
        "arg='y'",
        "arg0p='y'",
        "arg0pathx='y'",
        "arg0x='y'",
        "type='signal' member='Foo'",
        "type='signal',,member='Foo'",
        "'type'='signal'",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("arg0='{}'", "a".repeat(MAX_MATCH_RULE_LENGTH))])
    .collect()
}

/// Rules dbus-daemon reads differently from how they look, which the
/// proxy refuses although dbus-daemon accepts them.
pub(crate) fn stricter_rules() -> Vec<String> {
    [
        "arg0x1='v'",
        "arg01='v'",
        "arg+1='v'",
        "arg-0='v'",
        "=x",
        "=x,eavesdrop=true",
        "type='method_call',=,eavesdrop=true",
        "member='Probe', =,eavesdrop=true",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        format!("{}eavesdrop=true", "eavesdrop=false,".repeat(16)),
        format!("{}eavesdrop='true'", "eavesdrop=false , ".repeat(16)),
    ])
    .collect()
}

/// Rules with whether the proxy must refuse them (what
/// `rule_requests_eavesdrop` must say), including all of
/// `stricter_rules()` and `rejected_rules()`. Every criterion besides
/// eavesdrop matches the probe call message.rs's daemon test sends.
pub(crate) fn eavesdrop_rules() -> Vec<(String, bool)> {
    let refuse = [
        "eavesdrop=true",
        "eavesdrop='true'",
        "eavesdrop =true",
        "eavesdrop ='true'",
        " eavesdrop='true'",
        "\teavesdrop\t='true'",
        "\neavesdrop\r\n=true",
        "\r\n eavesdrop \t=true\t",
        "eavesdrop=tr'ue'",
        "eavesdrop='tr''ue'",
        "eavesdrop=t'r'u'e'",
        "eavesdrop=''true",
        "eavesdrop=true''",
        "eavesdrop=true,",
        "eavesdrop=true, ",
        "eavesdrop=true,\t",
        "type='method_call',eavesdrop='true'",
        "type='method_call' ,eavesdrop=true",
        "type='method_call', eavesdrop =true",
        "member='Probe',eavesdrop='true'",
        "interface='org.example.Probe',eavesdrop=true,type='method_call'",
        "eavesdrop=false,eavesdrop=true",
        "eavesdrop=true,eavesdrop=false",
        "eavesdrop= true",
        " eavesdrop = false",
        "eavesdrop= 'true'",
        "eavesdrop='true' ",
        "eavesdrop='true '",
        "eavesdrop=TRUE",
        "eavesdrop=True",
        "EAVESDROP=true",
        "Eavesdrop='true'",
        "eavesdrop='1'",
        "eavesdrop=yes",
        "eavesdrop=\\'true\\'",
        "eavesdrop=\"true\"",
        "eavesdrop",
        "eavesdrop=",
        "eavesdrop='true",
        "eaves drop=true",
        "eavesdrop==true",
        "type='method_call',eavesdrop='true',type='signal'",
    ];
    let allow = [
        "",
        "   ",
        "type='method_call'",
        "eavesdrop=false",
        "eavesdrop='false'",
        "eavesdrop=fal'se'",
        "type='method_call',eavesdrop=false",
        "type='signal',arg0='eavesdrop=true'",
        "arg0='x,eavesdrop=true'",
        "arg0=x\\,eavesdrop=true",
        "arg0='it'\\''s',member='Probe'",
        "member='Probe',arg1='eavesdrop=true'",
        "sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',\
         member='NameOwnerChanged',path='/org/freedesktop/DBus',arg0namespace='org.example'",
        "path_namespace='/org/example',type='signal'",
        "arg3path='/a/b/',destination=':1.5'",
    ];
    refuse
        .iter()
        .map(|r| (r.to_string(), true))
        .chain(allow.iter().map(|r| (r.to_string(), false)))
        .chain(stricter_rules().into_iter().map(|r| (r, true)))
        .chain(rejected_rules().into_iter().map(|r| (r, true)))
        .collect()
}

#!/usr/bin/env bash
# Sets up this Debian 12 machine to build and test appbox. Safe to run again:
# it only installs what is missing and only creates what does not exist.
#
# As root it installs packages and creates the unprivileged user appbox-test,
# which the sandbox tests and the benchmark run as. As a normal user it uses
# sudo when packages are missing, or says what to install.
set -euo pipefail

# Build dependencies (the store links libostree; the notes sample is GTK4),
# then test and benchmark
# dependencies: nginx and docker-registry serve remotes, the validators check
# exported files. Every one of them
# exists in Debian 12 (bookworm); checked with `apt-cache policy`, none dropped.
# ca-certificates lets cargo download crates over HTTPS on a bare image.
# wayland-utils provides wayland-info; x11-utils provides xdpyinfo and xprop.
# at-spi2-core (the accessibility bus), python3-pyatspi and gir1.2-atspi-2.0
# let tests/e2e/atspi-driver.py drive the store window as a screen reader does.
PACKAGES=(
    pkg-config build-essential libc6-dev ca-certificates
    libglib2.0-dev libostree-dev libssl-dev libzstd-dev ostree
    libgtk-4-dev libadwaita-1-dev
    nginx-light docker-registry skopeo desktop-file-utils appstream
    bubblewrap xvfb xauth x11-apps x11-utils imagemagick weston wayland-utils
    hyperfine flatpak iproute2 procps util-linux dbus dbus-x11 socat strace python3
    python3-gi libglib2.0-bin xdg-desktop-portal-dev xdotool acl
    at-spi2-core python3-pyatspi gir1.2-atspi-2.0
)
TEST_USER=appbox-test

# useradd and runuser live in sbin, which a non-login shell may not have on PATH.
for dir in /usr/local/sbin /usr/sbin /sbin; do
    case ":$PATH:" in
        *":$dir:"*) ;;
        *) PATH="$PATH:$dir" ;;
    esac
done

say() { printf 'bootstrap: %s\n' "$*"; }
die() {
    printf 'bootstrap: error: %s\n' "$*" >&2
    exit 1
}

# --- Debian packages -------------------------------------------------------

# One dpkg-query for all of them; it names each installed package on its own line.
installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null || true)
missing=()
for package in "${PACKAGES[@]}"; do
    if ! grep -qxF "$package install ok installed" <<<"$installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]} > 0)); then
    if ((EUID == 0)); then
        sudo=()
    elif command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        printf 'bootstrap: error: these Debian packages are missing, and there is no sudo to install them:\n' >&2
        printf '  %s\n' "${missing[*]}" >&2
        printf 'Install them as root:\n  apt-get update && apt-get install -y --no-install-recommends %s\n' \
            "${missing[*]}" >&2
        exit 1
    fi
    say "installing ${missing[*]}"
    log=$(mktemp)
    apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y
        -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
    if ! { "${apt[@]}" update && "${apt[@]}" install --no-install-recommends "${missing[@]}"; } \
        >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        rm -f "$log"
        die "apt-get failed (output above)"
    fi
    rm -f "$log"
fi

# --- The unprivileged test user (root only) ---------------------------------

if ((EUID == 0)); then
    if ! id -u "$TEST_USER" >/dev/null 2>&1; then
        useradd --create-home --home-dir "/home/$TEST_USER" --shell /bin/bash \
            --user-group "$TEST_USER" || die "cannot create the user $TEST_USER"
        say "created the user $TEST_USER"
    fi
    home=$(getent passwd "$TEST_USER" | cut -d: -f6)
    if [[ ! -d $home ]]; then
        install -d -m 0755 -o "$TEST_USER" -g "$(id -g "$TEST_USER")" "$home"
    fi
    # A desktop session's user gets /dev/kvm through logind's ACL (uaccess);
    # the test user gets the same, so the portal's device tests use the real one.
    if [[ -c /dev/kvm ]]; then
        setfacl -m "u:$TEST_USER:rw" /dev/kvm || die "cannot give $TEST_USER access to /dev/kvm"
    fi
fi

# --- Kernel features --------------------------------------------------------

# Root may always create user namespaces, so as root the check runs as the test user.
if ((EUID == 0)); then
    userns_check=(runuser -u "$TEST_USER" -- unshare -Ur true)
    who="the user $TEST_USER"
else
    userns_check=(unshare -Ur true)
    who="this user"
fi
if ! userns_error=$(cd / && "${userns_check[@]}" 2>&1); then
    die "the kernel does not let $who create a user namespace (\`unshare -Ur true\` failed: ${userns_error:-no message}).
  appbox needs unprivileged user namespaces. Check, as root:
    sysctl user.max_user_namespaces                     (must be > 0)
    sysctl kernel.unprivileged_userns_clone             (Debian: must be 1, if it exists)
    sysctl kernel.apparmor_restrict_unprivileged_userns (must be 0, if it exists)
  and, in a container, that it may create user namespaces."
fi

if ! grep -q '^Seccomp:' /proc/self/status; then
    die "the kernel has no seccomp (no Seccomp: line in /proc/self/status); appbox needs it"
fi

# The Landlock ABI version, from landlock_create_ruleset(NULL, 0, VERSION).
# Its number is 444 on every architecture. /sys/kernel/security/lsm would also
# tell, but securityfs is often not mounted.
landlock_abi=$(python3 -c '
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
print(max(libc.syscall(ctypes.c_long(444), None, ctypes.c_size_t(0), ctypes.c_uint(1)), 0))
' 2>/dev/null || echo unknown)
if [[ $landlock_abi == unknown ]]; then
    if grep -qs landlock /sys/kernel/security/lsm; then
        landlock_abi="present"
    else
        printf 'bootstrap: warning: cannot tell whether the kernel has Landlock; appbox refuses to run apps without it\n' >&2
    fi
elif ((landlock_abi < 1)); then
    die "the kernel has no Landlock (ABI v1 needs Linux 5.13 or later, with landlock in the lsm= boot list, see /sys/kernel/security/lsm); appbox refuses to run apps without it"
fi

say "ready: ${#PACKAGES[@]} packages present, user namespaces ok for $who, Landlock ABI $landlock_abi"

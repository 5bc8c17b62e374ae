# shellcheck shell=bash
# What the benchmark scripts share. Each sources it after `set -euo pipefail`
# and its `cd` to the project root.

say() { printf 'bench: %s\n' "$*"; }
die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}

# Installs what the benchmarks need (tests/bootstrap.sh) and finds cargo.
prepare_build() {
    tests/bootstrap.sh
    if ! command -v cargo >/dev/null 2>&1; then
        PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null 2>&1 ||
        die "cargo is not installed (not on PATH, nor in $HOME/.cargo/bin); install Rust with rustup (https://rustup.rs)"
}

# `cargo build --release ARGS...`, then sets $release to the release directory
# of the shared target dir.
build_release() { # CARGO_ARGS...
    local target_dir
    cargo build --release "$@"
    target_dir=$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])') ||
        target_dir=${CARGO_TARGET_DIR:-target}
    release="$(realpath -m "$target_dir")/release"
}

# Prints the pids of the services a bus started by activation (such as
# xdg-document-portal's permission store). dbus-daemon double-forks them, so
# they are not its children; the bus says which pid owns each name. RUNNER
# runs dbus-send as the bus's user.
activated_pids() { # ADDRESS RUNNER...
    local address=$1 name
    shift
    for name in $("$@" env DBUS_SESSION_BUS_ADDRESS="$address" dbus-send --session --print-reply \
        --dest=org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus.ListNames 2>/dev/null |
        sed -n 's/^ *string "\([^:][^"]*\)"$/\1/p' | grep -vx org.freedesktop.DBus); do
        "$@" env DBUS_SESSION_BUS_ADDRESS="$address" dbus-send --session --print-reply \
            --dest=org.freedesktop.DBus /org/freedesktop/DBus \
            org.freedesktop.DBus.GetConnectionUnixProcessID "string:$name" 2>/dev/null |
            sed -n 's/^ *uint32 \([0-9]*\)$/\1/p' || true
    done
}

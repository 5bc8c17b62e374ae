#!/usr/bin/env bash
# Sets up this Debian 12 machine, builds appbox, and runs the sample app
# manifests/org.appbox.Hello in the sandbox. The app prints what it sees.
#
# As root this works too: appbox then runs the app as uid 65534 (nobody) with
# no capabilities.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

tests/bootstrap.sh

if ! command -v cargo >/dev/null 2>&1; then
    PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "run-sample: error: cargo is not installed (not on PATH, nor in $HOME/.cargo/bin); install Rust with rustup (https://rustup.rs)" >&2
    exit 1
fi

# A release build: it takes a little longer, and the launcher is fast.
cargo build --release -p appbox

target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])') ||
    target_dir=${CARGO_TARGET_DIR:-target}
appbox="$(realpath -m "$target_dir")/release/appbox"

cleanup=()
trap 'if ((${#cleanup[@]})); then rm -rf -- "${cleanup[@]}"; fi' EXIT

# appbox keeps its instance records in $XDG_RUNTIME_DIR, which must be private
# to this user. Outside a desktop session (CI, ssh, su) it is often unset.
if [[ -z ${XDG_RUNTIME_DIR:-} ]]; then
    if [[ -d /run/user/$EUID && -O /run/user/$EUID ]]; then
        export XDG_RUNTIME_DIR="/run/user/$EUID"
    else
        XDG_RUNTIME_DIR=$(mktemp -d "${TMPDIR:-/tmp}/appbox-run.XXXXXX")
        export XDG_RUNTIME_DIR
        cleanup+=("$XDG_RUNTIME_DIR")
    fi
    chmod 0700 "$XDG_RUNTIME_DIR"
fi

app_dir=manifests/org.appbox.Hello
# As root the app runs as uid 65534, which must be able to read and run its own
# files. A checkout made with a strict umask is not readable by others, so the
# app is then run from a world-readable copy.
if ((EUID == 0)) && [[ -n $(find "$app_dir/files" \( -type d ! -perm -o=rx \) -o \
    \( -type f ! -perm -o=r \) -o \( -type f -perm -u=x ! -perm -o=x \) | head -n 1) ]]; then
    copy=$(mktemp -d "${TMPDIR:-/tmp}/appbox-sample.XXXXXX")
    cleanup+=("$copy")
    cp -R "$app_dir/." "$copy/"
    chmod -R a+rX "$copy"
    chmod 0755 "$copy"
    app_dir=$copy
fi

# When a display is available (DISPLAY or WAYLAND_DISPLAY set), this script
# will start the GUI store instead; the store arrives with the store issue.
# Until then it runs the sample app in both cases.
echo "run-sample: running $app_dir in the sandbox:"
echo
status=0
"$appbox" run --app-dir "$app_dir" || status=$?
echo
if ((status != 0)); then
    echo "run-sample: the sample app failed (exit code $status)" >&2
    exit "$status"
fi
echo "run-sample: done. Run your own app with: $appbox run --app-dir DIR"

#!/usr/bin/env bash
# The main job: sets up this Debian 12 machine, builds appbox, publishes the
# sample apps (manifests/) to a local signed remote, installs them from it, and
# runs one in the sandbox: the GTK notes editor when a display is available
# (DISPLAY or WAYLAND_DISPLAY), else org.appbox.Hello, which prints what it sees.
# (The store's own window comes with the GUI issue.)
#
# The publisher's side (a key pair and the repository) lives in
# $XDG_DATA_HOME/appbox-samples; the installed apps in $XDG_DATA_HOME/appbox, as
# for any remote. Running it again rebuilds the apps and updates them.
#
# As root this works too: appbox then runs the apps as uid 65534 (nobody) with
# no capabilities.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'run-sample: %s\n' "$*"; }
die() {
    printf 'run-sample: error: %s\n' "$*" >&2
    exit 1
}

tests/bootstrap.sh

if ! command -v cargo >/dev/null 2>&1; then
    PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 ||
    die "cargo is not installed (not on PATH, nor in $HOME/.cargo/bin); install Rust with rustup (https://rustup.rs)"

# A release build: it takes a little longer, and the launcher is fast.
cargo build --release -p appbox -p appbox-notes

target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])') ||
    target_dir=${CARGO_TARGET_DIR:-target}
release="$(realpath -m "$target_dir")/release"
appbox="$release/appbox"

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

# --- publish -------------------------------------------------------------------

samples="${XDG_DATA_HOME:-$HOME/.local/share}/appbox-samples"
mkdir -p "$samples"
if [[ ! -f $samples/publisher.secret ]]; then
    "$appbox" repo keygen "$samples/publisher" >/dev/null
fi
# Rust is not compiled inside the build sandbox (no runtime here has a Rust
# toolchain), so the notes editor built above is handed to its manifest.
manifests/org.appbox.Notes/stage-prebuilt.sh "$release/appbox-notes"
apps=(org.appbox.Hello org.appbox.Wc org.appbox.Fetch org.appbox.Notes)
for id in org.appbox.Platform "${apps[@]}"; do
    say "building $id"
    "$appbox" build "manifests/$id.toml" --repo "$samples/repo" \
        --sign-key "$samples/publisher.secret" >/dev/null
done

# --- install -------------------------------------------------------------------

if ! "$appbox" remote-ls --json | grep -q '"samples"'; then
    "$appbox" remote-add samples "file://$samples/repo" --sign-pubkey "$samples/publisher.pub"
fi
for id in "${apps[@]}"; do
    if "$appbox" info "$id" >/dev/null 2>&1; then
        "$appbox" update --yes "$id"
    else
        "$appbox" install samples "$id"
    fi
done
echo
"$appbox" list
echo

# --- run -----------------------------------------------------------------------

if [[ -n ${DISPLAY:-} || -n ${WAYLAND_DISPLAY:-} ]]; then
    say "starting org.appbox.Notes in the sandbox"
    exec "$appbox" run org.appbox.Notes
fi
say "no display: running org.appbox.Hello in the sandbox:"
echo
status=0
"$appbox" run org.appbox.Hello || status=$?
echo
((status == 0)) || die "the sample app failed (exit code $status)"
say "done. Try: $appbox run org.appbox.Wc -- /etc/os-release; $appbox list; $appbox info org.appbox.Fetch"

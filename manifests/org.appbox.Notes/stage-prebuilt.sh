#!/usr/bin/env bash
# Stages a built appbox-notes binary as prebuilt/appbox-notes, the `file` source that
# manifests/org.appbox.Notes.toml hands to `appbox build`.
#
# Why: Notes is written in Rust, and no runtime here has a Rust toolchain, so it cannot
# be compiled inside the build sandbox the way the C sample apps are. The workspace's
# cargo builds it on the host instead, and the build only installs the result, the way
# Flatpak manifests ship prebuilt binaries. The copy lives beneath the manifest's
# directory because a manifest may only name paths there; prebuilt/ is in .gitignore.
#
# Usage: manifests/org.appbox.Notes/stage-prebuilt.sh target/debug/appbox-notes
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 PATH-TO-BUILT-appbox-notes" >&2
    exit 2
fi
binary=$1
if [[ ! -f $binary ]]; then
    echo "$0: $binary is not a file; build it first with: cargo build -p appbox-notes" >&2
    exit 1
fi

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
mkdir -p -- "$here/prebuilt"
# Copy to a temporary name, then rename, so a build never sees a half-written binary.
install -m 0755 -- "$binary" "$here/prebuilt/.appbox-notes.tmp"
mv -f -- "$here/prebuilt/.appbox-notes.tmp" "$here/prebuilt/appbox-notes"
echo "staged $here/prebuilt/appbox-notes"

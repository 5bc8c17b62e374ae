#!/usr/bin/env bash
# The whole test suite: set-up, formatting, lints, the static in-sandbox probe,
# the build, and every test of the workspace. Exits non-zero on any failure.
#
# Everything builds into one target dir (CARGO_TARGET_DIR if set, else ./target):
# the dev profile, plus the tiny statically linked probe in its own profile.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
started=$SECONDS
step=bootstrap

finish() {
    local code=$?
    if ((code != 0)); then
        printf 'run-tests: FAILED at step "%s" (exit code %d)\n' "$step" "$code" >&2
    fi
}
trap finish EXIT

run_step() {
    step=$1
    shift
    printf '==> %s\n' "$step"
    "$@"
}

run_step bootstrap tests/bootstrap.sh

step="find cargo"
if ! command -v cargo >/dev/null 2>&1; then
    PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "run-tests: error: cargo is not installed (not on PATH, nor in $HOME/.cargo/bin); install Rust with rustup (https://rustup.rs)" >&2
    exit 1
fi
for tool in fmt clippy; do
    if ! cargo "$tool" --version >/dev/null 2>&1; then
        echo "run-tests: error: \`cargo $tool\` is missing; install it with: rustup component add ${tool/fmt/rustfmt}" >&2
        exit 1
    fi
done

step="find the target dir"
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])') ||
    target_dir=${CARGO_TARGET_DIR:-target}
target_dir=$(realpath -m "$target_dir")

run_step "cargo fmt" cargo fmt --all -- --check
run_step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings

# The probe runs inside sandboxes whose /usr may hold another libc, so it is static.
run_step "build the static probe" cargo rustc -p appbox-probe --profile probe --bin appbox-probe \
    -- -C target-feature=+crt-static -C relocation-model=static
probe="$target_dir/probe/appbox-probe"
step="check the probe is static"
if [[ ! -x $probe ]]; then
    echo "run-tests: error: the probe was not built at $probe" >&2
    exit 1
fi
if ldd "$probe" >/dev/null 2>&1; then
    echo "run-tests: error: $probe is dynamically linked; it must be static" >&2
    exit 1
fi

run_step "cargo build" cargo build --workspace

export APPBOX_PROBE="$probe"
export APPBOX_BIN="$target_dir/debug/appbox"
export APPBOX_STORE_BIN="$target_dir/debug/appbox-store"
export APPBOX_PORTAL_BIN="$target_dir/debug/appbox-portal"
export APPBOX_GUI_BIN="$target_dir/debug/appbox-gui"
export APPBOX_NOTES_BIN="$target_dir/debug/appbox-notes"
run_step "cargo test" cargo test --workspace

step="all done"
printf 'run-tests: all passed (fmt, clippy, probe, build, tests) in %ds\n' "$((SECONDS - started))"

#!/usr/bin/env bash
# Benchmark, not a test: what a running sandbox costs, against the host and
# bwrap in the same run.
#
#   syscalls   a loop of open+read+fstat+close of a file under /usr plus
#              getppid and getuid (tests/bench/syscalls.rs), on the host, in
#              `appbox run` (seccomp, Landlock, namespaces), in `appbox run`
#              with Landlock and then seccomp switched off (each layer's
#              share), and in a minimal bwrap sandbox (namespaces only).
#              Target: appbox ≤ 1.05 × host. The `ids` loop (getppid and
#              getuid only) isolates seccomp.
#   idle RSS   appbox-portal on a private session bus, idle, against what
#              Flatpak runs for the same job: xdg-desktop-portal and
#              xdg-document-portal (with xdg-permission-store), when they are
#              installed.
# Each loop runs RUNS times, alternating between the five, and the best run
# is reported: other work on the machine (here, other virtual machines) only
# ever adds time, in bursts that last seconds.
#
# Usage: tests/bench/runtime.sh
#   APPBOX_BENCH_RUNS=N (default 7); APPBOX_BENCH_ROUNDS=N rounds per timing
#   (default 50000); APPBOX_BENCH_SUMMARY=FILE appends the results for
#   tests/bench/report.sh.
set -euo pipefail
export LC_ALL=C
umask 022

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

RUNS=${APPBOX_BENCH_RUNS:-7}
ROUNDS=${APPBOX_BENCH_ROUNDS:-50000}
REPEATS=20
TEST_USER=appbox-test

say() { printf 'bench: %s\n' "$*"; }
die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "APPBOX_BENCH_RUNS must be a positive number, not '$RUNS'"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "APPBOX_BENCH_ROUNDS must be a positive number, not '$ROUNDS'"

tests/bootstrap.sh
if ! command -v cargo >/dev/null 2>&1; then
    PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 ||
    die "cargo is not installed (not on PATH, nor in $HOME/.cargo/bin); install Rust with rustup (https://rustup.rs)"

cargo build --release -p appbox -p appbox-portal -p appbox-tests --example bench-syscalls
# Writing back what the build wrote would weigh on the first loops.
sync
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])') ||
    target_dir=${CARGO_TARGET_DIR:-target}
release="$(realpath -m "$target_dir")/release"

work=$(mktemp -d /tmp/appbox-bench-runtime.XXXXXX)
bus_pids=()
cleanup() {
    for pid in "${bus_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    rm -rf -- "$work"
}
trap cleanup EXIT
chmod 0755 "$work"

install -m 0755 "$release/appbox" "$release/appbox-portal" "$work/"
mkdir -p "$work/app/files/bin" "$work/home" "$work/run"
install -m 0755 "$release/examples/bench-syscalls" "$work/app/files/bin/"
cat >"$work/app/metadata.toml" <<'EOF'
id = "org.appbox.BenchSyscalls"
name = "Bench"
command = "bench-syscalls"
runtime = "host"
permissions = []
EOF
chmod -R a+rX "$work/app"
chmod 0700 "$work/run"
if ((EUID == 0)); then
    id "$TEST_USER" >/dev/null 2>&1 ||
        die "run tests/run-tests.sh once first: it creates the user $TEST_USER"
    chown "$TEST_USER:" "$work/home" "$work/run"
    as_user=(setpriv --reuid="$TEST_USER" --regid="$TEST_USER" --clear-groups)
    who="as the user $TEST_USER"
else
    as_user=()
    who="as $(id -un)"
fi
user_env=(env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 HOME="$work/home"
    XDG_RUNTIME_DIR="$work/run")
as_bench_user() {
    (cd "$work" && exec "${as_user[@]}" "${user_env[@]}" "$@")
}
BWRAP=(bwrap --unshare-all --die-with-parent --new-session --ro-bind /usr /usr
    --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64
    --proc /proc --dev /dev --tmpfs /tmp --ro-bind "$work/app/files" /app)

# --- the syscall loops ------------------------------------------------------------

say "syscall loops $who: $RUNS runs of $ROUNDS rounds, host, appbox (whole, without Landlock, without seccomp) and bwrap in turn"
results=$work/loops.tsv
: >"$results"
# The benchmark switches a layer off with the launcher's test-only option; its
# warning on stderr is expected.
appbox_without() { # LAYER MODE
    as_bench_user "$work/appbox" run --unsafe-disable-layer="$1" --app-dir "$work/app" \
        -- "$ROUNDS" "$REPEATS" "$2" 2>/dev/null
}
for mode in files ids; do
    for ((run = 0; run < RUNS; run++)); do
        host=$(as_bench_user "$work/app/files/bin/bench-syscalls" "$ROUNDS" "$REPEATS" "$mode")
        appbox=$(as_bench_user "$work/appbox" run --app-dir "$work/app" -- "$ROUNDS" "$REPEATS" "$mode")
        no_landlock=$(appbox_without landlock "$mode")
        no_seccomp=$(appbox_without seccomp "$mode")
        bwrap=$(as_bench_user "${BWRAP[@]}" /app/bin/bench-syscalls "$ROUNDS" "$REPEATS" "$mode")
        for side in host appbox no_landlock no_seccomp bwrap; do
            printf '%s\t%s\t%s\n' "$mode" "$side" "${!side#ns_per_round }" >>"$results"
        done
    done
done

# --- idle memory of the portals --------------------------------------------------

# Starts PROGRAM on a private session bus of its own, waits until it is idle,
# and prints its VmRSS in kB (0 when it did not stay up).
idle_rss() { # PROGRAM [ARGS...]
    local bus_dir pid rss
    bus_dir=$(mktemp -d "$work/bus.XXXXXX")
    chmod 0755 "$bus_dir"
    [[ -z ${as_user[*]} ]] || chown "$TEST_USER:" "$bus_dir"
    as_bench_user dbus-daemon --session --fork --print-pid=1 --nopidfile \
        --address="unix:path=$bus_dir/socket" >"$bus_dir/pid"
    bus_pids+=("$(cat "$bus_dir/pid")")
    (cd "$work" && exec "${as_user[@]}" "${user_env[@]}" \
        DBUS_SESSION_BUS_ADDRESS="unix:path=$bus_dir/socket" "$@") >"$bus_dir/log" 2>&1 &
    pid=$!
    sleep 2
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "${rss:-0}"
}
say "idle memory of the portals"
appbox_portal=$(idle_rss "$work/appbox-portal")
flatpak_portals=0
flatpak_names=()
for program in /usr/libexec/xdg-desktop-portal /usr/libexec/xdg-document-portal \
    /usr/libexec/xdg-permission-store; do
    if [[ -x $program ]]; then
        rss=$(idle_rss "$program")
        if ((rss > 0)); then
            flatpak_portals=$((flatpak_portals + rss))
            flatpak_names+=("$(basename "$program") ${rss} kB")
        fi
    fi
done

python3 - "$results" "$appbox_portal" "$flatpak_portals" "$who" "${flatpak_names[*]:-}" \
    "$REPEATS" <<'EOF'
import os
import sys

results, appbox_portal, flatpak_portals, who, flatpak_names, repeats = sys.argv[1:7]
loops = {}
for line in open(results):
    mode, side, value = line.split()
    loops.setdefault((mode, side), []).append(float(value))
best = {key: min(values) for key, values in loops.items()}
sides = ("host", "appbox", "no_landlock", "no_seccomp", "bwrap")

print()
runs = len(loops["files", "host"])
print(f"Syscall loops {who}, ns per round (best of {runs} runs of {repeats} timings):")
print(f"  {'loop':<40} {'host':>8} {'appbox':>8} {'-landlock':>10} {'-seccomp':>9} {'bwrap':>8} {'appbox/host':>12}")
labels = {"files": "open+read+fstat+close, getppid, getuid",
          "ids": "getppid, getuid (seccomp only)"}
for mode in ("files", "ids"):
    h, a, nl, ns, b = (best[mode, side] for side in sides)
    print(f"  {labels[mode]:<40} {h:8.1f} {a:8.1f} {nl:10.1f} {ns:9.1f} {b:8.1f} {a / h:11.3f}×")
files = {side: best["files", side] for side in sides}
print(f"  Landlock's share of a round: {files['appbox'] - files['no_landlock']:.0f} ns; "
      f"seccomp's: {files['appbox'] - files['no_seccomp']:.0f} ns")
print("  target: appbox ≤ 1.05 × host for the first loop")

appbox_mb, flatpak_mb = int(appbox_portal) * 1024 / 1e6, int(flatpak_portals) * 1024 / 1e6
print()
print("Idle memory of the portal (VmRSS, MB = 10^6 bytes):")
print(f"  appbox-portal {appbox_mb:.2f}")
if flatpak_mb:
    print(f"  Flatpak's portals {flatpak_mb:.2f} ({flatpak_names})")
else:
    print("  Flatpak's portals: not measured (not installed, or they did not stay up)")

summary = os.environ.get("APPBOX_BENCH_SUMMARY")
if summary:
    with open(summary, "a") as out:
        out.write(f"syscall loop (files)\t{files['appbox']:.3f}\thost\t{files['host']:.3f}\tns\t1.05\n")
        out.write(f"syscall loop (files)\t{files['appbox']:.3f}\tbwrap\t{files['bwrap']:.3f}\tns\t-\n")
        out.write(f"syscall loop (files), Landlock off\t{files['no_landlock']:.3f}\thost\t{files['host']:.3f}\tns\t-\n")
        out.write(f"syscall loop (files), seccomp off\t{files['no_seccomp']:.3f}\thost\t{files['host']:.3f}\tns\t-\n")
        out.write(f"syscall loop (ids, seccomp)\t{best['ids', 'appbox']:.3f}\thost\t{best['ids', 'host']:.3f}\tns\t-\n")
        if flatpak_mb:
            out.write(f"portal idle RSS\t{appbox_mb:.3f}\tFlatpak's portals\t{flatpak_mb:.3f}\tMB\t-\n")
EOF

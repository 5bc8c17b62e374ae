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
# shellcheck source=tests/bench/common.sh
source tests/bench/common.sh

RUNS=${APPBOX_BENCH_RUNS:-7}
ROUNDS=${APPBOX_BENCH_ROUNDS:-50000}
REPEATS=20
TEST_USER=appbox-test

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "APPBOX_BENCH_RUNS must be a positive number, not '$RUNS'"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "APPBOX_BENCH_ROUNDS must be a positive number, not '$ROUNDS'"

prepare_build

build_release -p appbox -p appbox-portal -p appbox-tests --example bench-syscalls
# Writing back what the build wrote would weigh on the first loops.
sync

work=$(mktemp -d /tmp/appbox-bench-runtime.XXXXXX)
cleanup() {
    local pid_file
    # idle_rss runs in a command substitution, so its buses are found by their
    # pid files: those of a call cut short are still there.
    for pid_file in "$work"/bus.*/pid; do
        [[ ! -e $pid_file ]] || stop_bus "${pid_file%/pid}"
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

# Stops the services the private bus started by activation (xdg-desktop-portal
# activates xdg-document-portal and xdg-permission-store), then the bus, and
# waits until they are gone, so that the next program starts alone.
stop_bus() { # BUS_DIR
    local bus_address="unix:path=$1/socket" bus_pid bus_run=$1/run pid pids=() tries
    bus_pid=$(cat "$1/pid" 2>/dev/null) || return 0
    [[ -n $bus_pid ]] || return 0
    for pid in $(activated_pids "$bus_address" as_bench_user); do
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
    done
    kill -TERM "$bus_pid" 2>/dev/null || true
    pids+=("$bus_pid")
    for pid in "${pids[@]}"; do
        for ((tries = 0; tries < 50; tries++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    done
    # xdg-document-portal unmounts its FUSE file system when it stops; if it did
    # not, the mount would keep the work dir.
    if mountpoint -q "$bus_run/doc" 2>/dev/null; then
        fusermount3 -u "$bus_run/doc" 2>/dev/null || umount "$bus_run/doc" 2>/dev/null || true
    fi
    rm -f -- "$1/pid"
}
# Starts PROGRAM on a private session bus of its own, with a runtime dir of its
# own, waits until it is idle, and prints its VmRSS in kB, or 0 when it did not
# stay up (then the end of its log goes to stderr). Stops what its bus started
# before returning.
idle_rss() { # PROGRAM [ARGS...]
    local bus_dir bus_run bus_address pid rss
    bus_dir=$(mktemp -d "$work/bus.XXXXXX")
    chmod 0755 "$bus_dir"
    bus_run=$bus_dir/run
    mkdir -m 0700 "$bus_run"
    [[ -z ${as_user[*]} ]] || chown "$TEST_USER:" "$bus_dir" "$bus_run"
    bus_address="unix:path=$bus_dir/socket"
    (cd "$work" && exec "${as_user[@]}" "${user_env[@]}" XDG_RUNTIME_DIR="$bus_run" \
        dbus-daemon --session --fork --print-pid=1 --nopidfile --address="$bus_address") \
        >"$bus_dir/pid"
    (cd "$work" && exec "${as_user[@]}" "${user_env[@]}" XDG_RUNTIME_DIR="$bus_run" \
        DBUS_SESSION_BUS_ADDRESS="$bus_address" "$@") >"$bus_dir/log" 2>&1 &
    pid=$!
    sleep 2
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    stop_bus "$bus_dir"
    if [[ ${rss:-0} == 0 ]]; then
        printf 'bench: %s did not stay up; the end of its log:\n' "$(basename "$1")" >&2
        tail -n 5 "$bus_dir/log" | sed 's/^/    /' >&2
    fi
    echo "${rss:-0}"
}
say "idle memory of the portals"
appbox_portal=$(idle_rss "$work/appbox-portal")
flatpak_portals=0
flatpak_names=()
# The programs that did not stay up, to say so in the report.
down_names=()
((appbox_portal > 0)) || down_names+=(appbox-portal)
for program in /usr/libexec/xdg-desktop-portal /usr/libexec/xdg-document-portal \
    /usr/libexec/xdg-permission-store; do
    if [[ -x $program ]]; then
        rss=$(idle_rss "$program")
        if ((rss > 0)); then
            flatpak_portals=$((flatpak_portals + rss))
            flatpak_names+=("$(basename "$program") ${rss} kB")
        else
            down_names+=("$(basename "$program")")
        fi
    fi
done

python3 - "$results" "$appbox_portal" "$flatpak_portals" "$who" "${flatpak_names[*]:-}" \
    "$REPEATS" "${down_names[*]:-}" <<'EOF'
import os
import sys

results, appbox_portal, flatpak_portals, who, flatpak_names, repeats, down_names = sys.argv[1:8]
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
if appbox_mb:
    print(f"  appbox-portal {appbox_mb:.2f}")
else:
    print("  appbox-portal: not measured (it did not stay up)")
if flatpak_mb:
    print(f"  Flatpak's portals {flatpak_mb:.2f} ({flatpak_names})")
else:
    print("  Flatpak's portals: not measured (not installed, or they did not stay up)")
if down_names:
    print(f"  did not stay up, so not counted: {', '.join(down_names.split())}")

summary = os.environ.get("APPBOX_BENCH_SUMMARY")
if summary:
    # The loops report the best run, the other benchmarks a median: say so.
    best_of = f"best of {runs} runs"
    with open(summary, "a") as out:
        out.write(f"syscall loop (files, {best_of})\t{files['appbox']:.3f}\thost\t{files['host']:.3f}\tns\t1.05\n")
        out.write(f"syscall loop (files, {best_of})\t{files['appbox']:.3f}\tbwrap\t{files['bwrap']:.3f}\tns\t-\n")
        out.write(f"syscall loop (files, {best_of}), Landlock off\t{files['no_landlock']:.3f}\thost\t{files['host']:.3f}\tns\t-\n")
        out.write(f"syscall loop (files, {best_of}), seccomp off\t{files['no_seccomp']:.3f}\thost\t{files['host']:.3f}\tns\t-\n")
        out.write(f"syscall loop (ids, seccomp, {best_of})\t{best['ids', 'appbox']:.3f}\thost\t{best['ids', 'host']:.3f}\tns\t-\n")
        if flatpak_mb and appbox_mb:
            out.write(f"portal idle RSS\t{appbox_mb:.3f}\tFlatpak's portals\t{flatpak_mb:.3f}\tMB\t-\n")
EOF

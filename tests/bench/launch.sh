#!/usr/bin/env bash
# Benchmark, not a test: how fast `appbox run` starts a trivial app, and how much
# memory its monitor process holds while the app runs.
#
# With hyperfine, in rounds, it measures, each with a trivial command:
#   appbox run --app-dir DIR      an app whose command is /usr/bin/true
#   bwrap                         an equivalent minimal sandbox
#   bwrap, appbox's sandbox       the same mounts as appbox, from `appbox run
#                                 --print-plan` (tests/bench/plan-to-bwrap.py),
#                                 without Landlock or seccomp
#   unshare -Urmpf --mount-proc   the floor: namespaces alone
#   unshare -Urmpf -inuC          namespaces alone, all the kinds appbox and
#     --mount-proc                bwrap --unshare-all make (adds net, ipc,
#                                 uts and cgroup)
#   /bin/true                     no sandbox at all
#   flatpak run                   a trivial app, when it can be set up offline
#   appbox run, with a bus        the same app with a session bus on the host,
#                                 so that appbox forks its bus proxy
# and prints the medians and the ratios against the targets (appbox ≤ 0.8× bwrap,
# ≤ 0.12× flatpak run). It then reads VmRSS and VmHWM of the appbox monitor and
# of bwrap while a sandboxed `sleep 1` runs (target: ≤ 2 MB for appbox).
#
# As root the sandboxed commands run as the unprivileged user appbox-test, with
# a private XDG_RUNTIME_DIR and HOME, and the binary and apps copied to a
# world-readable temporary directory. Every command gets the same small
# environment (no session bus, no display).
#
# Usage: tests/bench/launch.sh
#   APPBOX_BENCH_RUNS=N and APPBOX_BENCH_WARMUP=N change the number of runs
#   (defaults 200 and 20), for a quick look only.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/bench/common.sh
source tests/bench/common.sh

RUNS=${APPBOX_BENCH_RUNS:-200}
WARMUP=${APPBOX_BENCH_WARMUP:-20}
TEST_USER=appbox-test


prepare_build

build_release -p appbox
appbox_built=$release/appbox
[[ -x $appbox_built ]] || die "no release build at $appbox_built"

# hyperfine -N splits commands on spaces, so the work dir must have none: /tmp.
work=$(mktemp -d /tmp/appbox-bench.XXXXXX)
cleanup() {
    [[ -z ${bus_pid:-} ]] || kill "$bus_pid" 2>/dev/null || true
    # Flatpak checkouts are read-only; make them removable first.
    chmod -R u+w "$work" 2>/dev/null || true
    rm -rf -- "$work"
    [[ -z ${runtime_dir:-} || $runtime_dir == "$work/run" ]] || rm -rf -- "$runtime_dir"
}
trap cleanup EXIT
chmod 0755 "$work"

install -m 0755 "$appbox_built" "$work/appbox"
make_app() { # DIR COMMAND
    mkdir -p "$work/$1/files"
    cat >"$work/$1/metadata.toml" <<EOF
id = "org.appbox.Bench"
name = "Bench"
command = "$2"
runtime = "host"
permissions = []
EOF
}
make_app true-app /usr/bin/true
make_app sleep-app /usr/bin/sleep
chmod -R a+rX "$work"

mkdir -m 0755 "$work/home" "$work/out" "$work/flatpak" "$work/flatpak-build"
# XDG_RUNTIME_DIR is a tmpfs on a desktop (logind mounts /run/user/UID); use one
# here too when the machine has no such mount, so instance records cost what they
# cost for users.
if [[ -d /dev/shm && -w /dev/shm ]]; then
    runtime_dir=$(mktemp -d /dev/shm/appbox-bench-run.XXXXXX)
else
    runtime_dir="$work/run"
    mkdir "$runtime_dir"
fi
chmod 0700 "$runtime_dir"
if ((EUID == 0)); then
    chown "$TEST_USER:" "$work/home" "$runtime_dir" "$work/out" "$work/flatpak" "$work/flatpak-build"
    as_user=(setpriv --reuid="$TEST_USER" --regid="$TEST_USER" --clear-groups)
    who="as the user $TEST_USER"
else
    as_user=()
    who="as $(id -un)"
fi
user_env=(env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 HOME="$work/home"
    XDG_RUNTIME_DIR="$runtime_dir" FLATPAK_USER_DIR="$work/flatpak")
# Runs a command as the benchmark user, in the work dir, with the small environment.
as_bench_user() {
    (cd "$work" && exec "${as_user[@]}" "${user_env[@]}" "$@")
}

BWRAP_ARGS="bwrap --unshare-all --die-with-parent --new-session --ro-bind /usr /usr \
--symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 \
--proc /proc --dev /dev --tmpfs /tmp"

# --- flatpak: a trivial app on a tiny runtime, built offline -----------------
#
# Nothing is downloaded. The runtime is /usr/bin/true, sleep and sh with the
# host's libc and ldconfig, exported into a local repo and installed into a
# private FLATPAK_USER_DIR. The install runs under a private bus standing in for
# the system bus: flatpak asks the system bus about parental controls when an
# unprivileged user installs an app, and a missing system bus fails the install.
flatpak_reason=""
setup_flatpak() {
    local build="$work/flatpak-build" log="$work/out/flatpak-setup.log"
    if ! command -v flatpak >/dev/null 2>&1; then
        flatpak_reason="flatpak is not installed"
        return 1
    fi
    if ! command -v dbus-run-session >/dev/null 2>&1; then
        flatpak_reason="dbus-run-session (package dbus) is missing"
        return 1
    fi
    local files="$build/runtime/files" binary lib
    # An app build dir counts as finished (build-finish) once it has export/.
    mkdir -p "$files/bin" "$files/sbin" "$build/app/files/bin" "$build/app/export"
    for binary in /usr/bin/true /usr/bin/sleep /usr/bin/dash; do
        cp "$binary" "$files/bin/"
        for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
            lib=${lib#/usr}
            mkdir -p "$files$(dirname "$lib")"
            cp -L "/usr$lib" "$files$lib" 2>/dev/null || cp -L "$lib" "$files$lib"
        done
    done
    ln -s dash "$files/bin/sh"
    cp /usr/sbin/ldconfig "$files/sbin/ldconfig"
    ln -s ../sbin/ldconfig "$files/bin/ldconfig"
    printf '[Runtime]\nname=org.appbox.BenchPlatform\nruntime=org.appbox.BenchPlatform/%s/1\nsdk=org.appbox.BenchPlatform/%s/1\n' \
        "$(flatpak --default-arch)" "$(flatpak --default-arch)" >"$build/runtime/metadata"
    printf '[Application]\nname=org.appbox.BenchTrue\nruntime=org.appbox.BenchPlatform/%s/1\nsdk=org.appbox.BenchPlatform/%s/1\ncommand=/usr/bin/true\n' \
        "$(flatpak --default-arch)" "$(flatpak --default-arch)" >"$build/app/metadata"
    chmod -R a+rX "$build"
    # shellcheck disable=SC2016 # $DBUS_SESSION_BUS_ADDRESS expands inside the private bus.
    if ! as_bench_user sh -c '
        set -e
        cd flatpak-build
        flatpak build-export --runtime --files=files --disable-sandbox repo runtime 1
        flatpak build-export --disable-sandbox repo app 1
        flatpak --user remote-add --no-gpg-verify appbox-bench "file://$PWD/repo"
        dbus-run-session -- sh -c "DBUS_SYSTEM_BUS_ADDRESS=\$DBUS_SESSION_BUS_ADDRESS exec flatpak --user install -y --noninteractive appbox-bench org.appbox.BenchPlatform//1 org.appbox.BenchTrue//1"
        flatpak run org.appbox.BenchTrue
    ' >"$log" 2>&1; then
        flatpak_reason="the offline test app could not be set up:
$(tail -n 5 "$log" | sed 's/^/    /')"
        return 1
    fi
}

flatpak_cmd=()
if setup_flatpak; then
    flatpak_cmd=(-n "flatpak run (trivial app)" "flatpak run org.appbox.BenchTrue")
fi

# --- bwrap building the very sandbox appbox builds -------------------------------
#
# The same mounts, namespaces, environment and command, from appbox's own plan;
# bwrap has no Landlock and is given no seccomp program, so it does less.
mkdir -m 0755 "$work/same"
[[ -z ${as_user[*]} ]] || chown "$TEST_USER:" "$work/same"
as_bench_user "$work/appbox" run --app-dir "$work/true-app" # creates the app's home
as_bench_user "$work/appbox" run --print-plan --app-dir "$work/true-app" >"$work/same/plan.json"
as_bench_user python3 "$PWD/tests/bench/plan-to-bwrap.py" "$work/same/plan.json" "$work/same" \
    >"$work/same/command" || die "cannot turn the plan into a bwrap command"
same_sandbox=$(cat "$work/same/command")

# --- a session bus, for the launch with the bus proxy -------------------------
#
# With a session bus on the host, `appbox run` forks a filtering proxy for the
# sandbox; this measures what that costs. The other commands get no bus.
bus_cmd=()
if command -v dbus-daemon >/dev/null 2>&1; then
    mkdir -m 0755 "$work/bus"
    [[ -z ${as_user[*]} ]] || chown "$TEST_USER:" "$work/bus"
    bus_pid=$(as_bench_user dbus-daemon --session --fork --print-pid=1 --nopidfile \
        --address="unix:path=$work/bus/socket")
    bus_cmd=(-n "appbox run, with a session bus"
        "env DBUS_SESSION_BUS_ADDRESS=unix:path=$work/bus/socket $work/appbox run --app-dir $work/true-app")
    if ((${#flatpak_cmd[@]})); then
        # flatpak puts its xdg-dbus-proxy between the app and this bus.
        bus_cmd+=(-n "flatpak run, with a session bus"
            "env DBUS_SESSION_BUS_ADDRESS=unix:path=$work/bus/socket flatpak run org.appbox.BenchTrue")
    fi
fi

# --- launch time ---------------------------------------------------------------

echo "bench: measuring launch times $who ($RUNS runs after $WARMUP warm-ups each)..."
# hyperfine times one command's runs back to back, so a few seconds of noise
# (other virtual machines on a shared host) would land on one command only. The
# runs are split into ROUNDS rounds that each time every command in turn; the
# first RUNS % ROUNDS rounds take one run more, so that they add up to RUNS.
ROUNDS=$((RUNS >= 10 ? 10 : 1))
for ((round = 0; round < ROUNDS; round++)); do
    warmup=$((round == 0 ? WARMUP : 2))
    round_runs=$((RUNS / ROUNDS + (round < RUNS % ROUNDS ? 1 : 0)))
    if ! as_bench_user hyperfine -N --warmup "$warmup" --runs "$round_runs" --style basic \
        --export-json "$work/out/launch-$round.json" \
        -n "/bin/true" "/bin/true" \
        -n "unshare -Urmpf --mount-proc (floor)" "unshare -Urmpf --mount-proc true" \
        -n "unshare, appbox's namespaces" "unshare -Urmpf --ipc --net --uts --cgroup --mount-proc true" \
        -n "bwrap, minimal sandbox" "$BWRAP_ARGS /usr/bin/true" \
        -n "bwrap, appbox's sandbox" "$same_sandbox" \
        -n "appbox run --app-dir" "$work/appbox run --app-dir $work/true-app" \
        "${bus_cmd[@]}" "${flatpak_cmd[@]}" >"$work/out/hyperfine.log" 2>&1; then
        cat "$work/out/hyperfine.log" >&2
        die "hyperfine failed (output above)"
    fi
done

# --- peak memory ---------------------------------------------------------------

# Starts COMMAND in the background, waits until its sandbox exists, and reads
# VmRSS and VmHWM of the process itself (the appbox monitor, or bwrap's parent).
measure_rss() { # NAME EXPECTED_COMM COMMAND...
    local name=$1 comm=$2 pid i rss hwm children
    shift 2
    (cd "$work" && exec "${as_user[@]}" "${user_env[@]}" "$@") >"$work/out/rss-$comm.log" 2>&1 &
    pid=$!
    children=""
    for ((i = 0; i < 200; i++)); do
        children=$(pgrep -P "$pid" || true)
        [[ -n $children && $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] && break
        sleep 0.01
    done
    [[ -n $children ]] || die "$name: the sandbox did not start"
    sleep 0.3 # the app is now asleep for the rest of its second
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
    wait "$pid" || die "$name exited with an error: $(cat "$work/out/rss-$comm.log")"
    printf '%s\t%s\t%s\n' "$name" "$rss" "$hwm" >>"$work/out/rss.tsv"
}
echo "bench: measuring memory while a sandboxed sleep 1 runs..."
measure_rss "appbox monitor" appbox "$work/appbox" run --app-dir "$work/sleep-app" -- 1
# shellcheck disable=SC2086 # BWRAP_ARGS is a list of words.
measure_rss "bwrap" bwrap $BWRAP_ARGS /usr/bin/sleep 1

# --- report ----------------------------------------------------------------------

python3 - "$work/out" "$ROUNDS" "$work/out/rss.tsv" "$flatpak_reason" <<'EOF'
import json
import os
import statistics
import sys

out, rounds, rss_file, flatpak_reason = sys.argv[1:5]
rss_by_name = {}
times = {}
for round in range(int(rounds)):
    for r in json.load(open(f"{out}/launch-{round}.json"))["results"]:
        times.setdefault(r["command"], []).extend(r["times"])
medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
runs = len(next(iter(times.values())))

print()
print(f"Launch time, median of {runs} runs (ms), in {rounds} rounds that each time every command:")
for name, ms in medians.items():
    print(f"  {name:<38} {ms:8.2f}")
if flatpak_reason:
    print(f"  flatpak: not measured, because {flatpak_reason}")

APPBOX = "appbox run --app-dir"
rows = [
    ("appbox / bwrap", APPBOX, "bwrap, minimal sandbox", 0.8),
    ("appbox / bwrap, same mounts", APPBOX, "bwrap, appbox's sandbox", None),
    ("appbox / floor (unshare)", APPBOX, "unshare -Urmpf --mount-proc (floor)", None),
    ("appbox / flatpak run", APPBOX, "flatpak run (trivial app)", 0.12),
    ("namespaces alone / bwrap", "unshare, appbox's namespaces", "bwrap, minimal sandbox", None),
    ("with the bus / without", "appbox run, with a session bus", APPBOX, None),
]
print()
print(f"  {'ratio':<28} {'value':>7}   target")
for label, numerator, denominator, target in rows:
    if numerator not in medians or denominator not in medians:
        print(f"  {label:<28} {'-':>7}   not measured")
        continue
    ratio = medians[numerator] / medians[denominator]
    if target is None:
        verdict = "(no target)"
    else:
        verdict = f"≤ {target}×  " + ("met" if ratio <= target else "NOT met")
    print(f"  {label:<28} {ratio:6.2f}×   {verdict}")
print()
print("  'namespaces alone' is unshare(1) making the same kinds of namespaces and")
print("  mounting /proc, with no root, no Landlock and no seccomp: a launcher can")
print("  not beat that ratio.")

# For tests/bench/report.sh: measure, appbox, reference, reference value, unit, target.
summary = os.environ.get("APPBOX_BENCH_SUMMARY")
def record(measure, appbox, reference, reference_value, unit, target="-"):
    if summary and appbox is not None and reference_value is not None:
        with open(summary, "a") as out:
            out.write(f"{measure}\t{appbox:.3f}\t{reference}\t{reference_value:.3f}\t{unit}\t{target}\n")

BUS = "appbox run, with a session bus"
record("launch, no bus", medians.get(APPBOX), "bwrap", medians.get("bwrap, minimal sandbox"), "ms", "0.8")
record("launch, no bus", medians.get(APPBOX), "bwrap, same mounts", medians.get("bwrap, appbox's sandbox"), "ms")
record("launch, no bus", medians.get(APPBOX), "flatpak run", medians.get("flatpak run (trivial app)"), "ms", "0.12")
record("launch, with a bus", medians.get(BUS), "bwrap (no bus)", medians.get("bwrap, minimal sandbox"), "ms")
record("launch, with a bus", medians.get(BUS), "flatpak run, with a bus", medians.get("flatpak run, with a session bus"), "ms", "0.12")

print()
print("Memory of the process that stays outside the sandbox while the app runs (MB = 10^6 bytes):")
print(f"  {'process':<16} {'VmRSS':>8} {'VmHWM (peak)':>13}   target")
for line in open(rss_file):
    name, rss, hwm = line.rstrip("\n").split("\t")
    rss_mb, hwm_mb = int(rss) * 1024 / 1e6, int(hwm) * 1024 / 1e6
    target = ""
    if name.startswith("appbox"):
        target = "≤ 2 MB while the app runs  " + ("met" if rss_mb <= 2.0 else "NOT met")
    print(f"  {name:<16} {rss_mb:7.2f}  {hwm_mb:12.2f}   {target}")
    rss_by_name[name] = rss_mb
record("launcher RSS while the app runs", rss_by_name.get("appbox monitor"), "bwrap", rss_by_name.get("bwrap"), "MB", "-")
EOF

#!/usr/bin/env bash
# Benchmark, not a test: the store window (appbox-gui) with a catalog of 500
# generated apps, each with its own name, summary, description and icon,
# served from a signed local repository.
#
# It measures, each run a fresh appbox-gui process (median and worst of RUNS):
#   start      launch to the window's first frame, and to the first frame that
#              shows the catalog (the summary fetched and verified, the list
#              filled). Target: 300 ms.
#   keystroke  a key press in the search to the frame with its results, for
#              each key of a query typed one key at a time. Target: 16 ms.
# The timings come from the window itself (APPBOX_GUI_TIMING, see
# gui/src/window/timing.rs): launch time from this script, frames from GTK's
# frame clock.
#
# The display is Xvfb, which has no GPU: the numbers are given for GTK's
# default renderer (OpenGL through Mesa's llvmpipe) and for its cairo
# renderer, which is the faster of the two without a GPU. One session bus runs
# for the whole benchmark and a first, untimed start brings up what a desktop
# session already runs (xdg-desktop-portal, the accessibility bus), so that
# their start-up is not counted.
#
# Usage: tests/bench/gui.sh
#   APPBOX_BENCH_RUNS=N runs of each (default 10); APPBOX_BENCH_APPS=N catalog
#   size (default 500); APPBOX_BENCH_QUERY the typed search (default
#   "quick note"); APPBOX_BENCH_KEEP=1 keeps the work directory.
set -euo pipefail
export LC_ALL=C
umask 022

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/bench/common.sh
source tests/bench/common.sh

RUNS=${APPBOX_BENCH_RUNS:-10}
APPS=${APPBOX_BENCH_APPS:-500}
QUERY=${APPBOX_BENCH_QUERY:-quick note}
KEEP=${APPBOX_BENCH_KEEP:-}


[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "APPBOX_BENCH_RUNS must be a positive number, not '$RUNS'"
[[ $APPS =~ ^[1-9][0-9]*$ ]] || die "APPBOX_BENCH_APPS must be a positive number, not '$APPS'"

prepare_build

build_release -p appbox-gui -p appbox-tests --example bench-catalog
gui=$release/appbox-gui
[[ -x $gui ]] || die "no release build at $gui"

work=$(mktemp -d /tmp/appbox-bench-gui.XXXXXX)
xvfb_pid=""
bus_pid=""
stop() { # PID
    [[ -n $1 ]] || return 0
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    stop "$bus_pid"
    stop "$xvfb_pid"
    if [[ -n $KEEP ]]; then
        printf 'bench: the work directory is kept: %s\n' "$work" >&2
        return
    fi
    rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

say "publishing $APPS apps"
"$release/examples/bench-catalog" "$work/repo" "$APPS" "$work/key.pub" 2>/dev/null
mkdir -p "$work/home/.config/appbox" "$work/run"
chmod 0700 "$work/run"
key=$(grep -v '^#' "$work/key.pub" | head -n 1)
cat >"$work/home/.config/appbox/remotes.toml" <<EOF
[remotes.bench]
url = "file://$work/repo"
keys = ["$key"]
verify = true
enabled = true
EOF

display=""
for n in $(seq 90 130); do
    if [[ ! -e /tmp/.X11-unix/X$n && ! -e /tmp/.X$n-lock ]]; then
        display=:$n
        break
    fi
done
[[ -n $display ]] || die "no free X display between :90 and :130"
Xvfb "$display" -screen 0 1280x800x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
xvfb_pid=$!
for _ in $(seq 100); do
    [[ -e /tmp/.X11-unix/X${display#:} ]] && break
    kill -0 "$xvfb_pid" 2>/dev/null || break
    sleep 0.05
done
if [[ ! -e /tmp/.X11-unix/X${display#:} ]]; then
    # The work dir goes at exit unless kept, so show the end of the log too.
    tail -n 20 "$work/xvfb.log" >&2
    die "Xvfb did not start on $display (its log, above, is $work/xvfb.log; APPBOX_BENCH_KEEP=1 keeps it)"
fi

bus_address_file=$work/bus-address
dbus-daemon --session --nofork --print-address=3 3>"$bus_address_file" >"$work/bus.log" 2>&1 &
bus_pid=$!
for _ in $(seq 100); do
    [[ -s $bus_address_file ]] && break
    sleep 0.05
done
[[ -s $bus_address_file ]] || die "the session bus did not start (see $work/bus.log)"

export DISPLAY=$display
export DBUS_SESSION_BUS_ADDRESS=$(head -n 1 "$bus_address_file")
export HOME=$work/home XDG_RUNTIME_DIR=$work/run
unset XDG_DATA_HOME XDG_CONFIG_HOME XDG_CACHE_HOME WAYLAND_DISPLAY

say "warming up (the session's services start, caches fill)"
python3 tests/bench/gui-driver.py "$gui" "q" >/dev/null

results=$work/results
: >"$results"
for renderer in gl cairo; do
    say "renderer $renderer: $RUNS runs"
    for ((run = 0; run < RUNS; run++)); do
        GSK_RENDERER=$renderer python3 tests/bench/gui-driver.py "$gui" "$QUERY" |
            sed "s/^/$renderer /" >>"$results"
    done
done

python3 - "$results" "$APPS" "$QUERY" <<'EOF'
import statistics
import sys

path, apps, query = sys.argv[1], sys.argv[2], sys.argv[3]
samples = {}
for line in open(path):
    renderer, what, ms = line.split()
    samples.setdefault((renderer, what), []).append(float(ms))

targets = {"first-frame": 300.0, "catalog-frame": 300.0, "keystroke": 16.0}
names = {
    "first-frame": "launch → first frame",
    "catalog-frame": f"launch → catalog of {apps} shown",
    "keystroke": f"keystroke → results ('{query}')",
}
print()
print(f"{'measure':<36} {'renderer':<9} {'median':>9} {'worst':>9} {'n':>4} {'target':>8}")
for what in ["first-frame", "catalog-frame", "keystroke"]:
    for renderer in ["gl", "cairo"]:
        values = samples.get((renderer, what), [])
        if not values:
            continue
        median = statistics.median(values)
        verdict = "ok" if median <= targets[what] else "OVER"
        print(f"{names[what]:<36} {renderer:<9} {median:>7.1f}ms {max(values):>7.1f}ms"
              f" {len(values):>4} {targets[what]:>6.0f}ms {verdict}")
EOF

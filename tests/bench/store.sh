#!/usr/bin/env bash
# Benchmark, not a test: the store (publish, install, update, disk use) against
# flatpak, both served over HTTP by the same nginx, measured in the same run.
#
# The publishing side builds the sample runtime and apps (manifests/:
# org.appbox.Platform, Hello, Wc, Fetch) and a generated 50 MiB app
# (org.appbox.Big: 50 files of 1 MiB of random bytes) into a signed repository.
# The flatpak side gets the very same files: each flatpak app and the flatpak
# runtime are checked out of appbox's commits, exported with `flatpak
# build-export` and given static deltas with `flatpak build-update-repo
# --generate-static-deltas`. Nothing is downloaded from outside; nginx serves
# both repositories on a free loopback port and logs the bytes of every answer.
#
# It measures, each several times (median):
#   install   installing a small app (org.appbox.Wc) when its runtime is
#             already installed; uninstalled between runs
#   update    updating the 50 MiB app after ONE of its 1 MiB files changed:
#             the time, and the bytes nginx sent. Target for appbox: at most
#             1.1 × 1 MiB plus the fixed metadata cost, which is measured too,
#             as the bytes of an update whose files did not change at all
#   disk      du -sk of the store with Hello, Wc and Fetch installed on one
#             runtime, against each app with its own copy of the runtime
# and prints the medians, the ratios appbox/flatpak, and the targets.
#
# As root the store commands (and nginx) run as the unprivileged user
# appbox-test. Every command gets a small environment with a private HOME,
# XDG directories and FLATPAK_USER_DIR under a temporary directory. flatpak
# installs need a system bus (it asks it about parental controls): as in
# launch.sh, a private session bus stands in for it, here one dbus-daemon
# started once for the whole run, so that its start-up is not timed.
#
# Usage: tests/bench/store.sh
#   APPBOX_BENCH_RUNS=N changes the number of runs of each measurement
#   (default 5). APPBOX_BENCH_KEEP=1 keeps the work directory, with every
#   command's output in out/ and nginx's access log, and says where it is.
set -euo pipefail
export LC_ALL=C # EPOCHREALTIME with a '.' whatever the locale
umask 022

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=tests/bench/common.sh
source tests/bench/common.sh

RUNS=${APPBOX_BENCH_RUNS:-5}
KEEP=${APPBOX_BENCH_KEEP:-}
TEST_USER=appbox-test
APPS=(org.appbox.Hello org.appbox.Wc org.appbox.Fetch)
BIG_FILES=50
CHANGED_FILE=f25 # the one file that changes for each update
MIB=1048576


[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "APPBOX_BENCH_RUNS must be a positive number, not '$RUNS'"

prepare_build
[[ -x /usr/sbin/nginx ]] || die "nginx is not installed (/usr/sbin/nginx; package nginx-light)"

build_release -p appbox
for binary in appbox appbox-store; do
    [[ -x $release/$binary ]] || die "no release build at $release/$binary"
done

work=$(mktemp -d /tmp/appbox-bench-store.XXXXXX)
nginx_pid=""
bus_pid=""
# Stops a background process of ours (nginx, the bus) and waits for it.
stop() { # PID
    [[ -n $1 ]] || return 0
    # SIGTERM: nginx's master stops its workers before it exits.
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    stop "$nginx_pid"
    stop "$bus_pid"
    if [[ -n $KEEP ]]; then
        printf 'bench: the work directory is kept: %s\n' "$work" >&2
        return
    fi
    # Flatpak checkouts are read-only; make them removable first.
    chmod -R u+w "$work" 2>/dev/null || true
    rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
chmod 0755 "$work"

install -m 0755 "$release/appbox" "$release/appbox-store" "$work/"
cp -r manifests "$work/manifests"
user_dirs=(home run www nginx flatpak-user flatpak-build)
for dir in "${user_dirs[@]}"; do
    mkdir "$work/$dir"
done
mkdir "$work/out"
chmod 0700 "$work/run"

# --- the generated 50 MiB app ---------------------------------------------------

big="$work/manifests/org.appbox.Big"
mkdir -p "$big/src/data"
for ((i = 0; i < BIG_FILES; i++)); do
    printf -v name 'f%02d' "$i"
    head -c 1M /dev/urandom >"$big/src/data/$name"
done
printf '#!/bin/sh\nexec ls -l /app/share/big/data\n' >"$big/src/big"
cat >"$big/org.appbox.Big.svg" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">
  <rect x="4" y="4" width="56" height="56" rx="6" fill="#3584e4"/>
</svg>
EOF
cat >"$big/org.appbox.Big.desktop" <<'EOF'
[Desktop Entry]
Type=Application
Name=Big
Comment=List fifty megabytes of random data
Exec=big
Icon=org.appbox.Big
Terminal=true
Categories=Utility;
EOF
cat >"$big/org.appbox.Big.metainfo.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<component type="console-application">
  <id>org.appbox.Big</id>
  <metadata_license>CC0-1.0</metadata_license>
  <project_license>CC0-1.0</project_license>
  <name>Big</name>
  <summary>List fifty megabytes of random data</summary>
  <description>
    <p>Big holds fifty files of one megabyte of random bytes, for the store benchmark.</p>
  </description>
  <developer_name>The appbox developers</developer_name>
  <launchable type="desktop-id">org.appbox.Big.desktop</launchable>
  <provides>
    <binary>big</binary>
  </provides>
  <categories>
    <category>Utility</category>
  </categories>
  <content_rating type="oars-1.1"/>
</component>
EOF
# Each build gets a new version, so each is a new commit even when no file changed.
write_big_manifest() { # VERSION
    cat >"$work/manifests/org.appbox.Big.toml" <<EOF
# Generated by tests/bench/store.sh: $BIG_FILES files of 1 MiB of random bytes.
id = "org.appbox.Big"
name = "Big"
summary = "List fifty megabytes of random data"
description = """
Big holds fifty files of one megabyte of random bytes. The store benchmark
changes one of them and measures what an update downloads."""
version = "$1"
license = "CC0-1.0"
command = "big"
runtime = "org.appbox.Platform"
sdk = "host"
permissions = []
icon = "org.appbox.Big/org.appbox.Big.svg"
desktop-file = "org.appbox.Big/org.appbox.Big.desktop"
metainfo = "org.appbox.Big/org.appbox.Big.metainfo.xml"

[[sources]]
type = "dir"
path = "org.appbox.Big/src"

[build]
commands = [
    ["mkdir", "-p", "/app/share/big"],
    ["cp", "-r", "data", "/app/share/big/"],
    ["mkdir", "-p", "/app/bin"],
    ["install", "-m", "0755", "big", "/app/bin/big"],
]
EOF
}
write_big_manifest 1.0.0
chmod -R a+rX "$work/manifests"

# --- the benchmark user ---------------------------------------------------------

if ((EUID == 0)); then
    for dir in "${user_dirs[@]}" manifests; do
        chown -R "$TEST_USER:" "$work/$dir"
    done
    as_user=(setpriv --reuid="$TEST_USER" --regid="$TEST_USER" --clear-groups)
    who="as the user $TEST_USER"
else
    as_user=()
    who="as $(id -un)"
fi
user_env=(env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 HOME="$work/home"
    XDG_RUNTIME_DIR="$work/run" XDG_CONFIG_HOME="$work/home/config"
    XDG_CACHE_HOME="$work/home/cache" XDG_DATA_HOME="$work/home/data"
    FLATPAK_USER_DIR="$work/flatpak-user/setup")
# Runs a command as the benchmark user, in the work dir, with the small environment.
as_bench_user() {
    (cd "$work" && exec "${as_user[@]}" "${user_env[@]}" "$@")
}
# Starts a command as the benchmark user in the background; its pid is in $!.
as_bench_user_bg() { # LOG COMMAND...
    local log=$1
    shift
    (cd "$work" && exec "${as_user[@]}" "${user_env[@]}" "$@") </dev/null >"$log" 2>&1 &
}

# --- nginx -----------------------------------------------------------------------

port=$(python3 -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
access_log="$work/nginx/access.log"
cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
worker_processes 1;
events { worker_connections 64; }
http {
  log_format bench '\$request_method \$uri \$status \$body_bytes_sent';
  access_log $access_log bench;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  types { application/octet-stream bin; }
  server { listen 127.0.0.1:$port; root $work/www; }
}
EOF
as_bench_user_bg "$work/out/nginx.log" /usr/sbin/nginx -e "$work/nginx/error.log" \
    -p "$work/nginx" -c "$work/nginx/nginx.conf"
nginx_pid=$!
for ((i = 0; i < 200; i++)); do
    if (: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        break
    fi
    kill -0 "$nginx_pid" 2>/dev/null || break
    sleep 0.02
done
(: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null ||
    die "nginx did not start: $(cat "$work/nginx/error.log" "$work/out/nginx.log" 2>/dev/null)"
url="http://127.0.0.1:$port"

# --- measuring --------------------------------------------------------------------

touch "$work/out/runs.tsv"
# Runs COMMAND... as the benchmark user, timed, and records its start and end
# and the access-log lines of the requests it made, as run RUN of PHASE for
# SIDE. Its output goes to out/SIDE.log.
measure() { # PHASE SIDE RUN COMMAND...
    local phase=$1 side=$2 run=$3 mark start end slice
    shift 3
    slice="$work/out/$phase-$side-$run.access"
    mark=$(wc -l <"$access_log")
    printf '\n$ %s\n' "$*" >>"$work/out/$side.log"
    start=$EPOCHREALTIME
    as_bench_user "$@" </dev/null >>"$work/out/$side.log" 2>&1 || return 1
    end=$EPOCHREALTIME
    sleep 0.2 # nginx logs a request once it has sent the answer; let it
    tail -n "+$((mark + 1))" "$access_log" >"$slice"
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$side" "$run" "$start" "$end" "$slice" \
        >>"$work/out/runs.tsv"
}
# Runs COMMAND... as the benchmark user, untimed, its output in out/SIDE.log.
quietly() { # SIDE COMMAND...
    local side=$1
    shift
    printf '\n$ %s\n' "$*" >>"$work/out/$side.log"
    as_bench_user "$@" </dev/null >>"$work/out/$side.log" 2>&1
}
appbox_failed() { # WHAT
    tail -n 20 "$work/out/appbox.log" >&2
    die "appbox: $1 failed (output above; the last lines of out/appbox.log)"
}

# --- publishing: appbox ---------------------------------------------------------

say "publishing the sample runtime and apps and the 50 MiB app $who..."
quietly appbox "$work/appbox" repo keygen "$work/home/publisher" || appbox_failed "repo keygen"
publish() { # ID
    quietly appbox "$work/appbox" build "manifests/$1.toml" --repo "$work/www/appbox" \
        --sign-key "$work/home/publisher.secret" --json
}
for id in org.appbox.Platform "${APPS[@]}" org.appbox.Big; do
    publish "$id" || appbox_failed "build $id"
done
quietly appbox "$work/appbox" remote-add bench "$url/appbox" \
    --sign-pubkey "$work/home/publisher.pub" || appbox_failed "remote-add"

# The store commands of each phase, each with its own data directory.
appbox_in() { # PHASE: sets $appbox_cmd to the appbox command of PHASE
    appbox_cmd=(env "XDG_DATA_HOME=$work/home/data-$1" "$work/appbox")
}

# --- publishing: flatpak, the same files ----------------------------------------
#
# Nothing is downloaded. The runtime is org.appbox.Platform's own files and each
# app holds exactly the files of its appbox commit, so both stores move the same
# bytes. (flatpak run would also want ldconfig in the runtime; this benchmark
# never runs an app.) The install runs under a private bus that stands in for
# the system bus too: flatpak asks the system bus about parental controls when
# an unprivileged user installs an app, and a missing system bus fails it.
flatpak_reason=""
flatpak_version=""
# Records why flatpak is not measured further, the first time it fails.
flatpak_failed() { # WHAT
    [[ -n $flatpak_reason ]] || flatpak_reason="$1 failed:
$(tail -n 5 "$work/out/flatpak.log" | sed 's/^/    /')"
}
arch=""
fbuild="$work/flatpak-build"
# Checks the files of an appbox commit out into a flatpak build directory.
checkout_for_flatpak() { # REF DIR
    quietly flatpak mkdir -p "$2" &&
        quietly flatpak ostree --repo="$work/www/appbox" checkout -U --subpath=/files "$1" "$2/files" &&
        quietly flatpak ostree --repo="$work/www/appbox" checkout -U --subpath=/export "$1" "$2/export" || return 1
    # flatpak keeps metainfo in the app's files, not in its exports.
    if [[ -d $2/export/share/metainfo ]]; then
        quietly flatpak mkdir -p "$2/files/share" &&
            quietly flatpak mv "$2/export/share/metainfo" "$2/files/share/metainfo"
    fi
}
write_flatpak_app_metadata() { # ID COMMAND DIR [CONTEXT-LINES]
    printf '[Application]\nname=%s\nruntime=org.appbox.Platform/%s/stable\nsdk=org.appbox.Platform/%s/stable\ncommand=%s\n%s' \
        "$1" "$arch" "$arch" "$2" "${4:-}" >"$3/metadata"
}
flatpak_export() { # DIR
    quietly flatpak flatpak build-export --disable-sandbox "$work/www/flatpak" "$1" stable
}
flatpak_update_repo() {
    quietly flatpak flatpak build-update-repo --generate-static-deltas "$work/www/flatpak"
}
setup_flatpak() {
    if ! command -v flatpak >/dev/null 2>&1; then
        flatpak_reason="flatpak is not installed"
        return 1
    fi
    if ! command -v dbus-daemon >/dev/null 2>&1; then
        flatpak_reason="dbus-daemon (package dbus) is missing"
        return 1
    fi
    flatpak_version=$(flatpak --version)
    arch=$(flatpak --default-arch)
    local id
    if ! { quietly flatpak mkdir "$fbuild/runtime" &&
        quietly flatpak ostree --repo="$work/www/appbox" checkout -U --subpath=/files \
            runtime/org.appbox.Platform/x86_64/stable "$fbuild/runtime/files"; }; then
        flatpak_failed "checking the runtime out of appbox's repository"
        return 1
    fi
    printf '[Runtime]\nname=org.appbox.Platform\nruntime=org.appbox.Platform/%s/stable\nsdk=org.appbox.Platform/%s/stable\n' \
        "$arch" "$arch" >"$fbuild/runtime/metadata"
    for id in "${APPS[@]}" org.appbox.Big; do
        if ! checkout_for_flatpak "app/$id/x86_64/stable" "$fbuild/$id"; then
            flatpak_failed "checking $id out of appbox's repository"
            return 1
        fi
    done
    write_flatpak_app_metadata org.appbox.Hello hello "$fbuild/org.appbox.Hello"
    write_flatpak_app_metadata org.appbox.Wc wc-tool "$fbuild/org.appbox.Wc"
    write_flatpak_app_metadata org.appbox.Fetch fetch "$fbuild/org.appbox.Fetch" \
        $'[Context]\nshared=network;\n'
    write_flatpak_app_metadata org.appbox.Big big "$fbuild/org.appbox.Big"
    if ! quietly flatpak flatpak build-export --runtime --files=files --disable-sandbox \
        "$work/www/flatpak" "$fbuild/runtime" stable; then
        flatpak_failed "flatpak build-export of the runtime"
        return 1
    fi
    for id in "${APPS[@]}" org.appbox.Big; do
        if ! flatpak_export "$fbuild/$id"; then
            flatpak_failed "flatpak build-export of $id"
            return 1
        fi
    done
    if ! flatpak_update_repo; then
        flatpak_failed "flatpak build-update-repo"
        return 1
    fi
    # The private bus, for the whole run.
    as_bench_user_bg "$work/out/bus.log" dbus-daemon --session --nofork --nopidfile \
        --address="unix:path=$work/run/bus"
    bus_pid=$!
    for ((i = 0; i < 200; i++)); do
        [[ -S $work/run/bus ]] && break
        kill -0 "$bus_pid" 2>/dev/null || break
        sleep 0.02
    done
    if [[ ! -S $work/run/bus ]]; then
        flatpak_reason="the private bus did not start: $(cat "$work/out/bus.log")"
        return 1
    fi
}
# The flatpak commands of each phase, each with its own FLATPAK_USER_DIR.
flatpak_in() { # PHASE: sets $flatpak_cmd to the flatpak command of PHASE
    flatpak_cmd=(env "FLATPAK_USER_DIR=$work/flatpak-user/$1"
        "DBUS_SESSION_BUS_ADDRESS=unix:path=$work/run/bus"
        "DBUS_SYSTEM_BUS_ADDRESS=unix:path=$work/run/bus" flatpak --user)
}
flatpak_remote_add() { # PHASE
    flatpak_in "$1"
    quietly flatpak "${flatpak_cmd[@]}" remote-add --no-gpg-verify appbox-bench "$url/flatpak"
}

say "publishing the same files with flatpak build-export..."
setup_flatpak || true
if [[ -n $flatpak_reason ]]; then
    say "flatpak is not measured: $flatpak_reason"
fi
have_flatpak() { [[ -z $flatpak_reason ]]; }

# --- install of a small app --------------------------------------------------------

say "measuring the install of org.appbox.Wc ($RUNS runs each)..."
appbox_in install
quietly appbox "${appbox_cmd[@]}" install bench org.appbox.Platform || appbox_failed "install of the runtime"
if have_flatpak && ! {
    flatpak_remote_add install &&
        quietly flatpak "${flatpak_cmd[@]}" install -y --noninteractive appbox-bench \
            "runtime/org.appbox.Platform/$arch/stable"
}; then
    flatpak_failed "flatpak install of the runtime"
fi
for ((run = 1; run <= RUNS; run++)); do
    measure install appbox "$run" "${appbox_cmd[@]}" install bench org.appbox.Wc ||
        appbox_failed "install of org.appbox.Wc"
    quietly appbox "${appbox_cmd[@]}" uninstall org.appbox.Wc || appbox_failed "uninstall of org.appbox.Wc"
    if have_flatpak && ! {
        measure install flatpak "$run" "${flatpak_cmd[@]}" install -y --noninteractive appbox-bench org.appbox.Wc &&
            quietly flatpak "${flatpak_cmd[@]}" uninstall -y --noninteractive org.appbox.Wc
    }; then
        flatpak_failed "flatpak install of org.appbox.Wc"
    fi
done

# --- update of a 50 MiB app with one file changed -----------------------------------

say "measuring updates of the 50 MiB app ($RUNS runs each, with and without a changed file)..."
appbox_in update
quietly appbox "${appbox_cmd[@]}" install bench org.appbox.Big || appbox_failed "install of org.appbox.Big"
if have_flatpak && ! {
    flatpak_remote_add update &&
        quietly flatpak "${flatpak_cmd[@]}" install -y --noninteractive appbox-bench org.appbox.Big
}; then
    flatpak_failed "flatpak install of org.appbox.Big"
fi
version=0
# Publishes a new version of Big on both sides, with a new CHANGED_FILE when
# asked, and measures the update of each side as PHASE.
update_run() { # PHASE RUN change|same
    local phase=$1 run=$2 change=$3 new="$work/out/new-data"
    version=$((version + 1))
    if [[ $change == change ]]; then
        head -c 1M /dev/urandom >"$new"
        cp "$new" "$big/src/data/$CHANGED_FILE"
    fi
    write_big_manifest "1.0.$version"
    publish org.appbox.Big || appbox_failed "build of org.appbox.Big"
    measure "$phase" appbox "$run" "${appbox_cmd[@]}" update --yes || appbox_failed "update"
    if have_flatpak; then
        if [[ $change == change ]]; then
            rm -f "$fbuild/org.appbox.Big/files/share/big/data/$CHANGED_FILE"
            cp "$new" "$fbuild/org.appbox.Big/files/share/big/data/$CHANGED_FILE"
        fi
        if ! { flatpak_export "$fbuild/org.appbox.Big" && flatpak_update_repo &&
            measure "$phase" flatpak "$run" "${flatpak_cmd[@]}" update -y --noninteractive; }; then
            flatpak_failed "flatpak update of org.appbox.Big"
        fi
    fi
}
for ((run = 1; run <= RUNS; run++)); do
    update_run update "$run" change
done
for ((run = 1; run <= RUNS; run++)); do
    update_run update-same "$run" same
done
# Whether appbox build wrote a static delta for each new version of Big.
grep -c '"static-delta": true' "$work/out/appbox.log" >"$work/out/static-deltas" || true

# --- disk use of three apps on one runtime -----------------------------------------

say "measuring the disk use of ${APPS[*]} on one runtime..."
: >"$work/out/disk.tsv"
# Records, for SIDE, du -sk of the whole store, of the runtime, and of each app
# alone (links counted as often as they occur).
record_disk() { # SIDE STORE-DIR RUNTIME-DEPLOYMENT APP-DEPLOYMENT...
    local side=$1 store=$2 runtime=$3 apps=0 dir
    shift 3
    for dir in "$@"; do
        apps=$((apps + $(du -sk --count-links "$dir" | cut -f1)))
    done
    printf '%s\t%s\t%s\t%s\t%s\n' "$side" "$(du -sk "$store" | cut -f1)" \
        "$(du -sk --count-links "$runtime" | cut -f1)" "$apps" "$#" >>"$work/out/disk.tsv"
}
appbox_in disk
for id in "${APPS[@]}"; do
    quietly appbox "${appbox_cmd[@]}" install bench "$id" || appbox_failed "install of $id"
done
store="$work/home/data-disk/appbox"
app_dirs=()
for id in "${APPS[@]}"; do
    app_dirs+=("$(readlink -f "$store/app/$id/current")")
done
record_disk appbox "$store" "$(readlink -f "$store/runtime/org.appbox.Platform/current")" "${app_dirs[@]}"
if have_flatpak; then
    flatpak_remote_add disk || flatpak_failed "flatpak remote-add"
    for id in "${APPS[@]}"; do
        have_flatpak || break
        quietly flatpak "${flatpak_cmd[@]}" install -y --noninteractive appbox-bench "$id" ||
            flatpak_failed "flatpak install of $id"
    done
fi
if have_flatpak; then
    store="$work/flatpak-user/disk"
    app_dirs=()
    for id in "${APPS[@]}"; do
        app_dirs+=("$(readlink -f "$store/app/$id/$arch/stable/active")")
    done
    record_disk flatpak "$store" "$(readlink -f "$store/runtime/org.appbox.Platform/$arch/stable/active")" \
        "${app_dirs[@]}"
fi

stop "$nginx_pid"
nginx_pid=""

# --- report ----------------------------------------------------------------------

python3 - "$work/out" "$RUNS" "$MIB" "$who" "$flatpak_version" "$flatpak_reason" <<'EOF'
import os
import statistics
import sys
from collections import defaultdict

out, runs, mib, who, flatpak_version, flatpak_reason = sys.argv[1:7]
runs, mib = int(runs), int(mib)

# (phase, side) -> list of runs: {ms, bytes, requests, kinds}
results = defaultdict(list)
for line in open(f"{out}/runs.tsv"):
    phase, side, run, start, end, slice_file = line.rstrip("\n").split("\t")
    kinds = defaultdict(int)
    requests = []
    for request in open(slice_file):
        method, uri, status, sent = request.split()
        requests.append((uri, status))
        if "/deltas/" in uri or "/delta-indexes/" in uri:
            kind = "static delta"
        elif "/summary" in uri or "/summaries/" in uri:
            kind = "summary"
        elif "/objects/" in uri:
            kind = "objects"
        else:
            kind = "other"
        kinds[kind] += int(sent)
    results[phase, side].append({
        "ms": (float(end) - float(start)) * 1000,
        "bytes": sum(kinds.values()),
        "requests": requests,
        "kinds": kinds,
    })

def median(phase, side, key):
    values = [r[key] for r in results.get((phase, side), [])]
    return statistics.median(values) if values else None

def typical(phase, side):
    """The run whose byte count is the median one (for the breakdown)."""
    rs = sorted(results.get((phase, side), []), key=lambda r: r["bytes"])
    return rs[(len(rs) - 1) // 2] if rs else None

def size(n):
    if n is None:
        return "-"
    if n >= mib:
        return f"{n / mib:.3f} MiB"
    return f"{n / 1024:.1f} KiB"

def breakdown(run):
    parts = [f"{kind} {size(n)}" for kind, n in sorted(run["kinds"].items()) if n]
    deltas = sum(1 for uri, _ in run["requests"] if "/deltas/" in uri)
    return ", ".join(parts) + f"; {len(run['requests'])} requests, {deltas} for static deltas"

SIDES = ("appbox", "flatpak")
COMMANDS = {
    ("install", "appbox"): "appbox install",
    ("install", "flatpak"): "flatpak --user install",
    ("update", "appbox"): "appbox update --yes",
    ("update", "flatpak"): "flatpak --user update",
    ("update-same", "appbox"): "appbox update --yes",
    ("update-same", "flatpak"): "flatpak --user update",
}
TITLES = {
    "install": "Install of a small app (org.appbox.Wc), its runtime already installed:",
    "update": "Update of the 50 MiB app (org.appbox.Big) after one 1 MiB file changed:",
    "update-same": "Update of the 50 MiB app to a new version with no file changed (the fixed metadata cost):",
}

print()
print(f"Store benchmark, {who}, median of {runs} runs, measured in one run;")
print(f"appbox against {flatpak_version or 'flatpak'}, both served by one nginx on loopback.")
if flatpak_reason:
    print(f"  flatpak: not measured (or not fully), because {flatpak_reason}")
for phase in ("install", "update", "update-same"):
    print()
    print(TITLES[phase])
    for side in SIDES:
        if (phase, side) not in results:
            print(f"  {COMMANDS[phase, side]:<24} not measured")
            continue
        ms = median(phase, side, "ms")
        b = median(phase, side, "bytes")
        print(f"  {COMMANDS[phase, side]:<24} {ms:8.1f} ms  {size(b):>12} downloaded")
        print(f"  {'':<24} {breakdown(typical(phase, side))}")

disk = {}
for line in open(f"{out}/disk.tsv"):
    side, total, runtime, apps, count = line.rstrip("\n").split("\t")
    disk[side] = {"total": int(total), "runtime": int(runtime), "apps": int(apps), "count": int(count)}
print()
print("Disk use of Hello, Wc and Fetch installed on one runtime (du -sk, KiB; hardlinks counted once")
print("in the total, as often as they occur in the runtime and each app):")
print(f"  {'store':<8} {'total':>7} {'runtime':>8} {'3 apps':>7} {'store overhead':>15} {'each app with its own runtime':>30}")
for side, d in disk.items():
    d["separate"] = d["apps"] + d["count"] * d["runtime"]
    d["overhead"] = d["total"] - d["runtime"] - d["apps"]
    print(f"  {side:<8} {d['total']:>7} {d['runtime']:>8} {d['apps']:>7} {d['overhead']:>15} {d['separate']:>30}")
print("  (store overhead: the total beyond one runtime and the apps: repository metadata,")
print("  refs, exported launchers; mostly small files of one 4 KiB block each)")

rows = []
def ratio_row(label, a, f, target=None):
    if a is None or f is None:
        rows.append((label, "-", "not measured"))
        return
    value = a / f
    rows.append((label, f"{value:6.2f}×", target(value) if target else "(no target)"))

ratio_row("install time appbox/flatpak", median("install", "appbox", "ms"), median("install", "flatpak", "ms"))
ratio_row("install bytes appbox/flatpak", median("install", "appbox", "bytes"), median("install", "flatpak", "bytes"))
ratio_row("update time appbox/flatpak", median("update", "appbox", "ms"), median("update", "flatpak", "ms"))
ratio_row("update bytes appbox/flatpak", median("update", "appbox", "bytes"), median("update", "flatpak", "bytes"))
if "appbox" in disk:
    # A second copy of the runtime would make the total at least 2 runtimes + the apps.
    d = disk["appbox"]
    ratio_row("disk appbox / own runtimes", d["total"], d["separate"],
              lambda v: f"runtime stored once (total < 2 × runtime + apps = {2 * d['runtime'] + d['apps']} KiB)  "
              + ("met" if d["total"] < 2 * d["runtime"] + d["apps"] else "NOT met"))
if "flatpak" in disk:
    ratio_row("disk flatpak / own runtimes", disk["flatpak"]["total"], disk["flatpak"]["separate"])
if "appbox" in disk and "flatpak" in disk:
    ratio_row("disk appbox/flatpak", disk["appbox"]["total"], disk["flatpak"]["total"])

print()
print(f"  {'ratio':<30} {'value':>8}   target")
for label, value, verdict in rows:
    print(f"  {label:<30} {value:>8}   {verdict}")

print()
update = median("update", "appbox", "bytes")
fixed = median("update-same", "appbox", "bytes")
if update is not None and fixed is not None:
    limit = 1.1 * mib + fixed
    verdict = "met" if update <= limit else "NOT met"
    print(f"Update with one 1 MiB file changed, appbox: {update:,.0f} bytes downloaded,")
    print(f"  metadata cost (beyond the 1 MiB change): {update - mib:,.0f} bytes;")
    print(f"  fixed metadata cost (an update that changes no file): {fixed:,.0f} bytes.")
    print(f"  target: ≤ 1.1 × 1 MiB + fixed metadata cost = {limit:,.0f} bytes  {verdict}")
    fp_update = median("update", "flatpak", "bytes")
    fp_fixed = median("update-same", "flatpak", "bytes")
    if fp_update is not None and fp_fixed is not None:
        print(f"  flatpak: {fp_update:,.0f} bytes, metadata cost {fp_update - mib:,.0f} bytes, "
              f"fixed metadata cost {fp_fixed:,.0f} bytes.")
used = [r for r in results.get(("update", "appbox"), [])
        if any("/deltas/" in uri and status == "200" for uri, status in r["requests"])]
total = len(results.get(("update", "appbox"), []))
built = open(f"{out}/static-deltas").read().strip() or "0"
print(f"  appbox build wrote a static delta for {built} of the {2 * runs} new versions;")
print(f"  appbox update fetched one in {len(used)} of {total} updates with a changed file.")
# libostree may ask for an object that a static delta part carries while the
# part is still being applied; then the changed file comes down twice.
for side in SIDES:
    twice = [r for r in results.get(("update", side), [])
             if any("/deltas/" in uri for uri, _ in r["requests"]) and r["kinds"]["objects"] >= 0.9 * mib]
    if twice:
        print(f"  {side} downloaded the changed file twice, in the static delta and as a loose object,")
        print(f"  in {len(twice)} of {len(results[('update', side)])} updates.")

# For tests/bench/report.sh: measure, appbox, reference, reference value, unit, target.
summary = os.environ.get("APPBOX_BENCH_SUMMARY")
if summary:
    with open(summary, "a") as out_file:
        for measure, phase, key, unit in [
            ("install a small app", "install", "ms", "ms"),
            ("install a small app, bytes", "install", "bytes", "bytes"),
            ("update, one 1 MiB file changed", "update", "ms", "ms"),
            ("update, one 1 MiB file changed, bytes", "update", "bytes", "bytes"),
        ]:
            a, f = median(phase, "appbox", key), median(phase, "flatpak", key)
            if a is not None and f is not None:
                out_file.write(f"{measure}\t{a:.3f}\tflatpak\t{f:.3f}\t{unit}\t-\n")
EOF

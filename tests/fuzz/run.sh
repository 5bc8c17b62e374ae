#!/usr/bin/env bash
# Builds the fuzz targets and runs each for SECONDS (default 600), one after
# the other, each with one job. New crashes are kept under artifacts/TARGET/,
# new corpus entries under a scratch corpus (the seeds in corpus/ are only
# read). Prints runs, coverage, features, corpus size and crashes per target.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`). Not part of CI
# or tests/run-tests.sh. Environment: CARGO_TARGET_DIR (default
# target/fuzz of the repository), FUZZ_WORK (where the growing corpora and
# logs go; default target/fuzz/work), FUZZ_NO_BUILD=1 (run what was built
# last), FUZZ_ARGS (more libFuzzer options). Known leaks of the C libraries
# below appbox are suppressed (lsan.supp).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
seconds=${1:-600}
shift || true
case $seconds in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/fuzz}
work=${FUZZ_WORK:-$CARGO_TARGET_DIR/work}
mkdir -p "$work"

if [ $# -eq 0 ]; then
    mapfile -t targets < <(cd "$root" && cargo +nightly fuzz list --fuzz-dir tests/fuzz)
else
    targets=("$@")
fi

# One build of every target: building them one by one would rebuild the
# launcher between two of them whenever its sources change meanwhile.
# FUZZ_NO_BUILD=1 runs what was built last.
if [ -z "${FUZZ_NO_BUILD:-}" ]; then
    echo "building the fuzz targets" >&2
    (cd "$root" && cargo +nightly fuzz build --fuzz-dir tests/fuzz -O) || exit 1
fi

# The runs use a copy of the binaries, so a build meanwhile changes nothing.
# cargo fuzz builds for the host, under a directory named after its triple.
host=$(rustc +nightly -vV 2>/dev/null | sed -n 's/^host: //p')
[ -n "$host" ] || host=$(rustc -vV | sed -n 's/^host: //p')
[ -n "$host" ] || { echo "run.sh: cannot tell the host's target triple from 'rustc -vV'" >&2; exit 1; }
built=$CARGO_TARGET_DIR/$host/release
bin_dir=$work/bin.$$
# Known leaks of the C libraries below appbox (see lsan.supp).
export LSAN_OPTIONS="suppressions=$here/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
mkdir -p "$bin_dir"
trap 'rm -rf "$bin_dir"' EXIT
for target in "${targets[@]}"; do
    cp "$built/$target" "$bin_dir/" || exit 1
done

summary=()
failed=0
# Targets whose run went wrong without a crash: they did not fuzz.
broken=()
for target in "${targets[@]}"; do
    corpus=$work/corpus/$target
    artifacts=$here/artifacts/$target
    log=$work/$target.log
    mkdir -p "$corpus" "$artifacts"
    seeds=()
    [ -d "$here/corpus/$target" ] && seeds=("$here/corpus/$target")
    echo "fuzzing $target for ${seconds}s (log: $log)" >&2
    before=$(find "$artifacts" -type f | wc -l)
    # -fork=1: one worker process at a time, and the run goes on after a
    # crash, so one run can find several. (-jobs would send the output to
    # fuzz-N.log in the current directory.)
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of words.
    "$bin_dir/$target" "$corpus" "${seeds[@]}" \
        -max_total_time="$seconds" -fork=1 -ignore_crashes=1 \
        -ignore_timeouts=1 -ignore_ooms=1 -timeout=20 -rss_limit_mb=4096 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 ${FUZZ_ARGS:-} \
        >"$log" 2>&1
    status=$?
    after=$(find "$artifacts" -type f | wc -l)
    crashes=$((after - before))
    [ "$crashes" -gt 0 ] && failed=1
    # The last status line of the fork server (or of a plain run).
    line=$(grep -E '#[0-9]+: cov: |#[0-9]+\s+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1)
    runs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$line")
    cov=$(grep -oE 'cov: [0-9]+' <<<"$line" | awk '{print $2}')
    ft=$(grep -oE 'ft: [0-9]+' <<<"$line" | awk '{print $2}')
    size=$(find "$corpus" -type f | wc -l)
    # libFuzzer exits non-zero when it finds a crash, and that is counted
    # above; a non-zero exit without one, or a log without a single status
    # line, means the target did not fuzz (bad option, failed start, ...).
    problem=""
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        problem="exited with status $status without a crash"
    elif [ -z "$runs" ] && [ "$crashes" -eq 0 ]; then
        problem="printed no status line"
    fi
    if [ -n "$problem" ]; then
        failed=1
        broken+=("$target: $problem (log: $log)")
        echo "$target $problem; the end of its log:" >&2
        tail -n 5 "$log" | sed 's/^/    /' >&2
    fi
    summary+=("$(printf '%-18s runs %-10s cov %-6s ft %-7s corpus %-6s crashes %s (exit %s)%s' \
        "$target" "${runs:-?}" "${cov:-?}" "${ft:-?}" "$size" "$crashes" "$status" \
        "${problem:+ FAILED: $problem}")")
done

echo
echo "summary (${seconds}s each; crashes kept in tests/fuzz/artifacts/TARGET/):"
printf '  %s\n' "${summary[@]}"
if [ ${#broken[@]} -gt 0 ]; then
    echo "targets that did not fuzz:"
    printf '  %s\n' "${broken[@]}"
fi
exit "$failed"

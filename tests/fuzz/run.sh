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
built=$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release
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
for target in "${targets[@]}"; do
    corpus=$work/corpus/$target
    artifacts=$here/artifacts/$target
    log=$work/$target.log
    mkdir -p "$corpus" "$artifacts"
    seeds=$here/corpus/$target
    [ -d "$seeds" ] || seeds=
    echo "fuzzing $target for ${seconds}s (log: $log)" >&2
    before=$(find "$artifacts" -type f | wc -l)
    # -fork=1: one worker process at a time, and the run goes on after a
    # crash, so one run can find several. (-jobs would send the output to
    # fuzz-N.log in the current directory.)
    # shellcheck disable=SC2086
    "$bin_dir/$target" "$corpus" $seeds \
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
    summary+=("$(printf '%-18s runs %-10s cov %-6s ft %-7s corpus %-6s crashes %s (exit %s)' \
        "$target" "${runs:-?}" "${cov:-?}" "${ft:-?}" "$size" "$crashes" "$status")")
done

echo
echo "summary (${seconds}s each; crashes kept in tests/fuzz/artifacts/TARGET/):"
printf '  %s\n' "${summary[@]}"
exit "$failed"

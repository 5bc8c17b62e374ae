#!/usr/bin/env bash
# The benchmark report: runs every benchmark in one go and prints one table
# of appbox against bwrap, flatpak and the host on this machine, as ratios of
# numbers measured in the same run, in Markdown (tests/BENCHMARKS.md keeps the
# last one).
#
#   tests/bench/launch.sh    launch without and with a session bus; the
#                            launcher's memory while the app runs
#   tests/bench/store.sh     install, and update with one file changed (time
#                            and bytes), against flatpak
#   tests/bench/portal.sh    read throughput of a granted file
#   tests/bench/runtime.sh   a syscall-heavy loop inside against outside; the
#                            portal's idle memory
#
# Each script's own detailed output goes to a log whose path is printed.
# Usage: tests/bench/report.sh [> tests/BENCHMARKS.md]
set -euo pipefail
export LC_ALL=C

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

work=$(mktemp -d /tmp/appbox-bench-report.XXXXXX)
summary=$work/summary.tsv
: >"$summary"
chmod 0666 "$summary"
logs=$work/logs
mkdir "$logs"

# The CPU time that the hypervisor gave to other machines during the run
# (steal, from /proc/stat): on a shared host it is the noise to watch.
cpu_ticks() { awk '/^cpu / { total = 0; for (i = 2; i <= NF; i++) total += $i; print $9, total }' /proc/stat; }
read -r steal_before total_before < <(cpu_ticks)

for bench in launch store portal runtime; do
    printf 'report: running tests/bench/%s.sh (log: %s/%s.log)\n' "$bench" "$logs" "$bench" >&2
    if ! APPBOX_BENCH_SUMMARY=$summary "tests/bench/$bench.sh" >"$logs/$bench.log" 2>&1; then
        printf 'report: tests/bench/%s.sh failed; its log:\n' "$bench" >&2
        tail -n 20 "$logs/$bench.log" >&2
        exit 1
    fi
done

read -r steal_after total_after < <(cpu_ticks)
stolen=$(awk -v s=$((steal_after - steal_before)) -v t=$((total_after - total_before)) \
    'BEGIN { printf "%.1f%%", t ? 100 * s / t : 0 }')
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
memory=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
python3 - "$summary" "$(date -u +%Y-%m-%d)" "$(uname -r)" "$cpu" "$(nproc)" "$memory" \
    "$(flatpak --version 2>/dev/null || echo 'flatpak: not installed')" \
    "$(bwrap --version 2>/dev/null || echo 'bwrap: not installed')" "$stolen" <<'EOF'
import sys

summary, date, kernel, cpu, cores, memory, flatpak, bwrap, stolen = sys.argv[1:10]
print("# Benchmarks")
print()
print(f"Measured on {date} by `tests/bench/report.sh`: Linux {kernel}, {cores} cores of {cpu},")
print(f"{memory} of memory, {flatpak}, {bwrap}. Each ratio divides two numbers from the same run.")
print(f"The hypervisor gave {stolen} of the CPU time to other machines during the run (steal).")
print("Lower is better for times, sizes and memory; higher is better for throughput.")
print()
print("| measure | appbox | reference | ratio | target |")
print("|---|---|---|---|---|")
for line in open(summary):
    measure, appbox, reference, value, unit, target = line.rstrip("\n").split("\t")
    appbox, value = float(appbox), float(value)
    ratio = appbox / value if value else float("nan")
    if target == "-":
        verdict = ""
    elif target.startswith("≥"):
        verdict = f"≥ {target[1:]}× " + ("met" if ratio >= float(target[1:]) else "**not met**")
    else:
        verdict = f"≤ {target}× " + ("met" if ratio <= float(target) else "**not met**")
    def shown(x):
        if unit == "bytes":
            return f"{x / 1024:,.0f} KiB"
        return f"{x:,.2f} {unit}"
    print(f"| {measure} | {shown(appbox)} | {reference}: {shown(value)} | {ratio:.2f}× | {verdict} |")
EOF
printf 'report: the logs stay in %s\n' "$logs" >&2

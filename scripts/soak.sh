#!/usr/bin/env bash
# make soak [RUNS=10]: runs `make test` RUNS times in a row and keeps every run's results, to show
# that the suite passes every time (a test that fails one run in ten is a failing test).
# Prints one line per run and closes with "K of N runs green".
set -uo pipefail
. "$(dirname "$0")/lib.sh"
runs=${RUNS:-10}
dir=$VD_OUT/soak; rm -rf "$dir"; mkdir -p "$dir"
green=0
for i in $(seq 1 "$runs"); do
    s=$(date +%s)
    bash "$VD_ROOT/scripts/test.sh" all > "$dir/run-$i.log" 2>&1
    rc=$?
    cp "$VD_OUT/results.txt" "$dir/results-$i.txt"
    # A failed run keeps its consoles: the next run overwrites build/vm-*.log.
    if [ $rc != 0 ]; then for f in "$VD_OUT"/vm-*.log; do [ -f "$f" ] && cp "$f" "$dir/$(basename "$f" .log)-$i.log"; done; fi
    line=$(tail -1 "$dir/run-$i.log")
    [ $rc = 0 ] && green=$((green + 1))
    printf 'run %2d: %s (%ss)\n' "$i" "$line" "$(( $(date +%s) - s ))" | tee -a "$dir/summary.txt"
    grep '^FAIL' "$dir/results-$i.txt" | sed 's/^/        /' | tee -a "$dir/summary.txt"
done
echo "$green of $runs runs green" | tee -a "$dir/summary.txt"
[ "$green" = "$runs" ]

#!/usr/bin/env bash
# Fuzz the vd ring for a bounded time: fuzz.sh [SECONDS] [TARGET]   (default 30 s, ring_consumer)
#
# The targets live in userspace-tools/fuzz (a cargo-fuzz crate outside the main workspace).
# cargo-fuzz is installed into $VD_CACHE if missing; the stable toolchain runs it with
# RUSTC_BOOTSTRAP=1 (cargo-fuzz passes -Z flags). AddressSanitizer by default; VD_FUZZ_SANITIZER=none
# skips it (and it is skipped, with a note, if an ASan build is impossible here).
# The build and the corpus are kept in $VD_CACHE/fuzz, so runs build on each other; a crash input is
# written to userspace-tools/fuzz/artifacts/TARGET/.
#
# Prints one line on stdout, "fuzz TARGET: PASS (N execs, Ss, SAN)" or "fuzz TARGET: FAIL ...",
# and exits non-zero when the fuzzer found a crash (or could not run). Full log: build/fuzz-TARGET.log.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
secs=${1:-30}
target=${2:-ring_consumer}
[[ $secs =~ ^[0-9]+$ ]] && [ "$secs" -gt 0 ] || die "usage: fuzz.sh [SECONDS] [TARGET]"

CARGO_FUZZ_VERSION=0.13.2
CARGO_FUZZ_ROOT=$VD_CACHE/cargo-fuzz
export PATH=$CARGO_FUZZ_ROOT/bin:$PATH
if ! cargo fuzz --version >/dev/null 2>&1; then
    command -v cargo >/dev/null || die "fuzz: cargo not found (needed to install cargo-fuzz)"
    log "fuzz: cargo install --locked cargo-fuzz@$CARGO_FUZZ_VERSION into $CARGO_FUZZ_ROOT"
    cargo install --locked --quiet --root "$CARGO_FUZZ_ROOT" "cargo-fuzz@$CARGO_FUZZ_VERSION" \
        || die "fuzz: cargo install cargo-fuzz failed"
fi

cd "$VD_ROOT/userspace-tools"
out=${VD_OUT:-$VD_ROOT/build}; mkdir -p "$out"
flog=$out/fuzz-$target.log
corpus=$VD_CACHE/fuzz/corpus/$target; mkdir -p "$corpus"
san=${VD_FUZZ_SANITIZER:-address}
# cargo-fuzz needs -Z flags (sanitizer, sancov); the stable compiler accepts them with this.
export RUSTC_BOOTSTRAP=1
FUZZ=(--fuzz-dir fuzz --target-dir "$VD_CACHE/fuzz/target")

(cd fuzz && cargo fetch --locked --quiet) || die "fuzz: userspace-tools/fuzz/Cargo.lock is out of date or crates unavailable"
log "fuzz: building $target (cargo-fuzz $(cargo fuzz --version | awk '{print $2}'), sanitizer $san)"
if ! cargo fuzz build "${FUZZ[@]}" --sanitizer "$san" "$target" > "$flog" 2>&1; then
    if [ "$san" = address ] && grep -qiE 'sanitizer|asan' "$flog"; then
        log "fuzz: AddressSanitizer build failed here (see $flog); building without a sanitizer"
        san=none
        cargo fuzz build "${FUZZ[@]}" --sanitizer none "$target" > "$flog" 2>&1 \
            || { tail -20 "$flog" >&2; echo "fuzz $target: FAIL (build failed, see $flog)"; exit 1; }
    else
        tail -20 "$flog" >&2; echo "fuzz $target: FAIL (build failed, see $flog)"; exit 1
    fi
fi

log "fuzz: running $target for ${secs}s (corpus $corpus)"
set +e
cargo fuzz run "${FUZZ[@]}" --sanitizer "$san" "$target" "$corpus" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 >> "$flog" 2>&1
rc=$?
set -e
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$flog" | tail -1)
[ -n "$execs" ] || execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$flog" | tail -1)
artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$flog" | tail -1)
if [ $rc = 0 ] && [ -z "$artifact" ]; then
    echo "fuzz $target: PASS (${execs:-?} execs, ${secs}s, sanitizer $san)"
    exit 0
fi
grep -E '^(thread .* panicked|==[0-9]+==ERROR|SUMMARY:)' "$flog" | head -5 >&2 || true
[ -n "$artifact" ] && artifact=$(realpath -m "$artifact")
echo "fuzz $target: FAIL (rc=$rc after ${execs:-?} execs; artifact: ${artifact:-none, see $flog}; reproduce in userspace-tools: RUSTC_BOOTSTRAP=1 cargo fuzz run ${FUZZ[*]} --sanitizer $san $target ${artifact:-ARTIFACT})"
exit 1

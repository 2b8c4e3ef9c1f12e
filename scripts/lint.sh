#!/usr/bin/env bash
# Format and lint checks as the kernel and Rust communities run them. Prints one result line per
# check ("PASS lint NAME" / "FAIL lint NAME: ...") and exits non-zero if any failed.
#   kernel-rustfmt: the kernel's `rustfmtcheck` (rustfmt with the tree's .rustfmt.toml) over every
#                   module crate (rustfmt follows `mod` and `#[path]`, so every file is covered)
#   cargo-fmt:      `cargo fmt --check` of the userspace workspace and the fuzz crate
#   cargo-clippy:   `cargo clippy --workspace --all-targets -D warnings`
# `bash scripts/lint.sh fix` reformats instead of checking.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
mode=${1:-check}
tree=$(cat "$VD_OUT/kernel-tree" 2>/dev/null || true)
cfg=${tree:+$tree/.rustfmt.toml}
[ -n "$cfg" ] && [ -f "$cfg" ] || cfg=$VD_ROOT/.rustfmt.toml
roots=("$VD_ROOT"/drivers/*/vd_*.rs "$VD_ROOT"/tests-kunit/*.rs)
fail=0
res() { echo "$1 lint $2"; [ "$1" = PASS ] || fail=1; }
if [ "$mode" = fix ]; then
    rustfmt --edition 2021 --config-path "$cfg" "${roots[@]}"
    (cd "$VD_ROOT/userspace-tools" && cargo fmt --all && cd fuzz && cargo fmt --all)
    exit 0
fi
out=$(rustfmt --edition 2021 --config-path "$cfg" --check "${roots[@]}" 2>&1)
if [ $? = 0 ]; then res PASS "kernel-rustfmt (kernel .rustfmt.toml, ${#roots[@]} crates)"
else res FAIL "kernel-rustfmt: $(echo "$out" | grep -c '^Diff in') hunks differ (bash scripts/lint.sh fix)"; fi
out=$(cd "$VD_ROOT/userspace-tools" && cargo fmt --all --check 2>&1 && cd fuzz && cargo fmt --all --check 2>&1)
if [ $? = 0 ]; then res PASS "cargo-fmt"
else res FAIL "cargo-fmt: $(echo "$out" | grep -c '^Diff in') hunks differ (bash scripts/lint.sh fix)"; fi
out=$(cd "$VD_ROOT/userspace-tools" && cargo clippy --locked --workspace --all-targets --quiet -- -D warnings 2>&1)
if [ $? = 0 ]; then res PASS "cargo-clippy (-D warnings)"
else res FAIL "cargo-clippy: $(echo "$out" | grep -m1 -E '^error' )"; echo "$out" | grep -A6 -m5 '^error' >&2; fi
exit $fail

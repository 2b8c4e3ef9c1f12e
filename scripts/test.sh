#!/usr/bin/env bash
# make test: test.sh all|host|vm
#   host: cargo tests of the userspace workspace
#   vm:   boots the test VM: KUnit suites of every module (parsed with the kernel's kunit.py),
#         integration scripts (scripts/vmtests), kernel-log check for oops/WARN/BUG
# Prints one line per test and closes with "N passed, N failed". Exit 1 on any failure.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
what=${1:-all}
# Which VM scripts a run reports: make test runs 0x-6x; make test-reconfig runs 7x.
VM_TESTS='[0-6]*.sh'; VM_MODE=test
[ "$what" = reconfig ] && { VM_TESTS='7*.sh'; VM_MODE=reconfig; }
OUT=$VD_OUT; mkdir -p "$OUT"
RES=$OUT/results.txt; : > "$RES"
result() { printf '%-5s %-6s %s\n' "$1" "$2" "$3" | tee -a "$RES"; }

host_tests() {
    local log=$OUT/cargo-test.log
    (cd "$VD_ROOT/userspace-tools" && cargo test --locked --workspace --no-fail-fast 2>&1) > "$log"
    local rc=$?
    grep -E '^test .* \.\.\. (ok|FAILED|ignored)' "$log" | sed -E 's/^test (.*) \.\.\. (ok|FAILED|ignored.*)$/\2 \1/' | \
        while read -r st name; do
            case $st in ok) result PASS cargo "$name" ;; FAILED) result FAIL cargo "$name" ;; *) result SKIP cargo "$name" ;; esac
        done
    if [ $rc != 0 ] && ! grep -q '^FAIL' "$RES"; then
        result FAIL cargo "cargo test (build or harness error, see $log)"; tail -30 "$log"
    fi
}

fuzz_tests() { # bounded libFuzzer run of the ring consumer (scripts/fuzz.sh)
    local line n
    if line=$(bash "$VD_ROOT/scripts/fuzz.sh" 30); then
        n=${line#*PASS (}; result PASS fuzz "ring_consumer (${n%% execs*} execs, 30s)"
    else
        result FAIL fuzz "ring_consumer: ${line#*FAIL }"
    fi
}

kunit_parse() { # KTAP block file -> result lines, via the kernel tree's kunit.py
    local f=$1 tree; tree=$(cat "$OUT/kernel-tree")
    python3 "$tree/tools/testing/kunit/kunit.py" parse "$f" --json="$f.json" > "$f.parsed" 2>&1
    python3 - "$f.json" "$(basename "$f" .ktap)" <<'PY' || echo "FAIL kunit $(basename "$f" .ktap): unparsable KTAP"
import json, sys
d = json.load(open(sys.argv[1]))
n = 0
def walk(g, pre):
    global n
    for c in g.get("test_cases", []):
        n += 1
        st = {"PASS": "PASS", "SKIP": "SKIP"}.get(c["status"], "FAIL")
        print(f"{st} kunit {pre}{g['name']}.{c['name']}")
    for s in g.get("sub_groups", []):
        walk(s, "")
for s in d.get("sub_groups", []):
    walk(s, "")
if n == 0:
    print(f"FAIL kunit {sys.argv[2]}: no test cases found")
PY
}

vm_tests() {
    local log=$OUT/vm-test.log
    VD_QUIET=1 bash "$VD_ROOT/scripts/vm.sh" $VM_MODE "$log"
    local vmrc=$?
    if ! grep -q "VD-BOOT-OK" "$log"; then result FAIL vm "boot (no VD-BOOT-OK; see $log)"; return; fi
    # Integration scripts.
    for t in "$VD_ROOT"/scripts/vmtests/$VM_TESTS; do
        local name; name=$(basename "$t" .sh); name=${name#*-}
        if [ -n "${TESTS:-}" ] && ! echo " $TESTS " | grep -q " $name "; then continue; fi
        local line; line=$(grep "^VDTEST $name " "$log" | tail -1)
        case "$line" in
            *" PASS "*) result PASS vm "$name (${line##* })" ;;
            "") result FAIL vm "$name (never reported: VM died or timed out)" ;;
            *) result FAIL vm "$name: ${line#VDTEST $name }"
               sed -n "/^VDTEST-START $name\$/,/^VDTEST $name /p" "$log" | grep -E '^  \| (FAIL|.*rror)' | head -5 ;;
        esac
    done
    # KUnit blocks, one per module.
    awk -v d="$OUT/ktap" 'BEGIN{system("rm -rf " d "; mkdir -p " d)}
        /^==== KTAP .* BEGIN$/ {f=d "/" $3 ".ktap"; next} /^==== KTAP END$/ {f=""; next} f {print > f}' "$log"
    local k
    for k in "$OUT"/ktap/*.ktap; do
        [ -f "$k" ] || continue
        kunit_parse "$k" | while read -r st kind name; do result "$st" "$kind" "$name"; done
    done
    if [ "$VM_MODE" = test ] && { [ -z "${TESTS:-}" ] || echo " $TESTS " | grep -q " kunit "; }; then
        ls "$OUT"/ktap/*.ktap >/dev/null 2>&1 || result FAIL kunit "no KTAP output collected"
    fi
    # Debug kernel: kmemleak's report after the tests.
    if grep -q '^==== KMEMLEAK BEGIN$' "$log"; then
        sed -n '/^==== KMEMLEAK BEGIN$/,/^==== KMEMLEAK END$/p' "$log" | sed '1d;$d' > "$OUT/kmemleak.txt"
        if grep -q 'unreferenced object' "$OUT/kmemleak.txt"; then
            result FAIL vm "kmemleak: $(grep -c 'unreferenced object' "$OUT/kmemleak.txt") unreferenced objects (see $OUT/kmemleak.txt)"
            head -30 "$OUT/kmemleak.txt"
        else
            result PASS vm "kmemleak: no unreferenced objects after the tests"
        fi
    fi
    # Kernel log: any oops, BUG, WARN, KASAN or lockdep report fails the run.
    sed -n '/^==== DMESG BEGIN$/,/^==== DMESG END$/p' "$log" > "$OUT/dmesg.txt"
    if [ ! -s "$OUT/dmesg.txt" ]; then
        result FAIL vm "kernel log collected (VM ended early, rc=$vmrc)"
    elif grep -nE 'Oops|BUG:|WARNING:|kernel BUG|general protection|KASAN|UBSAN|possible circular locking|INFO: task .* blocked|Call Trace' "$OUT/dmesg.txt" > "$OUT/dmesg-bad.txt"; then
        result FAIL vm "kernel log clean: $(head -1 "$OUT/dmesg-bad.txt")"
        head -40 "$OUT/dmesg-bad.txt"
    else
        result PASS vm "kernel log clean (no oops/BUG/WARN)"
    fi
}

case $what in
    all)
        phase deps bash "$VD_ROOT/scripts/deps.sh" || exit 1
        phase kernel bash "$VD_ROOT/scripts/kernel.sh" >/dev/null || exit 1
        phase modules bash "$VD_ROOT/scripts/build.sh" modules || { result FAIL build "modules"; }
        phase tools bash "$VD_ROOT/scripts/build.sh" tools || { result FAIL build "tools"; }
        phase host-tests host_tests
        phase fuzz fuzz_tests
        if ! grep -q '^FAIL  build' "$RES"; then
            phase initramfs bash "$VD_ROOT/scripts/build.sh" initramfs || result FAIL build initramfs
            phase vm-tests vm_tests
        fi ;;
    host) phase host-tests host_tests; phase fuzz fuzz_tests ;;
    vm|reconfig) phase vm-tests vm_tests ;;
    *) die "usage: test.sh all|host|vm" ;;
esac
p=$(grep -c '^PASS' "$RES"); f=$(grep -c '^FAIL' "$RES"); s=$(grep -c '^SKIP' "$RES")
log "total $(( $(date +%s) - T0 ))s"
if [ "$s" -gt 0 ]; then echo "$p passed, $f failed, $s skipped"; else echo "$p passed, $f failed"; fi
[ "$f" = 0 ] && [ "$p" -gt 0 ]

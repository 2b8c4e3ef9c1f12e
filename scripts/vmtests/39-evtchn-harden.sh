# vd_evtchn bad-input regressions (issue 11): kick counts near 2^64 do not overflow the domain
# totals; the block backend refuses files that could form reference cycles (and the module
# unloads after); a CREATE whose result cannot be copied back leaves no channel; SAVE refuses a
# user backend and continues from its indices after it; statistics and listing answer while a
# backend is blocked in I/O (the module's stall hook), and a listing walk under channel churn
# never repeats or skips a stable channel.
. ./lib.sh
load vd_evtchn
mark="vdtest: 39-evtchn-harden start $$"
echo "$mark" > /dev/kmsg || fail "mark the kernel log"
check "kernel log marked" sh -c "dmesg | grep -q '$mark'"
vd-itest evtchn-case kick-overflow || fail "kick-overflow"
vd-itest evtchn-case attach-types || fail "attach-types"
vd-itest evtchn-case create-efault || fail "create-efault"
vd-itest evtchn-case save-user || fail "save-user"
vd-itest evtchn-case stats-blocked || fail "stats-blocked"
vd-itest evtchn-case list-churn || fail "list-churn"
check "no channel left after the checks" \
    test "$(vdctl status --json | grep -A8 '"vd_evtchn"' | grep -o '"objects": [0-9]*')" = '"objects": 0'
check "no BUG, oops or WARNING during the checks" \
    sh -c "! { dmesg | sed -n '/$mark/,\$p' | grep -E 'BUG|WARNING|Oops|KASAN'; }"
unload vd_evtchn
check "vd_evtchn unloaded (no domain kept alive by a cycle)" sh -c '! grep -q "^vd_evtchn " /proc/modules'

# vd_evtchn: a hostile ring fails alone with a counter and a rate-limited log line; others keep working.
. ./lib.sh
load vd_evtchn
# Only the kernel log written from here on counts (the boot's earlier lines are not this test's).
mark="vdtest: 31-evtchn-hostile start $$"
echo "$mark" > /dev/kmsg || fail "mark the kernel log"
check "kernel log marked" sh -c "dmesg | grep -q '$mark'"
vd-itest evtchn-hostile || fail "evtchn-hostile"
check "failure logged during the test" sh -c "dmesg | sed -n '/$mark/,\$p' | grep -q 'vd_evtchn: domain .* ring failed'"

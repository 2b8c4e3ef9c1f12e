# vd_evtchn: a hostile ring fails alone with a counter and a rate-limited log line; others keep working.
. ./lib.sh
load vd_evtchn
vd-itest evtchn-hostile || fail "evtchn-hostile"
check "failure logged" sh -c 'dmesg | grep -q "vd_evtchn: domain .* ring failed"'

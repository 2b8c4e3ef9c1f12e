# vd_evtchn: lifecycle, argument validation, echo and null backends, stats, list, debugfs.
. ./lib.sh
load vd_evtchn
vd-itest evtchn-basic || fail "evtchn-basic"

# vd_evtchn: lifecycle, argument validation, echo and null backends, stats, list, debugfs; the
# kicker a listing names (kick_pid: a child process kicks a channel its parent created).
. ./lib.sh
load vd_evtchn
vd-itest evtchn-basic || fail "evtchn-basic"
vd-itest evtchn-case kicker || fail "kicker"

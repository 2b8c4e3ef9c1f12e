# vd_evtchn: userspace backend mode.
. ./lib.sh
load vd_evtchn
vd-itest evtchn-user || fail "evtchn-user"

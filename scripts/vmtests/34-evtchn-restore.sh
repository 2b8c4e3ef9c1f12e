# vd_evtchn: save/restore with requests in flight.
. ./lib.sh
load vd_evtchn
vd-itest evtchn-restore || fail "evtchn-restore"

# vd_evtchn: block backend against a host file.
. ./lib.sh
load vd_evtchn
vd-itest evtchn-block --file /tmp/vd-disk.img || fail "evtchn-block"

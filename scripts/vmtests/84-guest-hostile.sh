# vd-timeout: 400
# vd-tcg a
# Issue 12: two guests at once on two images (one server each). Guest "good" runs fio verify;
# guest "bad" garbles its ring through vd_front's debugfs knob: its write fails with EIO, its
# channel fails on the host (state failed or errors >= 1), and the good guest's fio passes.
. ./lib.sh
. ./guest-lib.sh
load vd_evtchn
rm -f /tmp/vd-good.img /tmp/vd-bad.img; truncate -s 64M /tmp/vd-good.img /tmp/vd-bad.img
start_server good /tmp/vd-good.img; good_srv=$SERVER_PID
start_server bad /tmp/vd-bad.img; bad_srv=$SERVER_PID
start_guest good fio-verify $(vd_disk_args good)
start_guest bad corrupt-eio $(vd_disk_args bad)
bad_failed=0
while guest_running bad; do
    if [ $bad_failed = 0 ] && vdctl evtchn list --json > /tmp/list.json 2>/dev/null && awk -v pid="$bad_srv" '
        /\{/ { p = 0; f = 0 }
        /"domain_pid": / { v = $2; sub(/,/, "", v); p = (v == pid) }
        /"state": "failed"/ { f = 1 }
        /"errors": [1-9]/ { f = 1 }
        /\}/ { if (p && f) n++ }
        END { exit !n }' /tmp/list.json; then bad_failed=1; cat /tmp/list.json; fi
    sleep 0.2
done
wait_guest bad; rc=$?
check "the hostile guest sees EIO after garbling its ring ($GUEST_RESULT)" test $rc = 0
check "the hostile guest's channel failed on the host (state failed / errors >= 1)" test $bad_failed = 1
check "vd_evtchn logged the bad ring (one rate-limited 'ring failed' line)" sh -c "dmesg | grep -q 'channel [0-9]*: ring failed'"
wait_guest good; rc=$?
check "the other guest's fio verify passes meanwhile ($GUEST_RESULT)" test $rc = 0
wait_for "both channels are gone after QEMU exited" 20 no_guest_channel
stop_server good; stop_server bad
rmmod vd_evtchn; rc=$?
check "vd_evtchn unloads after the guests are gone (rmmod exit $rc)" test $rc = 0
rm -f /tmp/vd-good.img /tmp/vd-bad.img

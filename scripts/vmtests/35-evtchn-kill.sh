# vd_evtchn: kill the VMM mid-traffic again and again; every channel is torn down and the module
# unloads afterwards.
. ./lib.sh
load vd_evtchn
for i in $(seq 1 15); do
    vd-itest evtchn-stress --channels 4 > /tmp/stress.out 2>&1 &
    pid=$!
    sleep 0.$(( (i * 7) % 9 + 1 ))
    kill -9 $pid 2>/dev/null
    wait $pid 2>/dev/null
done
grep -q "channels running" /tmp/stress.out || fail "stress never ran: $(cat /tmp/stress.out)"
# The killed processes' files are released by the time `wait` returns; poll the state anyway
# (at most 10 s) instead of sleeping a fixed time.
objects() { vdctl status --json | grep -A8 '"vd_evtchn"' | grep -o '"objects": [0-9]*'; }
no_objects() { [ "$(objects)" = '"objects": 0' ]; }
poll 10 no_objects
check "no channel left after the kills" test "$(objects)" = '"objects": 0'
unload vd_evtchn
check "vd_evtchn unloaded after 15 killed VMMs" sh -c '! grep -q "^vd_evtchn " /proc/modules'

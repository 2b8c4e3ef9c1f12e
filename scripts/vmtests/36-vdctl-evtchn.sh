# vdctl evtchn list|stats|watch read a running VMM's channels host-wide.
. ./lib.sh
load vd_evtchn
vd-itest evtchn-stress --channels 2 > /tmp/stress2.out 2>&1 &
pid=$!
sleep 1
vdctl evtchn list
vdctl evtchn list --json > /tmp/list.json || fail "vdctl evtchn list --json"
check "list shows the VMM's 2 channels" test "$(grep -c "\"domain_pid\": $pid" /tmp/list.json)" = 2
check "list shows traffic" sh -c "grep '\"requests\"' /tmp/list.json | grep -qv '\"requests\": 0'"
vdctl evtchn stats --pid $pid --json > /tmp/stats.json || fail "vdctl evtchn stats"
cat /tmp/stats.json
check "stats: one domain with 2 channels" grep -q '"channels": 2' /tmp/stats.json
vdctl evtchn watch --interval 0.5 --count 1 --json > /tmp/watch.json || fail "vdctl evtchn watch"
cat /tmp/watch.json
check "watch: nonzero request rate" sh -c "grep -o '\"requests_per_s\":[0-9.]*' /tmp/watch.json | grep -qv ':0.0$'"
vdctl evtchn stats --pid 999999 > /dev/null 2>&1; rc=$?
check "unknown pid is an error (exit $rc)" test $rc != 0
kill -9 $pid; wait $pid 2>/dev/null; true

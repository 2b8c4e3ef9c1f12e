# vdctl evtchn list|stats|watch read a running VMM's channels host-wide.
. ./lib.sh
load vd_evtchn
vd-itest evtchn-stress --channels 2 > /tmp/stress2.out 2>&1 &
pid=$!
traffic() {
    vdctl evtchn list --json > /tmp/list.json || return 1
    test "$(grep -c "\"domain_pid\": $pid" /tmp/list.json)" = 2 || return 1
    test "$(grep -c "\"kick_pid\": $pid\$" /tmp/list.json)" = 2 || return 1
    grep '"requests"' /tmp/list.json | grep -qv '"requests": 0'
}
wait_for "the VMM's 2 channels are listed with traffic, both kicked by it" 20 traffic
check "stress VMM running" kill -0 $pid
vdctl evtchn list > /tmp/list.txt || fail "vdctl evtchn list"
cat /tmp/list.txt
check "human list shows the VMM's channels" test "$(grep -c "^ *$pid " /tmp/list.txt)" = 2
vdctl evtchn list --json > /tmp/list.json || fail "vdctl evtchn list --json"
check "list shows the VMM's 2 channels" test "$(grep -c "\"domain_pid\": $pid" /tmp/list.json)" = 2
check "list: the VMM kicks its own 2 channels (kick_pid)" test "$(grep -c "\"kick_pid\": $pid\$" /tmp/list.json)" = 2
check "list shows traffic" sh -c "grep '\"requests\"' /tmp/list.json | grep -qv '\"requests\": 0'"
vdctl evtchn stats --pid $pid --json > /tmp/stats.json || fail "vdctl evtchn stats"
cat /tmp/stats.json
check "stats: one domain with 2 channels" grep -q '"channels": 2' /tmp/stats.json
vdctl evtchn watch --interval 0.5 --count 1 --json > /tmp/watch.json || fail "vdctl evtchn watch"
cat /tmp/watch.json
check "watch: nonzero request rate" sh -c "grep -o '\"requests_per_s\":[0-9.]*' /tmp/watch.json | grep -qv ':0.0$'"
vdctl evtchn stats --pid 999999 > /tmp/stats-bad.out 2>&1; rc=$?
check "unknown pid is an error (exit $rc)" test $rc != 0
check "unknown pid: says so" grep -q "no domain with pid 999999" /tmp/stats-bad.out
check "stress VMM still running at the end" kill -9 $pid
wait $pid; rc=$?
check "stress VMM died of SIGKILL (exit $rc)" test $rc = 137
gone() { vdctl evtchn list --json > /tmp/list.json && ! grep -q "\"domain_pid\": $pid" /tmp/list.json; }
wait_for "the killed VMM's channels are gone" 20 gone

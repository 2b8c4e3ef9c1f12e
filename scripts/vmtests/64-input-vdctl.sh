# vdctl input list|route|unroute|focus|stats, tables and --json, against a uinput device and a
# stand-in VMM with events queued behind its stopped vCPU.
. ./lib.sh
load vd_input_irq
hw=; hold=; rm -f /tmp/hw.out
trap 'kill -9 $hw $hold 2>/dev/null' EXIT
vd-itest input-hw --name "vdctl-test kbd" --hold > /tmp/hw.out 2>&1 & hw=$!
wait_line /tmp/hw.out '^ready'
vdctl input list > /tmp/l.txt; cat /tmp/l.txt
check "list: a table with the uinput device" grep -q '^ *[0-9]*  vdctl-test kbd  *vd-itest/hw/input0  *no  *no ' /tmp/l.txt
vdctl --json input list > /tmp/l.json
check "list --json: the device, not routed" sh -c "grep -A3 '\"name\": \"vdctl-test kbd\"' /tmp/l.json | grep -q '\"routed\": false'"
vdctl input route --name "vdctl-test" --grab > /tmp/r.txt; rc=$?; cat /tmp/r.txt
check "route --name --grab (exit $rc)" test $rc = 0
check "route: says what it did" grep -q 'routed name contains "vdctl-test" (grabbed from the host); 1 device(s) routed now' /tmp/r.txt
vdctl --json input list > /tmp/l.json
check "list --json: routed and grabbed" sh -c "grep -A4 '\"name\": \"vdctl-test kbd\"' /tmp/l.json | grep -q '\"grabbed\": true'"
vdctl input route --name "vdctl-test" --grab > /tmp/r.txt 2>&1; rc=$?; cat /tmp/r.txt
check "the same route again: exit 2 with a reason" sh -c "test $rc = 2 && grep -q 'exists already' /tmp/r.txt"
vdctl input stats 424242 > /tmp/s.txt 2>&1; rc=$?; cat /tmp/s.txt
check "stats of an unknown VM: exit 2, says so" sh -c "test $rc = 2 && grep -q 'no VM with that id' /tmp/s.txt"
check "unroute --name" vdctl input unroute --name "vdctl-test"
vdctl input unroute --name "vdctl-test" > /tmp/u.txt 2>&1; rc=$?; cat /tmp/u.txt
check "unroute of a route that is gone: exit 2" test $rc = 2
check "route every mouse / unroute" sh -c 'vdctl input route --mouse && vdctl input unroute --mouse'
check "route by phys / unroute" sh -c 'vdctl --json input route --phys vd-itest/hw/input0 | grep -q "\"kind\": \"phys\"" && vdctl input unroute --phys vd-itest/hw/input0'
kill $hw; wait $hw 2>/dev/null; hw=

# A VM with events queued behind its stopped vCPU.
rm -f /tmp/vdctl-hold.out
vd-itest input-hold --name "vdctl-test hold" --vm 6101 > /tmp/vdctl-hold.out 2>&1 & hold=$!
wait_line /tmp/vdctl-hold.out '^queued'
cat /tmp/vdctl-hold.out
child=$(sed -n 's/.* child=\([0-9]*\).*/\1/p' /tmp/vdctl-hold.out)
vdctl input stats 6101 > /tmp/s.txt; cat /tmp/s.txt
check "stats VM_ID: a table" grep -q '^ *6101  no  *1 ' /tmp/s.txt
vdctl --json input stats 6101 > /tmp/s.json; cat /tmp/s.json
check "stats --json: not running, queued" sh -c "grep -q '\"running\": false' /tmp/s.json && grep -q '\"queued\": 10000' /tmp/s.json"
check "stats --json: the delay histogram is labelled" grep -q '"<10us"' /tmp/s.json
vdctl input stats > /tmp/s.txt 2>&1; rc=$?; cat /tmp/s.txt
check "stats without VM_ID: the focused VM's (exit $rc)" sh -c "test $rc = 0 && grep -q '^ *6101  no  *1 ' /tmp/s.txt"
vdctl input focus 6101 > /tmp/f.txt; cat /tmp/f.txt
check "focus: says so" grep -q 'focus on VM 6101' /tmp/f.txt
vdctl --json input focus 6101 > /tmp/f.json
check "focus --json" grep -q '"action": "focus"' /tmp/f.json
kill -9 $hold; wait $hold 2>/dev/null; hold=
poll 5 test ! -d /proc/$child
check "unroute what the killed stand-in left" vdctl input unroute --name "vdctl-test hold"
unload vd_input_irq
vdctl input list > /tmp/e.txt 2>&1; rc=$?; cat /tmp/e.txt
check "module not loaded: exit 2, says to insmod" sh -c "test $rc = 2 && grep -q 'insmod vd_input_irq.ko' /tmp/e.txt"
load vd_input_irq

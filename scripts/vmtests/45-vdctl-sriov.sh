# vdctl sriov list|lease|release|policy|events.
. ./lib.sh
. ./sriov-lib.sh
sriov_init 3
vdctl sriov events --json --timeout 20 > /tmp/ev.json &
evp=$!
sleep 0.5
vdctl sriov lease any --vm 42 --for 60 > /tmp/lease.out 2>&1 &
lp=$!
n=0; while ! grep -q leased /tmp/lease.out; do n=$((n+1)); [ $n -lt 100 ] || fail "vdctl lease: $(cat /tmp/lease.out)"; sleep 0.1; done
cat /tmp/lease.out
L=$(sed -n 's/^leased \([^ ]*\) .*/\1/p' /tmp/lease.out)
check "vdctl sriov lease any took $L for VM 42" test "$(vf_field $L vm_id)" = 42
vdctl sriov list
vdctl sriov policy --threshold 1000 --window-ms 2000 || fail "policy set"
vdctl sriov policy --json > /tmp/pol.json; cat /tmp/pol.json
check "policy shows the new threshold" grep -q '"threshold_bps": 1000' /tmp/pol.json
check "policy shows the new window" grep -q '"window_ms": 2000' /tmp/pol.json
vdctl sriov policy --window-ms 5 > /dev/null 2>&1
check "an invalid window is refused" test $? != 0
vdctl sriov release $L || fail "vdctl sriov release"
wait $lp; rc=$?
check "the holding vdctl released and exited 0" test $rc = 0
check "$L is free and on igbvf" test "$(vf_field $L vm_id)" = null -a "$(vf_field $L driver)" = igbvf
sleep 0.5; kill $evp; wait $evp 2>/dev/null
cat /tmp/ev.json
check "events: leased" grep -q '"kind":"leased","vf":"'$L'","vm_id":42' /tmp/ev.json
check "events: released" grep -q '"kind":"released","vf":"'$L'","vm_id":42' /tmp/ev.json
check "events: returned without error" grep -q '"kind":"returned","vf":"'$L'".*"err":0' /tmp/ev.json
vdctl sriov release $L > /dev/null 2>&1
check "releasing a free VF is an error" test $? != 0
vdctl sriov policy --threshold 65536 --window-ms 5000 > /dev/null

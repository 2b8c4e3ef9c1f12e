# vdctl sriov list|lease|release|policy|events.
. ./lib.sh
. ./sriov-lib.sh
sriov_init 3
# A bound only: the reader is killed once it printed what this test waits for.
vdctl sriov events --json --timeout 300 > /tmp/ev.json &
evp=$!
# The event reader sees only what happens after it opened the device: wait for its open file.
poll 10 sh -c "ls -l /proc/$evp/fd 2>/dev/null | grep -q /dev/vd_sriov" \
    || fail "vdctl sriov events never opened /dev/vd_sriov"
vdctl sriov lease any --vm 42 --for 60 > /tmp/lease.out 2>&1 &
lp=$!
wait_line /tmp/lease.out leased 10
cat /tmp/lease.out
L=$(sed -n 's/^leased \([^ ]*\) .*/\1/p' /tmp/lease.out)
check "vdctl sriov lease any took $L for VM 42" test "$(vf_field $L vm_id)" = 42
vdctl sriov list || fail "vdctl sriov list"
vdctl sriov policy --threshold 1000 --window-ms 2000 || fail "policy set"
vdctl sriov policy --json > /tmp/pol.json || fail "vdctl sriov policy --json"
cat /tmp/pol.json
check "policy shows the new threshold" grep -q '"threshold_bps": 1000' /tmp/pol.json
check "policy shows the new window" grep -q '"window_ms": 2000' /tmp/pol.json
vdctl sriov policy --window-ms 5 > /tmp/pol.err 2>&1
rc=$?; cat /tmp/pol.err
check "an invalid window is refused" test $rc != 0
check "with EINVAL" grep -q "EINVAL: Invalid argument" /tmp/pol.err
vdctl sriov release $L || fail "vdctl sriov release"
wait $lp; rc=$?
check "the holding vdctl released and exited 0" test $rc = 0
check "$L is free and on igbvf" test "$(vf_field $L vm_id)" = null -a "$(vf_field $L driver)" = igbvf
# The holder exited after the returned event; the event reader has it once it printed it.
poll 10 has_line /tmp/ev.json '"kind":"returned","vf":"'$L'"'
kill $evp || fail "the event reader exited early: $(cat /tmp/ev.json)"
wait $evp 2>/dev/null
cat /tmp/ev.json
check "events: leased" grep -q '"kind":"leased","vf":"'$L'","vm_id":42' /tmp/ev.json
check "events: released" grep -q '"kind":"released","vf":"'$L'","vm_id":42' /tmp/ev.json
check "events: returned without error" grep -q '"kind":"returned","vf":"'$L'".*"err":0' /tmp/ev.json
vdctl sriov release $L > /tmp/rel.err 2>&1
rc=$?; cat /tmp/rel.err
check "releasing a free VF is an error" test $rc != 0
check "saying it is not leased" grep -q "is not leased" /tmp/rel.err
# vdctl sriov swap: an operator moves a lease to a VM that waits for a VF (VDS_IOC_SWAP).
vdctl sriov lease any --vm 51 --keep-host --for 120 > /tmp/lease2.out 2>&1 &
lp2=$!
wait_line /tmp/lease2.out leased 10
S=$(sed -n 's/^leased \([^ ]*\) .*/\1/p' /tmp/lease2.out)
vdctl sriov swap $S --from 51 --to 52 --force > /tmp/swap.err 2>&1
rc=$?; cat /tmp/swap.err
check "a swap to a VM that does not wait is refused" test $rc != 0
check "with ENOENT, saying that VM 52 must be waiting" grep -q "ENOENT.*VM 52 must be waiting" /tmp/swap.err
vd-itest vdd-waiter --vm 52 > /tmp/w52.out 2>&1 &
wp=$!
wait_line /tmp/w52.out '^WAITING' 10
vdctl sriov swap $S --from 53 --to 52 --force > /tmp/swap.err 2>&1
rc=$?; cat /tmp/swap.err
check "a swap from a VM that does not hold the VF is refused" test $rc != 0
check "with ESRCH" grep -q "ESRCH" /tmp/swap.err
vdctl --json sriov swap $S --from 51 --to 52 --force > /tmp/swap.json 2>&1 || fail "vdctl sriov swap: $(cat /tmp/swap.json)"
cat /tmp/swap.json
check "vdctl sriov swap moved $S's lease from VM 51 to VM 52" test "$(vf_field $S vm_id)" = 52
check "and says so in its JSON" grep -q '"to_vm":52' /tmp/swap.json
kill $wp $lp2; wait $wp $lp2 2>/dev/null
wait_vf $S vm_id null || fail "$S still leased after its holders exited"
vdctl sriov policy --threshold 65536 --window-ms 5000 > /dev/null || fail "policy reset"

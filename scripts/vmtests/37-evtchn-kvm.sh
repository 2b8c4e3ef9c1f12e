# vd_evtchn end to end with a real KVM guest (nested, under TCG): the guest's ring lives in the
# channel's pages (a KVM memory slot), its doorbell is a KVM_IOEVENTFD, its interrupt a KVM_IRQFD;
# the in-kernel echo backend answers; the guest checks every response (id, status, payload).
. ./lib.sh
load kvm
is_loaded kvm_amd || insmod $M/kvm-amd.ko || fail "insmod kvm-amd"
load vd_evtchn
run() { # name, args...: one guest run that must pass
    n=$1; shift
    vd-testvmm evtchn --json "$@" > /tmp/kvm-$n.json; rc=$?
    cat /tmp/kvm-$n.json
    check "$n: guest run passes (exit $rc)" test $rc = 0
}
run batched --requests 3000 --batch 16 --entries 64
check "batched: 3000 responses checked by the guest, none bad" grep -q '"ok":3000,"bad":0' /tmp/kvm-batched.json
check "batched: no exit to the VMM but the final one" grep -q '"exits_to_vmm":1,' /tmp/kvm-batched.json
run pingpong --requests 300 --batch 1 --entries 8 --entry-size 32
run wrap --requests 1000 --batch 7 --entries 8 --entry-size 32
run vmm-path --path vmm --requests 500 --batch 4
# A hostile guest while a good guest runs beside it: the hostile channel
# fails (and tells its guest), the good guest finishes clean.
vd-testvmm evtchn --json --requests 4000 --batch 8 > /tmp/kvm-good.json & good=$!
run hostile --hostile 2147483647
check "hostile: guest saw FAILED and the module counts the error" grep -q '"guest_saw_failed":true' /tmp/kvm-hostile.json
wait $good; rc=$?
cat /tmp/kvm-good.json
check "the other guest kept working (exit $rc)" test $rc = 0
check "failure logged" sh -c 'dmesg | grep -q "vd_evtchn: domain .* ring failed"'
# Kill the VMM mid-traffic, again and again: every channel goes with its file.
for i in 1 2 3 4 5 6; do
    vd-testvmm evtchn --requests 1000000 --batch 4 > /dev/null 2>&1 & pid=$!
    sleep 0.$(( i + 2 ))
    kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
done
sleep 0.2
check "no channel left after 6 killed VMMs" test "$(vdctl status --json | grep -A8 '"vd_evtchn"' | grep -o '"objects": [0-9]*')" = '"objects": 0'
unload vd_evtchn
check "vd_evtchn unloads after the killed VMMs" sh -c '! grep -q "^vd_evtchn " /proc/modules'

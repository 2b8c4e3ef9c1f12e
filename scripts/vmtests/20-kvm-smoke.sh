# Nested KVM: kvm_amd loads in the TCG test VM, and a real KVM guest driven by vd-testvmm
# (rust-vmm kvm-ioctls) kicks an ioeventfd.
. ./lib.sh
load kvm
is_loaded kvm_amd || insmod $M/kvm-amd.ko || fail "insmod kvm-amd (needs -cpu max for SVM)"
check "/dev/kvm exists" test -c /dev/kvm
vd-testvmm smoke --json > /tmp/smoke.json; rc=$?
cat /tmp/smoke.json
check "vd-testvmm smoke exit 0" test $rc = 0
check "ioeventfd saw 3 kicks" grep -q '"kicks":3' /tmp/smoke.json

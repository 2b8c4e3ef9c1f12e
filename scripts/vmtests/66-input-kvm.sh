# vd_input_irq into a real KVM guest (nested): a uinput keyboard routed to the VM types; the
# module writes the events into the guest's ring and its call eventfd (KVM_IRQFD) interrupts the
# guest, which wakes from hlt and consumes every event.
. ./lib.sh
load kvm
is_loaded kvm_amd || insmod $M/kvm-amd.ko || fail "insmod kvm-amd"
load vd_input_irq
vd-testvmm input --keys 50 --json > /tmp/kvm-input.json; rc=$?
cat /tmp/kvm-input.json
check "the guest consumed every event and took interrupts (exit $rc)" test $rc = 0
check "200 events, 100 of them keys" grep -q '"events":200,"keys":100' /tmp/kvm-input.json
unload vd_input_irq
check "vd_input_irq unloads after the guest" sh -c '! grep -q "^vd_input_irq " /proc/modules'

# vd-timeout: 900
# vd-on-demand
# Experiment, run only when named (TESTS='irq-stale-kick' make test-vm): aims 6a's
# interrupt-fidelity oracle at one suspected path of the emulator's nested SVM (QEMU TCG's
# helper_vmrun leaves exception_index = the vector of an EVENTINJ interrupt it injected; an
# exit_request before that vCPU's next exception, interrupt or #VMEXIT would make the emulator
# deliver the vector again, as an exception, with IF=0). --handler-spin keeps the nested guest
# between the injecting VMRUN and its next exit for milliseconds; --kick-pci makes the emulator
# kick its vCPUs with no interrupt pending (each toggle of a PCI device's bus-master bit is a
# memory-map change, and QEMU queues a TLB flush on every vCPU). No vd module loaded.
# Under the hypothesis: duplicates with IF=0 under spin + kicks, (almost) none under spin alone.
# IRQF_SECS (default 40) per run, from VD_APPEND as vd.irqf_secs=N.
. ./lib.sh
load kvm
is_loaded kvm_amd || insmod $M/kvm-amd.ko || fail "insmod kvm-amd (needs -cpu max for SVM)"
for m in vd_evtchn vd_input_irq vd_sriov_mgr; do unload $m; done
check "no vd module loaded" sh -c '! grep -q "^vd_" /proc/modules'
secs=$(sed -n 's/.*vd\.irqf_secs=\([0-9]*\).*/\1/p' /proc/cmdline)
secs=${secs:-40}
# An idle device whose bus-master bit nobody needs: the ICH9 SMBus controller (no DMA).
bdf=0000:00:1f.3
[ -e /sys/bus/pci/devices/$bdf/config ] || fail "no PCI device $bdf (q35's SMBus) to toggle"
echo "kick device $bdf: vendor $(cat /sys/bus/pci/devices/$bdf/vendor) device $(cat /sys/bus/pci/devices/$bdf/device) class $(cat /sys/bus/pci/devices/$bdf/class)"
echo "kvm_amd params: $(for p in /sys/module/kvm_amd/parameters/*; do printf '%s=%s ' ${p##*/} $(cat $p); done)"
bad=0; n=0
run() { # LABEL ARGS...
    label=$1; shift; n=$((n + 1))
    vd-testvmm irq-fidelity --secs $secs "$@" > /tmp/irqf.out; rc=$?
    echo "IRQF $label (args: $*) rc=$rc"; cat /tmp/irqf.out
    [ $rc = 0 ] || bad=$((bad + 1))
}
run spin --handler-spin 64
run spin-kick --handler-spin 64 --kick-pci $bdf
run kick --kick-pci $bdf
dmesg | grep -iE 'kvm|svm' | tail -5
check "all $n oracle runs clean ($bad failed)" test $bad = 0

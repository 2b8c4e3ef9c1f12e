# vd-timeout: 1500
# vd-on-demand
# Experiment, run only when named: nested Linux guests back to back (each runs fio verify on a
# virtio-blk disk), to measure how often the emulator's nested SVM takes the test VM down (the
# README's limits). Kernel parameters for the test VM (e.g. kvm_amd.vgif=0) come from
# VD_APPEND; 16 guests:
#   VD_APPEND=kvm_amd.vgif=0 TESTS=nested-stress make test-guests
. ./lib.sh
. ./guest-lib.sh
guest_kvm
echo "kvm_amd params: $(for p in /sys/module/kvm_amd/parameters/*; do printf '%s=%s ' ${p##*/} $(cat $p); done)"
img=/tmp/stress.img
n=0; ok=0
while [ $n -lt 16 ]; do
    n=$((n + 1))
    rm -f $img; truncate -s 64M $img
    if run_guest s$n virtio-verify -drive file=$img,if=none,id=d0,format=raw -device virtio-blk-pci,drive=d0 > /tmp/stress.out 2>&1; then
        ok=$((ok + 1)); echo "STRESS $n PASS ${GUEST_SECS}s"
    else
        echo "STRESS $n FAIL: $GUEST_RESULT"; tail -20 /tmp/stress.out
    fi
done
check "all $n nested guests passed ($ok)" test $ok = $n

# vd-timeout: 300
# Issue 13 with stock QEMU, in `make test` (no nested guest: the emulator's nested SVM is too
# fragile for make test; 82-guest-input does the same with a real Linux guest in
# `make test-guests`). vd-ivshmem-server --input 43 gives QEMU's ivshmem-doorbell device a
# vd_input_irq event ring in its shared memory and follows QEMU's vCPU thread; QEMU runs under
# qtest and `vd-itest qtest-input` plays the guest driver through it (reads the ring in BAR2,
# rings the doorbell): 304 frames in order while QEMU runs; the 10,000-event burst queued while
# QEMU is SIGSTOPped, every key once and in order after SIGCONT; QEMU SIGKILLed with events
# queued: its VM goes; then the server stops, the module has no reference left and unloads.
. ./lib.sh
. ./guest-lib.sh
command -v qemu-system-x86_64 > /dev/null || fail "qemu-system-x86_64 is not in the test VM's initramfs"
load vd_input_irq
start_input_server qinp 43
vd-itest qtest-input --socket /tmp/vd-qinp.sock --vm 43 --qemu "$(command -v qemu-system-x86_64)" \
    || { server_log qinp; fail "vd-itest qtest-input"; }
check "the server followed QEMU's vCPU thread" grep -q '"event":"attached"' /tmp/vd-qinp.server.out
check "the server saw QEMU leave" grep -q '"event":"left"' /tmp/vd-qinp.server.out
stop_server qinp; rc=$?
check "vd-ivshmem-server --input exits 0 on SIGTERM (exit $rc)" test $rc = 0
wait_for "vd_input_irq has no reference left (the dead QEMU's thread hook reaped)" 20 \
    sh -c '[ "$(cat /sys/module/vd_input_irq/refcnt)" = 0 ]'
rmmod vd_input_irq; rc=$?
check "vd_input_irq unloads (rmmod exit $rc)" test $rc = 0

# vd-timeout: 300
# Issue 13 with stock QEMU, in `make test` (no nested guest: the emulator's nested SVM is too
# fragile for make test; 82-guest-input does the same with a real Linux guest in
# `make test-guests`). vd-ivshmem-server --input 43 gives QEMU's ivshmem-doorbell device a
# vd_input_irq event ring in its shared memory and follows QEMU's vCPU thread; QEMU runs under
# qtest and `vd-itest qtest-input` plays the guest driver through it (reads the ring in BAR2,
# rings the doorbell): 304 frames in order while QEMU runs; the 10,000-event burst queued while
# QEMU is SIGSTOPped, every key once and in order after SIGCONT; QEMU SIGKILLed with events
# queued: its VM goes; then the server stops. Then the same with vdd serving VM 47's input device
# itself ([[input.vm]] in vdd.toml). At the end the module has no reference left and unloads.
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

# The same with vdd serving the VM's input device itself ([[input.vm]]), as an operator
# configures it once per host: vdd listens for VM 47's QEMU, gives it the ring and follows its
# vCPU thread.
W=/tmp/vddinp; rm -rf $W; mkdir -p $W
vdd_conf $W
cat >> $W/vdd.toml <<EOT
[[input.vm]]
id = 47
socket = "$W/input47.sock"
EOT
export VDD_SOCKET=$W/vdd.sock
vdd --config $W/vdd.toml > $W/vdd.log 2>&1 & D=$!
_GL_PIDS="$_GL_PIDS $D"
wait_for "vdd answers" 10 vdctl daemon status
check "vdd listens for VM 47's QEMU" grep -q "input VM 47: listening on $W/input47.sock" $W/vdd.log
vd-itest qtest-input --socket $W/input47.sock --vm 47 --qemu "$(command -v qemu-system-x86_64)" \
    || { cat $W/vdd.log; fail "vd-itest qtest-input through vdd"; }
check "vdd followed QEMU's vCPU thread" grep -q "input VM 47: client 1: vCPU 0 (thread [0-9]*) followed" $W/vdd.log
check "vdd saw QEMU leave" grep -q "input VM 47: client 1 left" $W/vdd.log
kill -TERM $D; wait $D; rc=$?
check "vdd exits 0 on SIGTERM (exit $rc)" test $rc = 0
check "vdd removed VM 47's socket" test ! -e $W/input47.sock
wait_for "vd_input_irq has no reference left (the dead QEMU's thread hook reaped)" 20 \
    sh -c '[ "$(cat /sys/module/vd_input_irq/refcnt)" = 0 ]'
rmmod vd_input_irq; rc=$?
check "vd_input_irq unloads (rmmod exit $rc)" test $rc = 0

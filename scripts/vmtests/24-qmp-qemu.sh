# vd-timeout: 120
# Issue 14 item 3: vdd's QMP client (vdd/src/vmm.rs, on the `qapi` crate's typed commands and
# events) against a stock QEMU, not the fake peer: `qemu-system-x86_64 -M none` (no guest, no
# devices: only the monitor) with a QMP socket, and `vd-itest qmp-check` doing the greeting and
# capabilities negotiation; device_del of an unknown id through vdd's detach path (a typed
# DeviceNotFound) and device_add vfio-pci where no PCI bus exists (a typed GenericError: vdd's
# rollback path); stop, whose STOP event QEMU sends before the command's answer (kept, and the
# answer still returned); query-status paused; cont and RESUME; then QEMU SIGSTOPped: the command
# fails after its timeout instead of hanging vdd, and after SIGCONT the late answer is skipped.
. ./lib.sh
. ./guest-lib.sh
command -v qemu-system-x86_64 > /dev/null || fail "qemu-system-x86_64 is not in the test VM's initramfs"
W=/tmp/qmpqemu; rm -rf $W; mkdir -p $W
qemu-system-x86_64 -M none -accel tcg -display none -nodefaults \
    -qmp unix:$W/qmp.sock,server=on,wait=off > $W/qemu.log 2>&1 & Q=$!
_GL_PIDS="$_GL_PIDS $Q"
wait_for "QEMU's QMP socket" 30 test -S $W/qmp.sock
vd-itest qmp-check --qmp $W/qmp.sock --qemu-pid $Q || { cat $W/qemu.log; fail "vd-itest qmp-check"; }
check "QEMU still runs after the checks" kill -0 $Q
kill -TERM $Q; wait $Q; rc=$?
check "QEMU exits 0 on SIGTERM (exit $rc)" test $rc = 0

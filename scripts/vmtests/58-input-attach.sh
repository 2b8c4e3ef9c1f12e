# vd_input_irq following a stock QEMU's vCPU threads by TID (VDI_IOC_VCPU_ATTACH), QEMU unaware:
# events reach the ring at once while its vCPUs wait (-S); QEMU SIGSTOPped: a 10,000-event burst
# waits in the queue, SIGCONT flushes it in order with exact REL sums; the ATTACH/DETACH errnos
# (EEXIST, EINVAL, ESRCH, ENOENT, EPERM for uid 65534 on root's thread); QEMU SIGKILLed with
# events queued: they are flushed, its threads stop counting, no hook is left and the module
# unloads.
. ./lib.sh
command -v qemu-system-x86_64 > /dev/null || fail "qemu-system-x86_64 is not in the test VM's initramfs"
load vd_input_irq
vd-itest input-attach || fail "vd-itest input-attach"
check "rmmod vd_input_irq (no thread keeps a hook)" rmmod vd_input_irq
check "vd_input_irq unloaded" sh -c '! grep -q "^vd_input_irq " /proc/modules'
load vd_input_irq
check "and loads again" is_loaded vd_input_irq

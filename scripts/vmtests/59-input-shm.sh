# vd_input_irq for ivshmem-doorbell (issue 13): a VM sink whose event ring lives in a shmem file
# (VDI_IOC_VM_CREATE_SHM), read through that file's own mapping as QEMU maps it for a stock
# guest: the geometry line (dev_kind INPUT, doorbell), frames in order through an 8-slot ring
# with the doorbell path, argument checks; then the module unloads.
. ./lib.sh
load vd_input_irq
vd-itest input-shm || fail "vd-itest input-shm"
wait_for "vd_input_irq has no reference left" 10 sh -c '[ "$(cat /sys/module/vd_input_irq/refcnt)" = 0 ]'
rmmod vd_input_irq || fail "rmmod vd_input_irq after the shm sinks closed"

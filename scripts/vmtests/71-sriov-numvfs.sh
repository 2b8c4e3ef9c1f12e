# The PF VF count changes while leases exist: the PF driver refuses to disable VFs that are
# leased (the module marks them assigned); a leased VF removed anyway revokes its lease.
. ./lib.sh
. ./sriov-lib.sh
sriov_init 3
hold $VF 90
echo 0 > /sys/bus/pci/devices/$PF/sriov_numvfs 2>/dev/null
check "disabling SR-IOV under a lease is refused" test $? != 0
check "all 3 VFs still exist" test "$(cat /sys/bus/pci/devices/$PF/sriov_numvfs)" = 3
check "the lease is intact" test "$(vf_field $VF vm_id)" = 90
vdctl sriov numvfs 0 > /dev/null 2>&1
check "vdctl sriov numvfs 0 is refused too" test $? != 0
kill $pid; wait $pid 2>/dev/null
check "lease ended" wait_vf $VF vm_id null
check "VF back on igbvf" wait_vf $VF driver igbvf
vdctl sriov numvfs 0 || fail "numvfs 0 after the lease ended"
check "no VFs listed after disabling" test "$(vdctl sriov list --json | grep -c '"vf":')" = 0
vdctl sriov numvfs 3 > /dev/null || fail "numvfs 3"
check "3 new VFs noticed" test "$(vdctl sriov list --json | grep -c '"vf":')" = 3
# A leased VF taken from vfio-pci behind our back (admin unbind): the lease is revoked.
sriov_init 3
VF3=$(echo $VFS | cut -d' ' -f3)
hold $VF3 91
echo $VF3 > /sys/bus/pci/drivers/vfio-pci/unbind || fail "unbind $VF3 from vfio-pci"
check "unbind: the holder got a revoked event" wait_revoked $VF3 91
check "unbind: $VF3 is free and unmarked" test "$(vf_field $VF3 vm_id)" = null -a "$(vf_field $VF3 assigned)" = false
check "unbind: its driver_override is cleared" test "$(cat /sys/bus/pci/devices/$VF3/driver_override)" = "(null)"
kill $pid; wait $pid 2>/dev/null
echo $VF3 > /sys/bus/pci/drivers_probe
check "unbind: $VF3 goes back to igbvf on a probe" wait_vf $VF3 driver igbvf

# Leases with a real (emulated Intel) IOMMU, as a VMM uses them: each VF is in its own IOMMU
# group, a leased VF opens through VFIO's type1 container (config space read, DMA mapped through
# the IOMMU), an unleased one does not, and a lease that ends while the VMM still has the VF
# open moves the VF back only once the VMM closes it.
. ./lib.sh
. ./sriov-lib.sh
group() { basename "$(readlink /sys/bus/pci/devices/$1/iommu_group)"; }
check "the VM has an IOMMU" has_iommu
sriov_init 3
check "vfio is not in no-IOMMU mode" test "$(cat /sys/module/vfio/parameters/enable_unsafe_noiommu_mode)" = N
for v in $VFS; do
    g=$(group $v)
    [ -n "$g" ] || fail "$v has no IOMMU group"
    [ "$(ls /sys/kernel/iommu_groups/$g/devices | wc -l)" = 1 ] || fail "$v shares IOMMU group $g: $(ls /sys/kernel/iommu_groups/$g/devices)"
done
echo "ok: each VF is alone in its IOMMU group"
VF2=$(echo $VFS | cut -d' ' -f2)
G=$(group $VF2)
! vd-itest vfio-open --vf $VF2 > /tmp/vfio.out 2>&1
check "an unleased VF (on igbvf) does not open through VFIO" test $? = 0
hold $VF2 80
check "leased: $VF2 on vfio-pci, its group device /dev/vfio/$G exists" test "$(vf_field $VF2 driver)" = vfio-pci -a -c /dev/vfio/$G
vd-itest vfio-open --vf $VF2 > /tmp/vfio.out 2>&1
rc=$?; cat /tmp/vfio.out
check "leased: $VF2 opens through VFIO, config space reads, DMA maps through the IOMMU" test $rc = 0
# The lease ends (holder killed) while a VMM has the VF open for 4 s more.
: > /tmp/vmm.out
vd-itest vfio-open --vf $VF2 --hold-ms 4000 > /tmp/vmm.out 2>&1 &
vmm=$!
wait_line /tmp/vmm.out VFIO-OPEN 10
kill $pid; wait $pid 2>/dev/null
# vfio-pci's remove waits for the VMM to close the device (the driver link goes first).
drv() { basename "$(readlink /sys/bus/pci/devices/$VF2/driver)"; }
on_its_way() { vf_is $VF2 phase to-host && [ -z "$(drv)" ]; }
poll 3 on_its_way
ph=$(vf_field $VF2 phase)
check "lease ended: while the VMM has it open the VF is on its way back (phase $ph, driver '$(drv)')" \
    test "$ph" = to-host -a -z "$(drv)"
check "the VMM stand-in still has it open" kill -0 $vmm
# A lease attempt now fails at once with EBUSY (a holder that leased would hold until killed).
timeout 20 vd-itest sriov-hold --vf $VF2 --vm 82 > /tmp/hold2.out 2>&1
rc=$?
refused_busy() { [ $rc = 1 ] && grep -q "lease: EBUSY" /tmp/hold2.out && ! grep -q LEASED /tmp/hold2.out; }
check "and is not leased to anyone meanwhile: EBUSY (rc $rc: $(cat /tmp/hold2.out | tr '\n' ' '))" refused_busy
wait $vmm
check "the VMM stand-in closed the VF cleanly" grep -q VFIO-CLOSED /tmp/vmm.out
check "then the VF goes back to igbvf" wait_vf $VF2 driver igbvf
check "and is free again (phase host)" wait_vf $VF2 phase host
hold $VF2 81
check "and leases again (VM 81)" test "$(vf_field $VF2 vm_id)" = 81 -a "$(vf_field $VF2 driver)" = vfio-pci
kill $pid; wait $pid 2>/dev/null
check "released: $VF2 back on igbvf" wait_vf $VF2 driver igbvf

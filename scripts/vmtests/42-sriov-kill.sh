# A VMM that dies (kill -9) with a lease: the lease ends with its file, the VF goes back to
# igbvf; the module cannot be unloaded while a holder has the device open, and can after.
. ./lib.sh
. ./sriov-lib.sh
sriov_init 3
VF2=$(echo $VFS | cut -d' ' -f2)
hold $VF2 77
check "holder leased $VF2" grep -q "LEASED $VF2" /tmp/hold.out
check "list: VM 77 holds $VF2" test "$(vf_field $VF2 vm_id)" = 77
check "list: owner is the holder (pid $pid)" test "$(vf_field $VF2 owner_pid)" = $pid
check "$VF2 is on vfio-pci" test "$(vf_field $VF2 driver)" = vfio-pci
check "$VF2 has no host netdev while leased" test -z "$(ls /sys/bus/pci/devices/$VF2/net 2>/dev/null)"
rmmod vd_sriov_mgr 2>/dev/null
check "rmmod refused while a holder has the device open" is_loaded vd_sriov_mgr
kill -9 $pid; wait $pid 2>/dev/null
check "after kill -9 the lease is gone" wait_vf $VF2 vm_id null
check "and $VF2 is back on igbvf" wait_vf $VF2 driver igbvf
check "with a netdev" test -n "$(vf_field $VF2 netdev)"
check "and unmarked" test "$(vf_field $VF2 assigned)" = false
# Unload with a VF leased a moment ago and just released: exit waits for the move back.
hold $VF2 78
kill -9 $pid; wait $pid 2>/dev/null
rmmod vd_sriov_mgr || fail "rmmod after the holder died"
check "after unload $VF2 is on igbvf" test "$(basename $(readlink /sys/bus/pci/devices/$VF2/driver))" = igbvf
check "and its driver_override is cleared" test "$(cat /sys/bus/pci/devices/$VF2/driver_override)" = "(null)"
load vd_sriov_mgr
check "reloaded module finds the 3 VFs" test "$(vdctl sriov list --json | grep -c '"vf":')" = 3

# Hot-unplug of the slot (PF and its VFs) while a VF is leased: the lease is revoked, nothing is
# left behind, no kernel BUG (the assigned mark is dropped before the PF driver stops); rescan
# brings the PF back. Runs last (7f): after a re-enumeration QEMU's igb VFs get no link carrier and
# the PF no longer answers their mailbox (igbvf: "PF still resetting").
. ./lib.sh
. ./sriov-lib.sh
sriov_init 3
VF3=$(echo $VFS | cut -d' ' -f3)
# Hot-unplug of the whole slot (PF and VFs) with a VF leased: VFs are stopped first, the lease is
# revoked, the PF driver may then disable SR-IOV, and nothing is left behind. Rescan brings the PF back.
hold $VF3 92
port=$(basename $(dirname $(readlink -f /sys/bus/pci/devices/$PF)))
echo 1 > /sys/bus/pci/devices/$port/remove || fail "remove root port $port"
check "hot-unplug: the holder got a revoked event" wait_revoked $VF3 92
cat /tmp/hold.out
check "hot-unplug: no VFs listed" test "$(vdctl sriov list --json | grep -c '"vf":')" = 0
check "hot-unplug: no PF listed" test "$(vdctl sriov list --json | grep -c '"total_vfs"')" = 0
kill $pid; wait $pid 2>/dev/null
echo 1 > /sys/bus/pci/rescan
wait_for "rescan: the PF is back" 10 sh -c "vdctl sriov list --json | grep -q '\"total_vfs\"'"
sriov_init 3
check "3 VFs again" test "$(vdctl sriov list --json | grep -c '"vf":')" = 3

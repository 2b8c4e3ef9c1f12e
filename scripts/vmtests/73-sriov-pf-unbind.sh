# The PF's own driver goes away while one of its VFs is leased: igb unbound from the PF through
# sysfs, then the PF removed. igb disables SR-IOV on remove only if no VF is marked assigned, and
# VFs it leaves enabled are orphans the PCI core later trips over (BUG_ON in sriov_release). The
# module revokes the leases and clears the marks before igb's remove runs, so SR-IOV is disabled
# normally (the harness fails the run on any oops/WARN/BUG in the kernel log). Rebound, the PF
# gets VFs again and they lease again.
. ./lib.sh
. ./sriov-lib.sh
# Kernel log lines since `mark` (earlier tests provoke igb's refusal on purpose).
mark() { LOGMARK=$(dmesg | wc -l); }
no_log() { ! dmesg | tail -n +$((LOGMARK + 1)) | grep -q "$1"; }
has_log() { dmesg | tail -n +$((LOGMARK + 1)) | grep -q "$1"; }
pf_driver() { basename "$(readlink /sys/bus/pci/devices/$PF/driver 2>/dev/null)" 2>/dev/null; }
vf_count() { vdctl sriov list --json | grep -c '"vf":'; }

# 1. igb unbound from the PF (sysfs) with a VF leased.
sriov_init 3
VF3=$(echo $VFS | cut -d' ' -f3)
hold $VF3 93
check "unbind: $VF3 is leased on vfio-pci and marked assigned" test "$(vf_field $VF3 driver)" = vfio-pci -a "$(vf_field $VF3 assigned)" = true
mark
echo $PF > /sys/bus/pci/drivers/igb/unbind || fail "unbind igb from $PF"
check "unbind: the holder got a revoked event" wait_revoked $VF3 93
check "unbind: the PF has no driver" test -z "$(pf_driver)"
check "unbind: igb disabled SR-IOV (sriov_numvfs 0)" test "$(cat /sys/bus/pci/devices/$PF/sriov_numvfs)" = 0
check "unbind: no virtfn links left under the PF" test -z "$(ls -d /sys/bus/pci/devices/$PF/virtfn* 2>/dev/null)"
check "unbind: no VF device left on the bus" test ! -e /sys/bus/pci/devices/$VF3
check "unbind: no VFs listed" test "$(vf_count)" = 0
check "unbind: igb did not refuse to deallocate the VFs" no_log "will not be deallocated"
check "unbind: the PCI core found no SR-IOV left enabled" no_log "left SR-IOV enabled"
check "unbind: the module logged the revocation" has_log "is losing its driver: lease of VF $VF3 by VM 93 revoked"
kill $pid; wait $pid 2>/dev/null
# Rebind: VFs again, leased again.
echo $PF > /sys/bus/pci/drivers/igb/bind || fail "bind igb to $PF"
check "rebind: igb is back on the PF" test "$(pf_driver)" = igb
sriov_init 3
check "rebind: 3 VFs again" test "$(vf_count)" = 3
VF3=$(echo $VFS | cut -d' ' -f3)
hold $VF3 94
check "rebind: $VF3 leased again to VM 94 on vfio-pci" test "$(vf_field $VF3 vm_id)" = 94 -a "$(vf_field $VF3 driver)" = vfio-pci
kill $pid; wait $pid 2>/dev/null
check "rebind: the lease ends with its holder, $VF3 back on igbvf" wait_vf $VF3 driver igbvf
check "rebind: and free again (phase host)" wait_vf $VF3 phase host

# 2. The PF's driver unbound while a lease is being taken (the VF moving to vfio-pci), the
# unbind started 0..90 ms after the lease: whatever the interleaving, the lease either fails or is
# revoked, SR-IOV is disabled, nothing is left marked and the VFs lease again after a rebind.
for d in 0 10000 20000 30000 40000 60000 90000; do
    sriov_init 3
    VF3=$(echo $VFS | cut -d' ' -f3)
    : > /tmp/hold.out
    vd-itest sriov-hold --vf $VF3 --vm 97 > /tmp/hold.out 2>&1 &
    pid=$!
    usleep $d
    mark
    echo $PF > /sys/bus/pci/drivers/igb/unbind || fail "race $d: unbind igb"
    sleep 0.2
    kill $pid 2>/dev/null; wait $pid 2>/dev/null
    echo "race $d us: holder said: $(tr '\n' ' ' < /tmp/hold.out)"
    [ "$(cat /sys/bus/pci/devices/$PF/sriov_numvfs)" = 0 ] || fail "race $d: SR-IOV still enabled after the unbind"
    [ -z "$(ls -d /sys/bus/pci/devices/$PF/virtfn* 2>/dev/null)" ] || fail "race $d: VFs left behind"
    [ "$(vf_count)" = 0 ] || fail "race $d: VFs still listed"
    no_log "will not be deallocated" || fail "race $d: igb refused to deallocate the VFs"
    echo $PF > /sys/bus/pci/drivers/igb/bind || fail "race $d: bind igb"
done
echo "ok: race: 7 unbinds 0..90 ms into a lease, SR-IOV disabled every time"
echo "(leases revoked in the middle of their move: $(dmesg | grep -c 'revoked while moving'))"
sriov_init 3
VF3=$(echo $VFS | cut -d' ' -f3)
check "race: afterwards no VF is marked assigned or leased" test -z "$(vdctl sriov list --json | grep -e '"assigned": true' -e '"vm_id": [0-9]')"
hold $VF3 98
check "race: $VF3 leases again (VM 98)" test "$(vf_field $VF3 vm_id)" = 98 -a "$(vf_field $VF3 driver)" = vfio-pci
kill $pid; wait $pid 2>/dev/null
check "race: $VF3 back on igbvf" wait_vf $VF3 driver igbvf
check "race: and free again (phase host)" wait_vf $VF3 phase host

# 3. The PF removed (echo 1 > remove) with a VF leased: the same path (pci_stop_dev unbinds
# igb first), then the PF is deleted; a rescan brings it back.
hold $VF3 95
mark
echo 1 > /sys/bus/pci/devices/$PF/remove || fail "remove $PF"
check "remove: the holder got a revoked event" wait_revoked $VF3 95
check "remove: the PF is gone" test ! -e /sys/bus/pci/devices/$PF
check "remove: no VF device left on the bus" test ! -e /sys/bus/pci/devices/$VF3
check "remove: no VFs and no PF listed" test "$(vf_count)" = 0 -a "$(vdctl sriov list --json | grep -c '"total_vfs"')" = 0
check "remove: igb did not refuse to deallocate the VFs" no_log "will not be deallocated"
check "remove: the PCI core found no SR-IOV left enabled" no_log "left SR-IOV enabled"
kill $pid; wait $pid 2>/dev/null
echo 1 > /sys/bus/pci/rescan
wait_for "rescan: the PF is back" 10 sh -c "vdctl sriov list --json | grep -q '\"total_vfs\"'"
sriov_init 3
VF3=$(echo $VFS | cut -d' ' -f3)
hold $VF3 96
check "rescan: $VF3 leased again to VM 96" test "$(vf_field $VF3 vm_id)" = 96 -a "$(vf_field $VF3 driver)" = vfio-pci
kill $pid; wait $pid 2>/dev/null
check "rescan: $VF3 back on igbvf" wait_vf $VF3 driver igbvf
check "rescan: and free again (phase host)" wait_vf $VF3 phase host

# vd-timeout: 900
# A VF moved between two running real guests by vdd, with net_failover (issue 14, item 1).
# Two stock QEMU guests, each with a standby virtio-net NIC (failover=on, on a tap in a bridge
# with the igb PF; the test VM's address is on the bridge) and the guest kernel's net_failover.
# Guest A starts with VF 0 (vfio-pci, failover_pair_id), leased to VM 1; guest B waits for a VF
# (VM 2). Each guest answers a UDP probe from the test VM (`vd-itest udp-probe`: numbered
# datagrams, echoed; lost datagrams and the longest silence are the switch gap).
#  1. Traffic flows: A's through the VF (its tap carries almost none of it), B's through its tap.
#  2. A's probe slows under the module's threshold: A is idle, vd_sriov_mgr proposes A -> B and
#     vdd carries it out on the real QEMUs: lease swap, device_del on A (ACPI hot-unplug in the
#     guest), A's standby link up + announce-self, the VF gets B's standby MAC, device_add on B.
#     B's traffic moves onto the VF, A's onto its tap, both probes keep getting echoes.
#  3. Back: B slows down, A waits, the VF goes back to A the same way.
# What happens when a move goes wrong (vdd killed mid-move, a failed device_add, a guest that
# never releases its VF): 8f-guest-vf-recovery.
# The probes' reports give each switch's gap (lost datagrams, longest silence).
. ./lib.sh
. ./guest-lib.sh
. ./sriov-lib.sh
. ./vfmove-lib.sh
WB=; WA=; D=
vfm_more_pids() { echo $D $WB $WA; }
vfm_start 8e
mark "step 1: guests up, probes on"
check "guest A's traffic goes through the VF" via A vdtapA vf
check "guest B's traffic goes through its tap (no VF)" via B vdtapB tap

mark "step 2: vdd moves the VF from A to B"
# 2. vdd moves the VF from A (idle) to B (waiting). The module samples the passed-through VF's
# traffic from the PF's per-VF mirror counters.
vfm_vdd_conf
wait_for "the module measures guest A's VF traffic over the threshold" 30 busy
vdd --config $W/vdd.toml > $W/vdd.log 2>&1 & D=$!
wait_for "vdd answers" 10 vdctl daemon status
wait_for "vdd's SR-IOV policy is up" 10 grep -q "SR-IOV policy up" $W/vdd.log
vd-itest vdd-waiter --vm 2 > $W/waitB.out 2>&1 & WB=$!
wait_line $W/waitB.out '^WAITING' 10
wait_for "vdd saw VM 2 waiting" 10 grep -q "VM 2 waits for a VF" $W/vdd.log
check "while guest A is busy it keeps the VF" test "$(vf_field $VF vm_id)" = 1
stop_probe A; probe A $IPA 200000
moved_to() { test "$(vf_field $VF vm_id)" = "$1" && grep -q "reassignment of $VF from VM $2 to VM $1 done" $W/vdd.log; }
wait_move "guest A's probe slowed under the threshold: vdd moves the VF to guest B" $(guest_secs 60) moved_to 2 1
grep "SR-IOV" $W/vdd.log
check "vdd gave the VF guest B's standby MAC" grep -q "$VF's MAC is now $MACB (VM 2's net0)" $W/vdd.log
wait_for "guest B's VF is up under its failover master" $(guest_secs 60) vf_up_in B
pin_vf_irqs B
wait_for "guest A is left with its standby NIC" 10 standby_only A
check "guest B's traffic goes through the VF" via B vdtapB vf
check "guest A's traffic goes through its tap" via A vdtapA tap

mark "step 3: and back"
# 3. And back: B slows down, A waits.
stop_probe B; probe B $IPB 200000
stop_probe A; probe A $IPA 10000
vd-itest vdd-waiter --vm 1 > $W/waitA.out 2>&1 & WA=$!
wait_line $W/waitA.out '^WAITING' 10
wait_move "guest B idle, guest A waiting: vdd moves the VF back to guest A" $(guest_secs 60) moved_to 1 2
check "vdd gave the VF guest A's standby MAC" grep -q "$VF's MAC is now $MACA (VM 1's net0)" $W/vdd.log
wait_for "guest A's VF is up again" $(guest_secs 60) vf_up_in A
pin_vf_irqs A
wait_for "guest B is left with its standby NIC" 10 standby_only B
check "guest A's traffic goes through the VF again" via A vdtapA vf
check "guest B's traffic goes through its tap again" via B vdtapB tap

vfm_end

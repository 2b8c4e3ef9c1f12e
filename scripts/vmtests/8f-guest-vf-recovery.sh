# vd-timeout: 900
# vdd's VF moves between two running real guests when things go wrong (issue 14, item 1; the
# moves themselves: 8e-guest-vf-failover). The guests, network and probes are 8e's
# (vfmove-lib.sh): guest A starts with VF 0 (leased to VM 1), guest B waits with its standby NIC.
#  1. vdd is killed (SIGKILL) mid-reassignment (A -> B, A's vCPUs stopped so that its unplug
#     cannot finish), then restarted: it finishes the move (the lease is B's): the VF leaves A
#     and goes into B, nothing is leased twice, both guests keep a NIC.
#  2. Rollback on a real QEMU: a third VM (a paused QEMU whose vf_bus does not exist) waits;
#     device_add fails there, vdd plugs the VF back into B with B's MAC and the lease returns.
#  3. A guest that never releases its VF (a paused QEMU with VF 1): device_del times out, vdd
#     rolls back and reports it, A and B keep working.
. ./lib.sh
. ./guest-lib.sh
. ./sriov-lib.sh
. ./vfmove-lib.sh
WB2=; W3=; D=; Q3=; Q4=; H4=
vfm_more_pids() { echo $D $H4 $WB2 $W3 $Q3 $Q4; }
vfm_start 8f
check "guest A's traffic goes through the VF" via A vdtapA vf
vfm_vdd_conf
cat >> $W/vdd.toml <<EOT
[[vm]]
id = 3
qmp = "$W/C.qmp"
vf_bus = "nosuchbus"
[[vm]]
id = 4
qmp = "$W/D.qmp"
vf_bus = "vdrp0"
EOT
wait_for "the module measures guest A's VF traffic over the threshold" 30 busy
vdd --config $W/vdd.toml > $W/vdd.log 2>&1 & D=$!
wait_for "vdd answers" 10 vdctl daemon status
wait_for "vdd's SR-IOV policy is up" 10 grep -q "SR-IOV policy up" $W/vdd.log
check "while guest A is busy it keeps the VF" test "$(vf_field $VF vm_id)" = 1

mark "step 1: SIGKILL mid-swap"
# 1. vdd killed (SIGKILL) in the middle of a reassignment, then restarted: it finishes it.
# Guest A's vCPUs are stopped first (QMP stop), so its guest cannot complete the hot-unplug:
# vdd is killed after the lease moved (step 1) and before the VF left A, by construction.
vd-itest vdd-waiter --vm 2 > $W/waitB2.out 2>&1 & WB2=$!
wait_line $W/waitB2.out '^WAITING' 10
c0=$(grep -c "step 1/4: lease of $VF swapped from VM 1" $W/vdd.log)
c2=$(grep -c "step 2/4: device_del vdvf0 done on VM 1" $W/vdd.log)
vd-itest qmp-vcpus --qmp $W/A.qmp stop || fail "QMP stop on guest A"
stop_probe A; probe A $IPA 200000
step1_again() { [ "$(grep -c "step 1/4: lease of $VF swapped from VM 1" $W/vdd.log)" -gt $c0 ]; }
wait_for "guest A (stopped) is idle: vdd swaps the lease to VM 2 and asks A's QEMU to unplug" 60 step1_again
kill -KILL $D; wait $D 2>/dev/null; D=
check "vdd was killed before the VF left guest A" test "$(grep -c "step 2/4: device_del vdvf0 done on VM 1" $W/vdd.log)" = $c2
check "the module moved the lease to VM 2 (step 1), and to no one else" test "$(vf_field $VF vm_id)" = 2
vd-itest qmp-vcpus --qmp $W/A.qmp cont || fail "QMP cont on guest A"
vdd --config $W/vdd.toml > $W/vdd2.log 2>&1 & D=$!
wait_for "the restarted vdd answers" 10 vdctl daemon status
wait_for "the restarted vdd finishes the reassignment: $VF plugged into VM 2" $(guest_secs 60) \
    grep -q "recovery: $VF plugged into VM 2" $W/vdd2.log
grep "SR-IOV" $W/vdd2.log
wait_for "guest B's VF is up" $(guest_secs 60) vf_up_in B
pin_vf_irqs B
wait_for "guest A is left with its standby NIC" $(guest_secs 30) standby_only A
check "the VF is leased once, to VM 2" test "$(vdctl sriov list --json | grep -c "\"vm_id\": 2,")" = 1
check "guest B's traffic goes through the VF" via B vdtapB vf
check "guest A's traffic goes through its tap" via A vdtapA tap

mark "step 2: rollback on a failed device_add"
# 2. A failed device_add on a real QEMU is rolled back: VM 3 is a paused QEMU whose configured
# vf_bus does not exist; B (now idle) is proposed for it.
qemu-system-x86_64 -M q35 -S -nodefaults -display none -qmp unix:$W/C.qmp,server=on,wait=off > $W/C.out 2>&1 < /dev/null & Q3=$!
_GL_PIDS="$_GL_PIDS $Q3"
wait_for "QEMU C's QMP socket" 20 test -S $W/C.qmp
stop_probe B; probe B $IPB 200000
vd-itest vdd-waiter --vm 3 > $W/wait3.out 2>&1 & W3=$!
wait_line $W/wait3.out '^WAITING' 10
wait_for "the move to VM 3 fails at device_add and is rolled back" $(guest_secs 60) \
    grep -q "reassignment of $VF from VM 2 to VM 3 failed .* and was rolled back" $W/vdd2.log
grep "SR-IOV" $W/vdd2.log | tail -12
check "QEMU refused the device_add (bus nosuchbus)" grep -q "device_add on VM 3: .*nosuchbus" $W/vdd2.log
check "the lease is back with VM 2" test "$(vf_field $VF vm_id)" = 2
check "vdd gave the VF guest B's MAC back" grep -q "$VF's MAC is now\|rollback: $VF plugged back into VM 2" $W/vdd2.log
wait_for "guest B's VF is up after the rollback" $(guest_secs 60) vf_up_in B
pin_vf_irqs B
stop_probe B; probe B $IPB 10000
check "guest B's traffic goes through the VF after the rollback" via B vdtapB vf

mark "step 3: a guest that never releases its VF"
# 3. A guest that does not release its VF: VM 4 is a paused QEMU (its vCPUs never run, so its
# ACPI hot-unplug never completes) with VF 1, leased to it. Idle, it is proposed for VM 3 (still
# waiting, through vdd's file since the rollback); device_del times out, vdd rolls the lease
# back and says so; guests A and B keep working.
VF2=$(echo $VFS | cut -d' ' -f2)
vd-itest sriov-hold --vf $VF2 --vm 4 > $W/hold4.out 2>&1 & H4=$!
wait_line $W/hold4.out LEASED 20
qemu-system-x86_64 -M q35 -S -nodefaults -display none -m 64 -qmp unix:$W/D.qmp,server=on,wait=off \
    -device pcie-root-port,id=vdrp0,chassis=2,slot=2 -device vfio-pci,host=$VF2,id=vdvf0,bus=vdrp0 \
    > $W/D.out 2>&1 < /dev/null & Q4=$!
_GL_PIDS="$_GL_PIDS $Q4"
wait_for "QEMU D's QMP socket" 20 test -S $W/D.qmp
wait_for "vdd gives up on VM 4's unplug and rolls back" $(( $(guest_secs 15) + 60 )) \
    grep -q "reassignment of $VF2 from VM 4 to VM 3 failed .* and was rolled back" $W/vdd2.log
grep "SR-IOV" $W/vdd2.log | tail -8
check "vdd reported that VM 4's guest did not release $VF2" grep -q "VM 4's guest did not release $VF2" $W/vdd2.log
check "the lease of $VF2 is back with VM 4" test "$(vf_field $VF2 vm_id)" = 4
check "vdd counts the two failed reassignments" sh -c "vdctl --json daemon status | grep -q '\"failures_total\": 2'"
check "guest B's traffic still goes through its VF" via B vdtapB vf
check "guest A's traffic still goes through its tap" via A vdtapA tap

vfm_end

# vdd's SR-IOV policy against the real vd_sriov_mgr on the igb PF, with fake QEMUs (QMP peers from
# vd-itest fake-qmp) standing in for the VMMs: VM 1 holds a VF (netdev lease) while frames go out
# of it; VM 2 waits. While traffic flows nothing moves; when it stops the module makes VM 1 a
# candidate and vdd swaps the lease, unplugs the VF from VM 1's QEMU (device_del, then set_link
# up and announce-self of its standby NIC), gives the VF VM 2's standby MAC (qom-get, then
# rtnetlink on the real PF) and plugs it into VM 2's QEMU (device_add vfio-pci,
# failover_pair_id), in that order. A waiter without a [[vm]] entry is left alone with a log line; a failing device_add is
# rolled back (VF plugged back into the old holder, lease back).
. ./lib.sh
. ./sriov-lib.sh
line_has() { # line_has N FILE PATTERN...: line N of FILE contains every (fixed) PATTERN
    l=$(sed -n "$1p" "$2"); shift 2
    for p in "$@"; do case "$l" in *"$p"*) ;; *) echo "line lacks $p: $l"; return 1;; esac; done
}
W=/tmp/vdds; rm -rf $W; mkdir -p $W
D=; Q=; H1=; W2=; W3=; W4=; W5=; TX=
trap 'kill $D $Q $H1 $W2 $W3 $W4 $W5 $TX 2>/dev/null' EXIT

sriov_init 0
pfnd=$(ls /sys/bus/pci/devices/$PF/net | head -1)
ip link set "$pfnd" up || fail "PF $pfnd up"
poll 20 carrier_is $pfnd 1 || fail "no carrier on PF $pfnd"
sriov_init 3
nd=$(vf_field $VF netdev)
ip link set "$nd" up || fail "VF $nd up"
poll 20 carrier_is $nd 1 || fail "no carrier on $nd"
echo "ok: VF $VF ($nd) has carrier"
check "module policy set (20 kB/s threshold, 1 s window, 0.5 s minimum hold)" \
    sh -c 'vdctl sriov policy --threshold 20000 --hysteresis 10000 --window-ms 1000 --min-hold-ms 500 --sample-ms 100 > /dev/null'

vd-itest fake-qmp --vm vm1=$W/vm1.qmp --vm vm2=$W/vm2.qmp --vm vm3=$W/vm3.qmp --fail-device-add vm3 --log $W/qmp.log > $W/fake.out 2>&1 & Q=$!
wait_line $W/fake.out '^ready' 10
vdd_conf $W
cat >> $W/vdd.toml <<EOT
metrics = "127.0.0.1:9478"
[sriov]
unplug_timeout_ms = 3000
retry_ms = 600000
[[vm]]
id = 1
qmp = "$W/vm1.qmp"
standby_nic = "net0"
[[vm]]
id = 2
qmp = "$W/vm2.qmp"
standby_nic = "net0"
[[vm]]
id = 3
qmp = "$W/vm3.qmp"
vf_device = "hostdev3"
EOT
check "vdd --check-config accepts the [[vm]] tables" vdd --check-config $W/vdd.toml
printf '[[vm]]\nid = 1\nqmp = "%s"\n[[vm]]\nid = 1\nqmp = "/x"\n' $W/a > $W/bad.toml
check "vdd --check-config rejects a VM id given twice" sh -c "vdd --check-config $W/bad.toml 2>&1 | grep -q 'appears twice'"
export VDD_SOCKET=$W/vdd.sock

# VM 1 holds the VF while frames flow; vdd starts; VM 2 waits.
tx0=$(cat /sys/class/net/$nd/statistics/tx_packets)
vd-itest send-frames --ifname $nd --rate 200000 --secs 4 > $W/tx.out 2>&1 & TX=$!
tx_moved() { [ "$(cat /sys/class/net/$nd/statistics/tx_packets)" -gt $tx0 ]; }
poll 5 tx_moved || fail "no frame left $nd: $(cat $W/tx.out)"
vd-itest sriov-hold --vf $VF --vm 1 --keep-host > $W/hold1.out 2>&1 & H1=$!
wait_line $W/hold1.out '^LEASED' 10
vdd --config $W/vdd.toml > $W/vdd.log 2>&1 & D=$!
wait_for "vdd answers" 10 vdctl daemon status
wait_for "vdd's SR-IOV policy is up on the real module" 5 grep -q "SR-IOV policy up on /dev/vd_sriov" $W/vdd.log
vd-itest vdd-waiter --vm 2 > $W/wait2.out 2>&1 & W2=$!
wait_line $W/wait2.out '^WAITING' 10
# The state the next checks need: the module has a whole window of VM 1's usage (rate valid) at or
# over the threshold while VM 2 waits, so VM 1 is no candidate and nothing may move.
busy() { r=$(vf_field $VF rate_bps); [ -n "$r" ] && [ "$r" != null ] && [ "$r" -ge 20000 ] 2>/dev/null; }
wait_for "the module measured VM 1 busy over a window while VM 2 waits" 5 busy
check "while traffic flows VM 1 keeps the VF" test "$(vf_field $VF vm_id)" = 1
check "while traffic flows no QMP command was sent" sh -c "! grep -v qmp_capabilities $W/qmp.log 2>/dev/null | grep -q execute"
wait $TX; TX=; cat $W/tx.out
t0=$(cut -d' ' -f1 /proc/uptime)
vm_is() { test "$(vf_field $VF vm_id)" = "$1"; }
wait_for "after the traffic stops vdd moves the VF to VM 2" 20 vm_is 2
echo "moved $(awk -v a=$t0 '{printf "%.1f", $1 - a}' /proc/uptime) s after the traffic stopped (window 1 s)"
# The lease moves at step 1 (the swap); the QMP steps follow: wait for them (the last is
# device_add on VM 2).
qmp_done() { grep '"vm":"vm2"' $W/qmp.log 2>/dev/null | grep -q '"execute":"device_add"'; }
wait_for "vdd went through the QMP steps" 20 qmp_done
grep "SR-IOV" $W/vdd.log
grep -v qmp_capabilities $W/qmp.log > $W/cmds.log; cat $W/cmds.log
check "vdd logged the candidate event" grep -q "VM 1 is a reassignment candidate on $VF" $W/vdd.log
check "swap first (log)" grep -q "step 1/4: lease of $VF swapped from VM 1 .* to VM 2" $W/vdd.log
check "five QMP commands" test "$(wc -l < $W/cmds.log)" = 5
check "1st: device_del of the VF on VM 1" line_has 1 $W/cmds.log '"vm":"vm1"' '"execute":"device_del"' '"arguments":{"id":"vdvf0"}'
check "2nd: set_link net0 up on VM 1" line_has 2 $W/cmds.log '"vm":"vm1"' '"execute":"set_link"' '"arguments":{"name":"net0","up":true}'
check "3rd: announce-self on VM 1's net0" line_has 3 $W/cmds.log '"vm":"vm1"' '"execute":"announce-self"' '"interfaces":["net0"]'
check "4th: qom-get of VM 2's standby NIC's MAC" line_has 4 $W/cmds.log '"vm":"vm2"' '"execute":"qom-get"' '"property":"mac"'
check "vdd set the VF's MAC to it through the PF" grep -q "$VF's MAC is now 52:54:00:76:64:01 (VM 2's net0)" $W/vdd.log
check "5th: device_add vfio-pci of the VF on VM 2 with failover_pair_id" line_has 5 $W/cmds.log '"vm":"vm2"' '"execute":"device_add"' '"driver":"vfio-pci"' "\"host\":\"$VF\"" '"id":"vdvf0"' '"failover_pair_id":"net0"'
check "vdd says the reassignment is done" grep -q "reassignment of $VF from VM 1 to VM 2 done" $W/vdd.log
wait_for "VM 2's file got the swapped event" 5 grep -q "EVENT swapped $VF vm 2 other 1" $W/wait2.out
wait_for "daemon status counts it" 10 sh -c "vdctl --json daemon status | grep -q '\"reassignments_total\": 1'"
wget -q -O- http://127.0.0.1:9478/metrics | grep vdd_sriov
check "metrics: VM 2 holds the VF, one reassignment" sh -c "wget -q -O- http://127.0.0.1:9478/metrics > $W/m.txt && grep -q 'vdd_sriov_vf_holder{vf=\"$VF\",vm=\"2\"} 1' $W/m.txt && grep -q '^vdd_sriov_reassignments_total 1' $W/m.txt && grep -q '^vdd_sriov_up 1' $W/m.txt"

# A waiter without a [[vm]] entry: left alone, one log line.
vd-itest vdd-waiter --vm 4 > $W/wait4.out 2>&1 & W4=$!
wait_line $W/wait4.out '^WAITING' 10
wait_for "VM 4 (no [[vm]]) is skipped with a log line once VM 2 is idle" 10 grep -q "not reassigning $VF from VM 2 .* to waiting VM 4: VM 4 has no \[\[vm\]\] entry" $W/vdd.log
# vdd looks at the proposals again at its next module event: make one (another waiter, also
# without a [[vm]] entry) and wait until vdd has handled it, then the line must still be single.
vd-itest vdd-waiter --vm 5 > $W/wait5.out 2>&1 & W5=$!
wait_line $W/wait5.out '^WAITING' 10
wait_for "vdd handled the next event (VM 5 waits)" 10 grep -q "SR-IOV event: VM 5 waits for a VF" $W/vdd.log
check "... and logged once" test "$(grep -c 'to waiting VM 4' $W/vdd.log)" = 1
check "VM 2 keeps the VF" test "$(vf_field $VF vm_id)" = 2
check "no QMP command for it" test "$(grep -vc qmp_capabilities $W/qmp.log)" = 5
kill $W4 $W5; wait $W4 $W5 2>/dev/null; W4=; W5=

# A failing device_add on the new holder (VM 3) is rolled back.
vd-itest vdd-waiter --vm 3 > $W/wait3.out 2>&1 & W3=$!
wait_line $W/wait3.out '^WAITING' 10
wait_for "the failed reassignment to VM 3 is rolled back" 15 grep -q "reassignment of $VF from VM 2 to VM 3 failed .* and was rolled back" $W/vdd.log
grep "SR-IOV" $W/vdd.log | tail -12
grep -v qmp_capabilities $W/qmp.log | tail -n +6 > $W/cmds2.log; cat $W/cmds2.log
check "rollback 1: device_del on VM 2" line_has 1 $W/cmds2.log '"vm":"vm2"' '"execute":"device_del"'
check "rollback 2: set_link up on VM 2" line_has 2 $W/cmds2.log '"vm":"vm2"' '"execute":"set_link"'
check "rollback 3: announce-self on VM 2" line_has 3 $W/cmds2.log '"vm":"vm2"' '"execute":"announce-self"'
check "rollback 4: device_add on VM 3 (fails; VM 3 has no standby NIC, so no MAC)" line_has 4 $W/cmds2.log '"vm":"vm3"' '"execute":"device_add"' '"id":"hostdev3"'
check "rollback 5: qom-get of VM 2's standby MAC (the VF gets it back)" line_has 5 $W/cmds2.log '"vm":"vm2"' '"execute":"qom-get"'
check "rollback 6: device_add back on VM 2" line_has 6 $W/cmds2.log '"vm":"vm2"' '"execute":"device_add"' "\"host\":\"$VF\"" '"id":"vdvf0"'
check "rollback: nothing else" test "$(wc -l < $W/cmds2.log)" = 6
check "the lease is back with VM 2" test "$(vf_field $VF vm_id)" = 2
check "VM 3 waits again" sh -c "vdctl --json sriov policy | tr -d ' \n' | grep -q '\"kind\":\"waiter\",\"vf\":null,\"vm_id\":3,'"
check "daemon status counts the failure" sh -c "vdctl --json daemon status | grep -q '\"failures_total\": 1'"

# Clean shutdown.
kill -TERM $D; wait $D; rc=$?; D=
check "vdd exits 0 on SIGTERM (rc=$rc)" test $rc = 0
kill $W3 $W2 $H1 2>/dev/null; wait $W3 $W2 $H1 2>/dev/null; W3=; W2=; H1=
kill $Q; wait $Q 2>/dev/null; Q=
wait_for "every lease ended" 15 sh -c "! vdctl sriov list --json | grep -q '\"vm_id\": [1-9]'"
vdctl sriov policy --threshold 65536 --hysteresis 16384 --window-ms 5000 --min-hold-ms 5000 --sample-ms 250 > /dev/null

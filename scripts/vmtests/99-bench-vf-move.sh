# vd-timeout: 1500
# make bench (issue 14): a VF moved between two running real guests with net_failover, by vdd and
# by the same steps as an operator's shell script (vf-move-qmp.sh: QMP through socat, vdctl for
# the lease and the MAC), in one boot: VD_VFMOVE_ROUNDS (3) rounds, each one move by vdd from A
# to B (A's probe stopped: the module finds A idle and proposes the VF to B, which waits) and
# one by the script back from B to A (vdd stopped meanwhile; restarted after it, its restart
# recovery must find nothing to do). The guests and the network are 8e-guest-vf-failover's
# (vfmove-lib.sh); nested KVM. Per move:
# - decision -> VF traffic: from the decision (vdd: its `last_move.decided_unix_us`, when it had
#   the module's proposal in hand; the script: its start) to the new holder's first frames
#   through its VF (the PF's rx_packets up by 5: with the old holder silent, only the new
#   holder's echoes reach the test VM through the PF; `vd-itest counter-rise`, 200 us polls);
# - decision -> device_add answered, and its steps (vdd: `vdctl daemon status`'s last move; the
#   script: its STEP lines): lease, unplug (device_del to DEVICE_DELETED: the old guest's ACPI
#   hot-unplug), standby (set_link + announce-self), MAC (qom-get + IFLA_VF_MAC), plug (device_add);
# - the gap the new holder's guest saw: its probe (a datagram every 10 ms) from before the move
#   until 200 echoes after the VF's traffic began: datagrams lost and the longest silence.
# Printed: one line per move, the medians per method and their ratios script/vdd. Not pass/fail
# on the numbers; a move that does not complete fails the bench. Results: README, Performance.
. ./lib.sh
. ./guest-lib.sh
. ./sriov-lib.sh
. ./vfmove-lib.sh
rounds=${VD_VFMOVE_ROUNDS:-3}
D=; RW=; WAITERS=
vfm_more_pids() { echo $D $RW $WAITERS; }
vfm_start bench-vf-move
vfm_vdd_conf
pfrx=/sys/class/net/$pfnd/statistics/rx_packets
nv=0
start_vdd() {
    nv=$((nv + 1))
    vdd --config $W/vdd.toml > $W/vdd-$nv.log 2>&1 & D=$!
    wait_for "vdd answers" 10 vdctl daemon status
    wait_for "vdd's SR-IOV policy is up" 10 grep -q "SR-IOV policy up" $W/vdd-$nv.log
}
stop_vdd() { kill -TERM $D; wait $D; rc=$?; D=; [ $rc = 0 ] || fail "vdd exited $rc: $(tail -5 $W/vdd-$nv.log)"; }
waiter() { # waiter VM ROUND: VM waits for a VF (and holds what it gets until the end)
    vd-itest vdd-waiter --vm $1 > $W/wait-$1-$2.out 2>&1 & WAITERS="$WAITERS $!"
    wait_line $W/wait-$1-$2.out '^WAITING' 10
}
watch_rise() { # starts the watcher of the PF's rx_packets (the new holder's frames via its VF)
    vd-itest counter-rise --path $pfrx --delta 5 --secs $(guest_secs 120) > $W/rise-$1.out 2>&1 & RW=$!
    wait_line $W/rise-$1.out '^START' 10
}
rise_us() { # after the watcher: when the VF's traffic began (unix us)
    wait $RW || fail "no frames through the VF: $(cat $W/rise-$1.out)"; RW=
    grep -o '"rise_unix_us":[0-9]*' $W/rise-$1.out | cut -d: -f2
}
# after_rise NAME: 200 echoes more after the VF's traffic began, then the probe's report.
after_rise() {
    r=$(received $1)
    wait_for "200 more echoes from guest $1 on its VF" $(guest_secs 60) echoes_over $1 $((r + 200))
    stop_probe $1 > $W/gap.json
}
jnum() { grep -o "\"$1\": *[0-9.]*" "$2" | head -1 | sed 's/.*: *//'; }
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

: > $W/res
start_vdd
for k in $(seq 1 $rounds); do
    mark "round $k: vdd moves the VF from A to B"
    stop_probe A > /dev/null; stop_probe B > /dev/null; probe B $IPB 10000
    wait_for "guest B echoes" $(guest_secs 30) echoes_over B 50
    watch_rise vdd-$k
    n0=$(grep -c "reassignment of $VF from VM 1 to VM 2 done" $W/vdd-$nv.log)
    waiter 2 $k
    moved() { [ "$(grep -c "reassignment of $VF from VM 1 to VM 2 done" $W/vdd-$nv.log)" -gt $n0 ]; }
    wait_move "guest A idle, guest B waiting: vdd moves the VF to B" $(guest_secs 90) moved
    vdctl --json daemon status > $W/status.json
    rise=$(rise_us vdd-$k)
    wait_for "guest B's VF is up under its failover master" $(guest_secs 60) vf_up_in B
    pin_vf_irqs B
    wait_for "guest A is left with its standby NIC" $(guest_secs 30) standby_only A
    after_rise B
    dec=$(jnum decided_unix_us $W/status.json)
    echo "vdd $k $(ms_between $dec $rise) $(jnum total_ms $W/status.json) $(jnum lease_ms $W/status.json)" \
        "$(jnum unplug_ms $W/status.json) $(jnum standby_ms $W/status.json) $(jnum mac_ms $W/status.json)" \
        "$(jnum plug_ms $W/status.json) $(jnum lost $W/gap.json) $(jnum max_silence_ms $W/gap.json)" >> $W/res
    tail -1 $W/res

    mark "round $k: the script moves the VF back from B to A"
    stop_vdd
    stop_probe B > /dev/null; probe A $IPA 10000
    wait_for "guest A echoes" $(guest_secs 30) echoes_over A 50
    watch_rise script-$k
    waiter 1 $k
    sh ./vf-move-qmp.sh $VF 2 $W/B.qmp 1 $W/A.qmp net0 vdrp0 vdvf0 > $W/script-$k.out 2>&1 \
        || fail "the script's move failed: $(cat $W/script-$k.out)"
    rise=$(rise_us script-$k)
    wait_for "guest A's VF is up under its failover master" $(guest_secs 60) vf_up_in A
    pin_vf_irqs A
    wait_for "guest B is left with its standby NIC" $(guest_secs 30) standby_only B
    after_rise A
    st() { awk -v s="$1" '$1 == "STEP" && $2 == s { print $3 } $1 == s { print $2 }' $W/script-$k.out; }
    echo "script $k $(ms_between $(st BEGIN) $rise) $(ms_between $(st BEGIN) $(st DONE)) $(ms_between $(st BEGIN) $(st lease))" \
        "$(ms_between $(st lease) $(st unplug)) $(ms_between $(st unplug) $(st standby)) $(ms_between $(st standby) $(st mac))" \
        "$(ms_between $(st mac) $(st plug)) $(jnum lost $W/gap.json) $(jnum max_silence_ms $W/gap.json)" >> $W/res
    tail -1 $W/res
    check "the lease is VM 1's again" test "$(vf_field $VF vm_id)" = 1
    start_vdd
    wait_for "the restarted vdd's recovery pass" 30 grep -q "SR-IOV: recovery: every VF\|SR-IOV: recovery done" $W/vdd-$nv.log
    check "the restarted vdd finds every VF where its lease is" grep -q "SR-IOV: recovery: every VF is where its lease is" $W/vdd-$nv.log
done
stop_vdd
stop_probe A > /dev/null

echo "BENCH vf-move: a VF between two running stock QEMU guests (net_failover, nested KVM), $rounds moves by vdd (A -> B) and $rounds by a shell script (B -> A)"
echo "  by      round  decision->VF traffic ms  decision->plugged ms  (lease  unplug  standby  MAC  plug)  lost  max silence ms"
awk '{ printf "  %-6s  %5s  %23s  %20s  (%s  %s  %s  %s  %s)  %4s  %14s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 }' $W/res
med() { awk -v m=$1 -v k=$2 '$1 == m { print $k }' $W/res | sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) exit 1; if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
for col in "3 decision->VF traffic" "4 decision->plugged" "6 unplug" "9 plug" "10 lost datagrams" "11 longest silence"; do
    k=${col%% *}; what=${col#* }
    v=$(med vdd $k); s=$(med script $k)
    echo "  median $what: vdd $v, script $s$(awk -v v=$v -v s=$s 'BEGIN { if (v > 0) printf ", script/vdd %.2fx", s / v }')"
done

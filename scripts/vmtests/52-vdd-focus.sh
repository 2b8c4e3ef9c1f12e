# vdd's input focus: `vdctl focus VM_ID` (and `vdctl input focus`) go through vdd while it runs;
# vdd calls VDI_IOC_FOCUS on vd_input_irq, records the focused VM (status, metrics) and exports
# the per-VM input queue depths (VDI_IOC_STATS). Two stand-in VMMs with events queued behind
# their stopped vCPUs give real queues. Without vdd, vdctl goes to the module directly.
. ./lib.sh
load vd_input_irq
W=/tmp/vddf; rm -rf $W; mkdir -p $W
A=; B=; D=
trap 'kill -9 $A $B $D 2>/dev/null' EXIT
vd-itest input-hold --name "vdd-focus a" --vm 6201 > $W/a.out 2>&1 & A=$!
wait_line $W/a.out '^queued'
vd-itest input-hold --name "vdd-focus b" --vm 6202 > $W/b.out 2>&1 & B=$!
wait_line $W/b.out '^queued'
cat $W/a.out $W/b.out
da=$(sed -n 's/.*depth=\([0-9]*\).*/\1/p' $W/a.out)
check "VM 6201 has input queued behind its stopped vCPU (depth $da)" test "$da" -gt 0

vdd_conf $W
cat >> $W/vdd.toml <<EOT
metrics = "127.0.0.1:9479"
[[vm]]
id = 6202
qmp = "$W/vm6202.qmp"
EOT
export VDD_SOCKET=$W/vdd.sock
vdd --config $W/vdd.toml > $W/vdd.log 2>&1 & D=$!
wait_for "vdd answers" 10 vdctl daemon status
vdctl focus 6201 > $W/f.txt; rc=$?; cat $W/f.txt
check "vdctl focus 6201 goes through vdd (exit $rc)" sh -c "test $rc = 0 && grep -q 'focus on VM 6201 from the next frame on (through vdd' $W/f.txt"
check "vdd logged the request and the change" sh -c "grep -q 'control: focus VM 6201' $W/vdd.log && grep -q 'input focus: VM [0-9]* -> VM 6201 (VDI_IOC_FOCUS)' $W/vdd.log"
check "daemon status: focused VM 6201" sh -c "vdctl --json daemon status | grep -q '\"focused\": 6201'"
vdctl daemon status | grep -i input
wait_for "metrics: focused VM and VM 6201's queue depth $da" 5 sh -c "wget -q -O- http://127.0.0.1:9479/metrics > $W/m.txt && grep -q '^vdd_input_focused_vm 6201' $W/m.txt && grep -q 'vdd_input_queue_depth{vm=\"6201\"} $da' $W/m.txt"
check "metrics: the [[vm]] VM 6202's queue too" sh -c "grep -q 'vdd_input_queue_depth{vm=\"6202\"} [1-9]' $W/m.txt"
grep vdd_input $W/m.txt
vdctl --json input focus 6202 > $W/f.json; rc=$?; cat $W/f.json
check "vdctl input focus goes through vdd too: previous 6201" sh -c "test $rc = 0 && grep -q '\"vm_id\": 6202' $W/f.json && grep -q '\"previous\": 6201' $W/f.json"
check "daemon status: 2 focus changes" sh -c "vdctl --json daemon status | grep -q '\"focus_changes_total\": 2'"
vdctl focus 999999 > $W/e.txt 2>&1; rc=$?; cat $W/e.txt
check "focus on an unknown VM: the module's answer through vdd (exit $rc)" sh -c "test $rc != 0 && grep -q 'no VM with that id' $W/e.txt"
check "... and the focus record is unchanged" sh -c "vdctl --json daemon status | grep -q '\"focused\": 6202'"
kill -TERM $D; wait $D; rc=$?; D=
check "vdd exits 0 (rc=$rc)" test $rc = 0
vdctl focus 6201 > $W/f.txt 2> $W/f.err; rc=$?; cat $W/f.txt $W/f.err
check "without vdd vdctl focus goes to the module directly" sh -c "test $rc = 0 && grep -q 'vdd is not running' $W/f.err && grep -q 'focus on VM 6201' $W/f.txt"

for p in $A $B; do
    child=$(sed -n 's/.* child=\([0-9]*\).*/\1/p' $W/$( [ $p = $A ] && echo a || echo b).out)
    kill -9 $p; wait $p 2>/dev/null
    poll 5 test ! -d /proc/$child
done
A=; B=
check "unroute what the stand-ins left" sh -c 'vdctl input unroute --name "vdd-focus a" && vdctl input unroute --name "vdd-focus b"'

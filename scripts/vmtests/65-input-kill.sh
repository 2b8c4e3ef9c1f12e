# vd_input_irq: the VMM is killed (kill -9) while events wait in its queue behind a stopped
# vCPU: no object is left, no oops, the module unloads. One round kills the vCPU child first.
. ./lib.sh
load vd_input_irq
objects() { vdctl status --json | grep -A8 '"vd_input_irq"' | grep -o '"objects": [0-9]*' | grep -o '[0-9]*$'; }
pid=
trap 'kill -9 $pid 2>/dev/null' EXIT
for i in 1 2 3 4 5; do
    rm -f /tmp/hold.out
    vd-itest input-hold --vm $((6200 + i)) > /tmp/hold.out 2>&1 & pid=$!
    wait_line /tmp/hold.out '^queued'
    echo "  round $i: $(grep '^queued' /tmp/hold.out)"
    child=$(sed -n 's/.* child=\([0-9]*\).*/\1/p' /tmp/hold.out)
    if [ $i = 2 ]; then kill -9 "$child"; sleep 0.3; fi
    kill -9 $pid; wait $pid 2>/dev/null
    poll 5 test ! -d /proc/$child || fail "vCPU child $child outlived its VMM"
done
check "the route the stand-ins left can be removed" vdctl input unroute --name "vd-itest hold"
no_objects() { [ "$(objects)" = 0 ]; }
poll 5 no_objects
vdctl status
check "no vd_input_irq objects left after 5 killed VMMs (objects $(objects))" test "$(objects)" = 0
check "no hold device left" sh -c '! vdctl input list | grep -q "vd-itest hold"'
unload vd_input_irq
check "vd_input_irq unloaded" sh -c '! grep -q "^vd_input_irq " /proc/modules'

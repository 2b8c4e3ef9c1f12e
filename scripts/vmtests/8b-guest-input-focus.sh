# vd-timeout: 400
# Focus switching between two real guests under load (issue 13): two stock QEMU guests, each
# served by its own vd-ivshmem-server --input (VMs 44 and 45), read their evdev "vd-input" node
# (scripts/guest-input.sh with vd.input_tags=1). `vd-itest input-focus-guests` writes 1,000 tagged
# frames (a key, REL_X t, REL_Y -t, REL_WHEEL) through one routed uinput keyboard while it
# switches the focus between the two VMs, at least once per write by construction (the writer
# waits for a switch after each write of 1..7 frames); the guests' vCPU threads compete with the
# writer and the switcher for the test VM's two CPUs, so frames also wait in the module's queue.
# Checked: each guest got only whole frames, in rising order, and holds no key at the end (a key
# pressed before a switch is released by vd_input_irq in the guest the focus left, whose input
# core would otherwise keep it down); together they got every frame exactly once (count, sum and sum of squares of the tags add up to what was sent); the module
# dropped nothing; then both QEMUs exit, the module has no reference left and unloads.
. ./lib.sh
. ./guest-lib.sh
load vd_input_irq
for g in a b; do
    vm=$([ $g = a ] && echo 44 || echo 45)
    start_input_server foc$g $vm
    GUEST_APPEND="vd.input_tags=1" start_guest foc$g input-evdev $(vd_disk_args foc$g)
    eval qpid_$g=$GUEST_PID
done
for g in a b; do
    eval qp=\$qpid_$g
    poll 200 sh -c "grep -q 'VDGUEST-INFO input ready 1' /tmp/guest-foc$g.console || ! kill -0 $qp 2>/dev/null"
    grep -q 'VDGUEST-INFO input ready 1' /tmp/guest-foc$g.console \
        || { wait_guest foc$g; server_log foc$g; fail "guest $g never got ready: $GUEST_RESULT"; }
done
vd-itest input-focus-guests --vm-a 44 --vm-b 45 --frames 1000 > /tmp/focus-guests.out 2>&1; frc=$?
cat /tmp/focus-guests.out
check "the feeder switched the focus under load and the module dropped nothing (exit $frc)" test $frc = 0
want=$(sed -n 's/^FOCUS //p' /tmp/focus-guests.out)
tot=0; sum=0; sq=0
for g in a b; do
    wait_guest foc$g; rc=$?
    server_log foc$g > /dev/null
    check "guest $g read until its end marker ($GUEST_RESULT)" test $rc = 0
    r=$(echo "$GUEST_RESULT" | sed -n 's/.*round1: \([^;]*\);.*/\1/p')
    field() { echo " $r " | sed -n "s/.* $1=\([0-9-]*\) .*/\1/p"; }
    check "guest $g: only whole frames (split=$(field split)), in rising order (disorder=$(field disorder)), no SYN_DROPPED ($(field dropped)), no key stuck ($(field stuck); $(field released) released by the host when the focus left, $(field keyless) releases of keys pressed elsewhere ignored by the guest)" \
        test "$(field split)" = 0 -a "$(field disorder)" = 0 -a "$(field dropped)" = 0 -a "$(field stuck)" = 0
    check "guest $g got some of the frames ($(field tagged))" test "$(field tagged)" -gt 0
    tot=$((tot + $(field tagged))); sum=$((sum + $(field tagsum))); sq=$((sq + $(field tagsq)))
done
check "together the guests got every frame exactly once: frames=$tot tagsum=$sum tagsq=$sq (sent: $want)" \
    test "frames=$tot tagsum=$sum tagsq=$sq" = "$want"
stop_server foca; stop_server focb
wait_for "vd_input_irq has no reference left after both guests and servers" 20 sh -c '[ "$(cat /sys/module/vd_input_irq/refcnt)" = 0 ]'
rmmod vd_input_irq; rc=$?
check "vd_input_irq unloads (rmmod exit $rc)" test $rc = 0

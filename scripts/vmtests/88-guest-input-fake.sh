# vd-timeout: 500
# Issue 13, guest side without the host module: vd_front's input device against `vd-itest
# fake-ivshmem`, which lays out an SPEC-13 event ring (kind INPUT, 16 slots of 32 bytes) in the
# shared memory it gives QEMU and produces into it itself (userspace-tools/vd-itest/src/
# fakeinput.rs), one phase per SIGUSR1.
# (a) Layout `input`: once the guest's reader is ready, 200 frames (keys with scan codes,
#     BTN_LEFT, relative and absolute motion) and the end marker go through the ring, wrapping it
#     dozens of times: the producer publishes at frame ends, interrupts by EVENT_IDX and waits
#     for the guest's doorbell whenever the ring is full. The guest's evdev (/dev/input/eventN of
#     "vd-input") must read exactly what was produced (count, order-sensitive hash of every
#     event, key hash, motion sums, last absolute position), the doorbell path must have run,
#     and vd_front unloads.
# (b) Layout `input-broken`: 20 good frames (read exactly), then `rsp_prod` far ahead: the guest
#     logs the broken ring once; then valid events and another interrupt: the guest reports none
#     and consumes none (rsp_cons stays where it broke), stays up, and vd_front unloads.
# (c) Layout `input-badlen`: the same with a published slot whose length is 15.
. ./lib.sh
. ./guest-lib.sh

fake=/tmp/vd-fakein.sock
out=/tmp/vd-fakein.out
rm -f $fake
vd-itest fake-ivshmem --socket $fake --layouts input,input-broken,input-badlen > $out 2> /tmp/vd-fakein.err &
fake_pid=$!
_GL_PIDS="$_GL_PIDS $fake_pid"
wait_for "vd-itest fake-ivshmem (pid $fake_pid) listens on $fake" 20 test -S $fake

# go NAME R: waits for guest NAME's "input ready R", then SIGUSR1 (the fake's next phase).
go() {
    _gp=$(guest_pid "$1")
    poll 200 sh -c "grep -q 'VDGUEST-INFO input ready $2' /tmp/guest-$1.console || ! kill -0 $_gp 2>/dev/null"
    grep -q "VDGUEST-INFO input ready $2" /tmp/guest-$1.console \
        || { wait_guest "$1"; cat $out /tmp/vd-fakein.err; fail "guest $1 never got ready for phase $2"; }
    kill -USR1 $fake_pid
}
# fake_said PATTERN: the fake printed a line matching PATTERN (or an error: fail).
fake_said() {
    grep -q "FAKEINPUT .* error" $out && { cat $out /tmp/vd-fakein.err; fail "the fake server failed"; }
    grep -q "$1" $out
}
devargs() { echo "-chardev socket,path=$fake,id=$1 -device ivshmem-doorbell,chardev=$1,vectors=1"; }

# --- (a) 200 frames through a 16-slot ring --------------------------------------------------------
start_guest inp input-read $(devargs in1)
go inp 1
wait_for "the fake produced phase 1 for client 1" 300 fake_said "client 1 phase 1:"
wait_guest inp; rc=$?
grep FAKEINPUT $out
want=$(sed -n 's/^FAKEINPUT client 1 phase 1: .*: \(events=.*\)$/\1/p' $out)
check "the fake printed what it produced ($want)" test -n "$want"
check "the guest read every event once, in order, then vd_front unloaded ($GUEST_RESULT)" test $rc = 0
check "the guest's evdev saw exactly what the fake produced" result_has "round1: $want;"
check "its phys is vd/ivshmem-<pci address>" result_has "(vd/ivshmem-0000:"
kicks=$(sed -n 's/^FAKEINPUT client 1 phase 1: .* \([0-9]*\) doorbells, \([0-9]*\) interrupts:.*/\1/p' $out)
irqs=$(sed -n 's/^FAKEINPUT client 1 phase 1: .* \([0-9]*\) doorbells, \([0-9]*\) interrupts:.*/\2/p' $out)
check "the full ring's doorbell path ran ($kicks doorbells) and interrupts were sent ($irqs)" \
    sh -c "test ${kicks:-0} -ge 1 && test ${irqs:-0} -ge 1"
kill -USR1 $fake_pid
wait_for "the fake reports client 1's final indices" 20 fake_said "client 1 final:"
grep "client 1 final" $out

# --- (b), (c) broken rings ------------------------------------------------------------------------
# broken_ring NAME CLIENT WHY: guest NAME on the fake's client CLIENT (an input-broken or
# input-badlen layout); the guest must log the broken ring with WHY.
broken_ring() {
    _n=$1; _c=$2
    GUEST_APPEND="vd.input_mode=broken" start_guest $_n input-read $(devargs in$_c)
    go $_n 1
    wait_for "the fake produced phase 1 for client $_c" 300 fake_said "client $_c phase 1:"
    go $_n 2
    wait_for "the fake broke client $_c's ring" 60 fake_said "client $_c phase 2:"
    go $_n 3
    wait_for "the fake published valid events after the break" 60 fake_said "client $_c phase 3:"
    wait_guest $_n; rc=$?
    want=$(sed -n "s/^FAKEINPUT client $_c phase 1: .*: \(events=.*\)\$/\1/p" $out)
    check "the broken ring: logged once, nothing reported after it, vd_front unloads ($GUEST_RESULT)" test $rc = 0
    check "the 20 frames before the break arrived exactly ($want)" result_has "round1: $want;"
    check "the guest's log says why: $3" result_has "broken ($3"
    kill -USR1 $fake_pid
    wait_for "the fake reports client $_c's final indices" 20 fake_said "client $_c final:"
    grep "FAKEINPUT client $_c" $out
    at=$(sed -n "s/^FAKEINPUT client $_c phase 2: .*BROKEN_AT rsp_cons=\([0-9]*\).*/\1/p" $out)
    check "the guest consumed nothing after the break (rsp_cons stays $at)" \
        grep -q "client $_c final: rsp_prod=[0-9]* rsp_cons=$at\$" $out
    check "QEMU exited cleanly (exit $_grc)" test "$_grc" = 0
}
broken_ring bad 2 "rsp_prod "
broken_ring badlen 3 "event slot length 15, not 16"

kill -TERM $fake_pid; wait $fake_pid; rc=$?
check "fake-ivshmem exits 0 on SIGTERM (exit $rc)" test $rc = 0

# vd-timeout: 400
# A host input device's events in a stock QEMU guest's evdev through vd_input_irq (issue 13).
# vd-ivshmem-server --input 42 gives the guest's ivshmem-doorbell device a vd_input_irq event ring
# in its shared memory and follows the QEMU's vCPU thread; in the guest vd_front makes it the
# evdev device "vd-input", and a reader records /dev/input/eventN (scripts/guest-input.sh).
# Round 1: a uinput keyboard+mouse and a uinput tablet, routed and focused to VM 42, send 300
# mixed frames (keys, relative and absolute motion): the guest reads every event once, in order
# (event count, a hash over every event, key hash, motion sums and last absolute position all
# equal what was sent). Round 2: QEMU is SIGSTOPped (every vCPU thread seen stopped) and the
# 10,000-event burst is written: the module queues it (nothing reaches the ring meanwhile);
# after SIGCONT the guest gets every key once, in order, and exact motion sums, no SYN_DROPPED.
# Round 3: the same burst while QEMU is paused with QMP `stop` (its vCPU threads wait asleep, so
# the events fill the ring, then the queue); after `cont`, the same exact checks.
# After QEMU exits: the VM is gone, the module has no reference left and unloads.
# Then the comparison, what users run today, in the same boot: a second guest gets the same kind
# of uinput devices through QEMU's `-object input-linux` + virtio-keyboard/-mouse/-tablet; the
# same 300 frames, then the same burst while QEMU is SIGSTOPped; what that guest's evdev got is
# printed next to vd_input_irq's (a measurement: what the virtio path loses is not a failure).
. ./lib.sh
. ./guest-lib.sh
load vd_input_irq
VM=42
start_input_server inp $VM
rm -f /tmp/qmp-inp.sock
GUEST_APPEND="vd.input_rounds=3" start_guest inp input-evdev $(vd_disk_args inp) \
    -qmp unix:/tmp/qmp-inp.sock,server=on,wait=off
qpid=$GUEST_PID
feed_round() { # feed_round R [feeder args]: waits for the guest's "input ready R", then feeds
    _r=$1; shift
    poll $(guest_secs 200) sh -c "grep -q 'VDGUEST-INFO input ready $_r' /tmp/guest-inp.console || ! kill -0 $qpid 2>/dev/null"
    grep -q "VDGUEST-INFO input ready $_r" /tmp/guest-inp.console \
        || { wait_guest inp; server_log inp; fail "the guest never got ready for round $_r"; }
    vd-itest input-feed --vm $VM "$@" > /tmp/feed.$_r 2>&1 || { cat /tmp/feed.$_r; server_log inp; fail "vd-itest input-feed, round $_r"; }
    cat /tmp/feed.$_r
}
feed_round 1 --frames 300
want1=$(sed -n 's/^FEED //p' /tmp/feed.1)
vdctl input vm list 2>/dev/null || true
feed_round 2 --stop-pid $qpid
want2=$(sed -n 's/^FEEDKEYS //p' /tmp/feed.2)
feed_round 3 --qmp-pause /tmp/qmp-inp.sock
want3=$(sed -n 's/^FEEDKEYS //p' /tmp/feed.3)
wait_guest inp; rc=$?
server_log inp
check "the guest read all three rounds (${GUEST_SECS}s)" test $rc = 0
check "round 1: the guest's evdev saw exactly the 300 frames sent ($want1)" result_has "round1: $want1;"
same_keys() { # same_keys R WANT: the guest's round R summary has every field of WANT
    _got=$(echo "$GUEST_RESULT" | sed -n "s/.*round$1: \([^;]*\);.*/\1/p")
    for f in $2; do
        case " $_got " in *" $f "*) ;; *) fail "round $1: the guest's $f differs: guest: $_got; sent: $2" ;; esac
    done
}
same_keys 2 "$want2"
echo "ok: round 2 (SIGSTOP): every key once and in order, exact motion sums, no SYN_DROPPED ($want2)"
same_keys 3 "$want3"
echo "ok: round 3 (QMP stop): every key once and in order, exact motion sums, no SYN_DROPPED ($want3)"
check "the server saw the guest's vCPU thread followed" grep -q '"event":"attached"' /tmp/vd-inp.server.out
stop_server inp; rc=$?
check "vd-ivshmem-server --input exits 0 on SIGTERM (exit $rc)" test $rc = 0
wait_for "vd_input_irq has no reference left after the guest and the server" 20 sh -c '[ "$(cat /sys/module/vd_input_irq/refcnt)" = 0 ]'
rmmod vd_input_irq; rc=$?
check "vd_input_irq unloads (rmmod exit $rc)" test $rc = 0

# The comparison path.
# The comparison below measures virtio-input's losses; it checks nothing of vd's, so make test's
# TCG guest boot (a guest boot there takes minutes) leaves it to the nested KVM run.
if [ "$GUEST_ACCEL" = tcg ]; then echo "virtio-input comparison: only with nested KVM guests (make test-guests)"; exit 0; fi
rm -f /tmp/vingo.* /tmp/vin.nodes
vd-itest input-feed-virtio --nodes /tmp/vin.nodes --go /tmp/vingo --pid-file /tmp/guest-vin.pid \
    > /tmp/feed.vin 2>&1 &
fpid=$!; _GL_PIDS="$_GL_PIDS $fpid"
wait_for "the comparison's uinput devices exist" 20 test -s /tmp/vin.nodes
. /tmp/vin.nodes
GUEST_APPEND="vd.input_rounds=2 vd.input_match=Virtio vd.input_devices=3 vd.input_wait=60" start_guest vin input-evdev \
    -object "input-linux,id=ilk,evdev=$KBD" -object "input-linux,id=ilt,evdev=$TAB" \
    -device virtio-keyboard-pci -device virtio-mouse-pci -device virtio-tablet-pci
vqpid=$GUEST_PID
for r in 1 2; do
    poll $(guest_secs 200) sh -c "grep -q 'VDGUEST-INFO input ready $r' /tmp/guest-vin.console || ! kill -0 $vqpid 2>/dev/null"
    grep -q "VDGUEST-INFO input ready $r" /tmp/guest-vin.console \
        || { wait_guest vin; cat /tmp/feed.vin; fail "the virtio-input guest never got ready for round $r"; }
    touch /tmp/vingo.$r
done
wait $fpid; frc=$?
cat /tmp/feed.vin
check "the comparison's feeder ran both rounds (exit $frc)" test $frc = 0
wait_guest vin; vrc=$?
# From the guest's per-round lines (a round whose end marker never came has none).
v1=$(tr -d '\r' < /tmp/guest-vin.console | sed -n 's/^VDGUEST-INFO input round 1: \(events=.*dropped=[0-9]*\).*/\1/p')
v2=$(tr -d '\r' < /tmp/guest-vin.console | sed -n 's/^VDGUEST-INFO input round 2: \(events=.*dropped=[0-9]*\).*/\1/p')
echo "COMPARISON round 1 (300 frames, QEMU running): sent: $(sed -n 's/^FEEDKEYS1 //p' /tmp/feed.vin)"
echo "COMPARISON   vd_input_irq guest: $(echo "$want1" | sed 's/allhash=[0-9]* //')"
echo "COMPARISON   virtio-input guest: ${v1:-no summary (guest: $GUEST_RESULT)}"
echo "COMPARISON round 2 (10,000-event burst, QEMU SIGSTOPped): sent: $want2"
echo "COMPARISON   vd_input_irq guest: $want2 (checked above: exact)"
echo "COMPARISON   virtio-input guest: ${v2:-nothing: the end marker never arrived within 60 s ($GUEST_RESULT)}"
check "the virtio-input guest booted and read its devices (its losses are measured, not checked)" \
    test -n "$v1"

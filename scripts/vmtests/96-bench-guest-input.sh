# vd-timeout: 600
# make bench (issue 13): host uinput write -> the event read by a process in a stock QEMU guest
# (nested KVM), vd_input_irq versus QEMU's `-object input-linux` + virtio-keyboard-pci (what
# users run today), both paths in the same guest, their rounds alternated (one key press each per
# round; VD_BENCH_ROUNDS rounds per block, three blocks).
# vd path: a uinput keyboard routed to VM 43 -> vd_input_irq's ring in the guest's ivshmem-doorbell
# memory -> KVM irqfd (MSI-X) -> vd_front's interrupt handler -> evdev "vd-input".
# virtio path: another uinput keyboard -> QEMU's main loop reads its evdev node -> virtqueue ->
# irqfd -> virtio-input's handler -> evdev "QEMU Virtio Keyboard".
# The guest's reader (`vd-itest input-echo`, scripts/guest-input.sh) echoes each key event into an
# ivshmem-plain device on a host shm file; the host (`vd-itest input-latency`) spins on it: one
# clock (the test VM's) for the whole round, and the guest's own stamps split it into to-guest
# (host write -> the guest's input core) and in-guest (input core -> the reader's read returns).
# The writer runs on the test VM's last CPU and every QEMU thread on the others (one layout for
# every round). The run fails if an event never arrives (3 s); it prints each block's median so
# the run shows whether its blocks agree (README: the recorded table and the three runs).
. ./lib.sh
. ./guest-lib.sh
load vd_input_irq
VM=43
rounds=${VD_BENCH_ROUNDS:-200}
GUEST_TIMEOUT=$((120 + rounds * 3))
start_input_server lat $VM
rm -f /tmp/latgo /tmp/lat.nodes /tmp/vd-echo
vd-itest input-latency --vm $VM --nodes /tmp/lat.nodes --go /tmp/latgo --shm /tmp/vd-echo \
    --rounds "$rounds" --qemu-pid-file /tmp/guest-lat.pid > /tmp/lat.out 2>&1 &
lpid=$!; _GL_PIDS="$_GL_PIDS $lpid"
poll 200 sh -c "test -s /tmp/lat.nodes || ! kill -0 $lpid 2>/dev/null"
test -s /tmp/lat.nodes || { cat /tmp/lat.out; fail "vd-itest input-latency made no uinput keyboards and echo memory"; }
. /tmp/lat.nodes
start_guest lat input-latency $(vd_disk_args lat) \
    -object "input-linux,id=il,evdev=$VIRTIO_KBD" -device virtio-keyboard-pci \
    -object memory-backend-file,id=echo,size=4096,mem-path=/tmp/vd-echo,share=on \
    -device ivshmem-plain,memdev=echo,addr=0x11
qpid=$GUEST_PID
poll 200 sh -c "grep -q 'VDGUEST-INFO input latency ready' /tmp/guest-lat.console || ! kill -0 $qpid 2>/dev/null"
grep -q 'VDGUEST-INFO input latency ready' /tmp/guest-lat.console \
    || { wait_guest lat; server_log lat; kill $lpid; fail "the guest's reader never got ready: $GUEST_RESULT"; }
touch /tmp/latgo
wait $lpid; lrc=$?
cat /tmp/lat.out
wait_guest lat; grc=$?
server_log lat
check "vd-itest input-latency measured every round, nothing lost (exit $lrc)" test $lrc = 0
check "the guest's reader saw the end on both devices ($GUEST_RESULT)" test $grc = 0
stop_server lat
rm -f /tmp/vd-echo

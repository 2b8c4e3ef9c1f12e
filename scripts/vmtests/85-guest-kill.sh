# vd-timeout: 900
# Issue 12: QEMU killed with SIGKILL mid-I/O with real Linux guests, 5 rounds (20 rounds with
# QEMU's qtest standing in for the guest are `make test`'s 22-evtchn-qemu-kill: in about one
# nested-guest boot in seven the emulator's nested SVM takes the test VM down, so 20 guest boots
# in one test almost never survive; see the README's limits). One vd-ivshmem-server serves one image;
# each round a new guest runs `io-loop` (1 MiB writes with fsync and uncached read-backs on
# /dev/vdb0, without end), and once its channel has served more than 50 requests (the probe
# needs 2) QEMU gets SIGKILL. Each round: the orphaned channel is torn down (QEMU's eventfds
# closed by the kernel), the image is free for the next guest, the server goes on. After the
# rounds: no channel, no module reference, the channels' shared memory is given back, and
# vd_evtchn unloads.
. ./lib.sh
. ./guest-lib.sh
ROUNDS=5
load vd_evtchn
img=/tmp/vd-kill.img
# Written out (not sparse): the image's own pages must not count as channel memory below.
rm -f $img; dd if=/dev/zero of=$img bs=1M count=64 2>/dev/null
shmem0=$(shmem_kb)
start_server kill $img; srv=$SERVER_PID
n=0
while [ $n -lt $ROUNDS ]; do
    n=$((n + 1))
    start_guest k$n io-loop $(vd_disk_args kill)
    wait_for "round $n: the guest's vd disk is doing I/O (> 50 requests)" 150 guest_io_over k$n $srv 50
    r=$(served_requests $srv)
    kill -9 "$GUEST_PID"; wait "$GUEST_PID" 2>/dev/null
    echo "round $n: QEMU (pid $GUEST_PID) killed after at least $r requests"
    wait_for "round $n: the channel is torn down after SIGKILL" 20 no_guest_channel
    kill -0 $srv 2>/dev/null || { server_log kill; fail "round $n: vd-ivshmem-server died"; }
done
kill_leak_check kill $ROUNDS $ROUNDS guest $shmem0
rm -f $img

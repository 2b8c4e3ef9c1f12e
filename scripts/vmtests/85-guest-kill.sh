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
shmem() { awk '/^Shmem:/ { print $2 }' /proc/meminfo; }
shmem0=$(shmem)
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
clients=$(grep -c '"event":"client"' /tmp/vd-kill.server.out)
check "the server handed out a channel to each of the $ROUNDS QEMUs ($clients)" test "$clients" = $ROUNDS
check "the server refused none" sh -c "! grep -q '\"event\":\"refused\"' /tmp/vd-kill.server.out"
shm_kb=$(( $(sed -n 's/.*"event":"listening".*"shm_size":\([0-9]*\).*/\1/p' /tmp/vd-kill.server.out) / 1024 ))
stop_server kill; rc=$?
check "vd-ivshmem-server exits 0 on SIGTERM after $ROUNDS killed guests (exit $rc)" test $rc = 0
refs=$(cat /sys/module/vd_evtchn/refcnt)
check "vd_evtchn holds no module reference for a dead guest (refcnt $refs)" test "$refs" = 0
shmem1=$(shmem)
echo "Shmem: ${shmem0} kB before, ${shmem1} kB after $ROUNDS rounds; one channel is ${shm_kb} kB"
check "the channels' shared memory went back (Shmem grew $((shmem1 - shmem0)) kB, less than half a channel)" \
    test $((shmem1 - shmem0)) -lt $((shm_kb / 2))
rmmod vd_evtchn; rc=$?
check "vd_evtchn unloads after $ROUNDS killed guests (rmmod exit $rc)" test $rc = 0
rm -f $img

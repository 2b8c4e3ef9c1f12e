# vd-timeout: 300
# Issue 12: QEMU killed with SIGKILL mid-I/O, 20 times, without a nested guest (the emulator's
# nested SVM is too fragile for 20 boots in a row: 85-guest-kill does the same with real
# guests in `make test-guests`). A stock QEMU runs under qtest and `vd-itest qtest-guest` plays
# the guest driver through it: the same QEMU binary and ivshmem-doorbell device, the same
# vd-ivshmem-server and vd_evtchn channel (shmem file, kick eventfd through QEMU's ioeventfd,
# call eventfd), the same teardown when QEMU dies (the orphaned channel ends with the last
# reference to its kick eventfd, i.e. QEMU's fds). One clean round first (verified I/O, QEMU
# quits normally: a broken I/O path fails here, not as a kill), then 20 rounds of verified I/O
# and SIGKILL with requests in flight. Each round: the channel is torn down, the server serves
# the next. After the rounds: no channel, no module reference, the channels' shared memory is
# given back, and vd_evtchn unloads.
. ./lib.sh
. ./guest-lib.sh
ROUNDS=20
command -v qemu-system-x86_64 > /dev/null || fail "qemu-system-x86_64 is not in the test VM's initramfs"
load vd_evtchn
img=/tmp/vd-qkill.img
# Written out (not sparse): the image's own pages must not count as channel memory below.
rm -f $img; dd if=/dev/zero of=$img bs=1M count=64 2>/dev/null
shmem() { awk '/^Shmem:/ { print $2 }' /proc/meminfo; }
shmem0=$(shmem)
t0=$(uptime_cs)
start_server qkill $img; srv=$SERVER_PID
qguest() { vd-itest qtest-guest --socket /tmp/vd-qkill.sock --qemu "$(command -v qemu-system-x86_64)" \
    --disk-bytes $((64 << 20)) "$@"; }
qguest --requests 64 --seed 1000 || { server_log qkill; fail "clean round: verified I/O and a normal quit"; }
wait_for "clean round: the channel is torn down after QEMU quit" 20 no_guest_channel
n=0
while [ $n -lt $ROUNDS ]; do
    n=$((n + 1))
    out=$(qguest --kill-after 16 --seed $n 2>&1); rc=$?
    echo "$out" | grep -v '^ok: \(the \|BAR2\)'
    [ $rc = 0 ] || { echo "$out"; server_log qkill; fail "round $n: qtest-guest (exit $rc)"; }
    wait_for "round $n: the channel is torn down after SIGKILL" 20 no_guest_channel
    kill -0 $srv 2>/dev/null || { server_log qkill; fail "round $n: vd-ivshmem-server died"; }
done
clients=$(grep -c '"event":"client"' /tmp/vd-qkill.server.out)
check "the server handed out a channel to each of the $((ROUNDS + 1)) QEMUs ($clients)" test "$clients" = $((ROUNDS + 1))
check "the server refused none" sh -c "! grep -q '\"event\":\"refused\"' /tmp/vd-qkill.server.out"
shm_kb=$(( $(sed -n 's/.*"event":"listening".*"shm_size":\([0-9]*\).*/\1/p' /tmp/vd-qkill.server.out) / 1024 ))
stop_server qkill; rc=$?
check "vd-ivshmem-server exits 0 on SIGTERM after $ROUNDS killed QEMUs (exit $rc)" test $rc = 0
refs=$(cat /sys/module/vd_evtchn/refcnt)
check "vd_evtchn holds no module reference for a dead QEMU (refcnt $refs)" test "$refs" = 0
shmem1=$(shmem)
echo "Shmem: ${shmem0} kB before, ${shmem1} kB after $ROUNDS rounds; one channel is ${shm_kb} kB"
check "the channels' shared memory went back (Shmem grew $((shmem1 - shmem0)) kB, less than half a channel)" \
    test $((shmem1 - shmem0)) -lt $((shm_kb / 2))
rmmod vd_evtchn; rc=$?
check "vd_evtchn unloads after $ROUNDS killed QEMUs (rmmod exit $rc)" test $rc = 0
rm -f $img
echo "$ROUNDS rounds and the clean one in $(awk -v a="$t0" -v b="$(uptime_cs)" 'BEGIN { printf "%.1f", (b - a) / 100 }') s"

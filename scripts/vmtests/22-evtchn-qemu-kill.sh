# vd-timeout: 300
# Issue 12: QEMU killed with SIGKILL mid-I/O, 20 times, without a nested guest (the emulator's
# nested SVM is too fragile for 20 boots in a row: 85-guest-kill does the same with real
# guests in `make test-guests`). A stock QEMU runs under qtest and `vd-itest qtest-guest` plays
# the guest driver through it: the same QEMU binary and ivshmem-doorbell device, the same
# vd-ivshmem-server and vd_evtchn channel (shmem file, kick eventfd through QEMU's ioeventfd,
# call eventfd), the same teardown when QEMU dies (the orphaned channel ends with the last
# reference to its kick eventfd, i.e. QEMU's fds). One clean round first (verified I/O, QEMU
# quits normally: a broken I/O path fails here, not as a kill; paused before its quit, the live
# channel must name QEMU as its kicker and the server as its creator), then 20 rounds of verified I/O
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
shmem0=$(shmem_kb)
t0=$(uptime_cs)
start_server qkill $img; srv=$SERVER_PID
qguest() { vd-itest qtest-guest --socket /tmp/vd-qkill.sock --qemu "$(command -v qemu-system-x86_64)" \
    --disk-bytes $((64 << 20)) "$@"; }
# The clean round pauses after its I/O (QEMU up, the channel live): the channel's I/O is QEMU's.
# Under qtest there is no KVM: QEMU's own thread writes the ioeventfd, so `kick_pid` must be
# QEMU's pid while `domain_pid` stays the server's (it created the channel).
pf=/tmp/vd-qkill.paused; rm -f $pf
qguest --requests 64 --seed 1000 --pause-file $pf > /tmp/vd-qkill.clean.out 2>&1 & qg=$!
paused() { kill -0 $qg 2>/dev/null || { cat /tmp/vd-qkill.clean.out; fail "qtest-guest exited before pausing"; }; test -s $pf; }
wait_for "clean round: verified I/O done, QEMU paused" 60 paused
qpid=$(cat $pf)
vdctl evtchn list --json > /tmp/kick.json || fail "vdctl evtchn list --json"
check "the guest channel was created by the server ($srv) and is kicked by QEMU ($qpid)" \
    test "$(kicked_channels /tmp/kick.json $srv $qpid)" = 1
check "no channel lists the server as its kicker" test "$(grep -c "\"kick_pid\": $srv\$" /tmp/kick.json)" = 0
vdctl evtchn list > /tmp/kick.txt || fail "vdctl evtchn list"
check "vdctl evtchn list shows QEMU in the KICKER column" awk -v q="$qpid" -v s="$srv" \
    '$1 == s && $NF == q { f = 1 } END { exit !f }' /tmp/kick.txt
rm -f $pf
wait $qg || { cat /tmp/vd-qkill.clean.out; server_log qkill; fail "clean round: verified I/O and a normal quit"; }
cat /tmp/vd-qkill.clean.out
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
kill_leak_check qkill $((ROUNDS + 1)) $ROUNDS QEMU $shmem0
rm -f $img
echo "$ROUNDS rounds and the clean one in $(awk -v a="$t0" -v b="$(uptime_cs)" 'BEGIN { printf "%.1f", (b - a) / 100 }') s"

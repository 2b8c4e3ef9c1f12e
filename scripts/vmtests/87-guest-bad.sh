# vd-timeout: 600
# Issue 12: bad server input, bad ivshmem geometry, a guest that never completes the handshake:
# clear errors, nothing hangs.
# (a) Bad geometry: `vd-itest fake-ivshmem` hands five ivshmem-doorbell devices of one guest the
#     crafted layouts zero, data-beyond, kind, tiny, silent; vd_front refuses each with its own
#     log line (silent: the size query times out), no disk appears, the module unloads.
# (b) No handshake: a guest that never loads vd_front on a real server's channel: the channel is
#     the guest's (orphan, 0 requests) while QEMU lives, gone when it exits; the server serves
#     the next QEMU (mkfs in a second guest); a QEMU that never runs its guest (-S) holds its
#     channel (and the image lock) until it is killed.
# (c) Bad server input with the real binary: a missing, empty or directory image and a busy
#     socket path stop vd-ivshmem-server at once with what to do, nothing left listening; a QEMU
#     on a second server for an image in use is refused (QEMU stops with an error) and that
#     server keeps running.
. ./lib.sh
. ./guest-lib.sh

# --- (a) bad geometry ----------------------------------------------------------------------------
fake=/tmp/vd-fake.sock
rm -f $fake
vd-itest fake-ivshmem --socket $fake --layouts zero,data-beyond,kind,tiny,silent --json \
    > /tmp/vd-fake.out 2> /tmp/vd-fake.err &
fake_pid=$!
_GL_PIDS="$_GL_PIDS $fake_pid"
wait_for "vd-itest fake-ivshmem (pid $fake_pid) listens on $fake" 20 test -S $fake
devs=""
for i in 1 2 3 4 5; do
    devs="$devs -chardev socket,path=$fake,id=bad$i -device ivshmem-doorbell,chardev=bad$i,vectors=1"
done
GUEST_APPEND="vd.expect=magic:1,data:1,kind:1,ring:1,timeout:1"
run_guest geom probe-refused $devs; rc=$?
GUEST_APPEND=""
# (wait_guest leaves QEMU's exit status in _grc.)
qemu_rc=$_grc
echo "fake server said:"; cat /tmp/vd-fake.out /tmp/vd-fake.err
check "vd_front refuses all five bad devices, each with its own reason, no disk, rmmod works ($GUEST_RESULT)" \
    test $rc = 0
check "QEMU exited cleanly (exit $qemu_rc)" test "$qemu_rc" = 0
check "the fake server served 5 connections, one per layout" \
    test "$(grep -c '"event":"client"' /tmp/vd-fake.out)" = 5
for l in zero data-beyond kind tiny silent; do
    check "connection with layout $l" grep -q "\"layout\":\"$l\"" /tmp/vd-fake.out
done
fake_left() { test "$(grep -c '"event":"left"' /tmp/vd-fake.out)" = 5; }
wait_for "all 5 connections closed after QEMU exited" 20 fake_left
kill -TERM $fake_pid; wait $fake_pid; rc=$?
check "fake-ivshmem exits 0 on SIGTERM (exit $rc) and removed its socket" \
    sh -c "test $rc = 0 && ! test -e $fake"

# --- (b) a guest that never completes the handshake -----------------------------------------------
load vd_evtchn
img=/tmp/vd-bad.img
rm -f $img; truncate -s 64M $img
start_server hs $img; srv=$SERVER_PID
# orphans PID: the number of guest channels (orphans) created by PID, with how many requests.
orphans() {
    vdctl evtchn list --json > /tmp/list.json || return 1
    awk -v pid="$1" '
        /\{/ { o = 0; p = 0; r = 0 }
        /"orphan": true/ { o = 1 }
        /"domain_pid": / { v = $2; sub(/,/, "", v); p = (v == pid) }
        /"requests": / { v = $2; sub(/,/, "", v); r = v + 0 }
        /\}/ { if (o && p) { n++; req += r } }
        END { print n + 0, req + 0 }' /tmp/list.json
}
has_orphan() { [ "$(orphans "$1")" = "1 0" ]; }
start_guest idle boot $(vd_disk_args hs)
wait_for "the idle guest's channel is an orphan of the server (pid $srv) with 0 requests" 30 has_orphan $srv
cat /tmp/list.json
wait_guest idle; rc=$?
check "the guest that never loads vd_front boots and powers off ($GUEST_RESULT)" test $rc = 0
check "QEMU exited cleanly (exit $_grc)" test "$_grc" = 0
wait_for "its channel is gone after QEMU exited" 20 no_guest_channel
check "the server is still alive after its guest left" kill -0 $srv
left1() { grep -q '"event":"left","client":1' /tmp/vd-hs.server.out; }
wait_for "the server saw client 1 leave" 20 left1
run_guest next mkfs $(vd_disk_args hs); rc=$?
check "the same server serves the next QEMU: mkfs.ext4, write, read back ($GUEST_RESULT)" test $rc = 0
wait_for "the second guest's channel is gone after QEMU exited" 20 no_guest_channel

# A QEMU whose guest never runs (-S): its channel lives (and locks the image) as long as it does.
qemu-system-x86_64 -accel kvm -cpu host -M q35 -m 64 -nodefaults -display none -S \
    $(vd_disk_args hs) > /tmp/vd-paused.qemu 2>&1 < /dev/null &
paused=$!
_GL_PIDS="$_GL_PIDS $paused"
wait_for "a paused QEMU (pid $paused, -S) got its channel: orphan, 0 requests" 30 has_orphan $srv

# --- (c) bad server input -----------------------------------------------------------------------
# bad_server NAME TEXT ARGS...: vd-ivshmem-server ARGS must exit non-zero within 10 s, say TEXT on
# stderr and leave no socket /tmp/vd-NAME.sock behind.
bad_server() {
    _bn=$1; _bt=$2; shift 2
    vd-ivshmem-server --socket "/tmp/vd-$_bn.sock" "$@" > "/tmp/vd-$_bn.out" 2> "/tmp/vd-$_bn.err" &
    _bp=$!
    _GL_PIDS="$_GL_PIDS $_bp"
    wait_for "vd-ivshmem-server $* exits at once" 10 sh -c "! kill -0 $_bp 2>/dev/null"
    wait $_bp; _brc=$?
    echo "  it said: $(cat "/tmp/vd-$_bn.err")"
    check "it exits non-zero ($_brc)" test $_brc != 0
    check "its message says: $_bt" grep -q -- "$_bt" "/tmp/vd-$_bn.err"
    check "nothing listens on /tmp/vd-$_bn.sock" sh -c "! test -e /tmp/vd-$_bn.sock"
}
rm -f /tmp/vd-missing.img /tmp/vd-empty.img; : > /tmp/vd-empty.img
bad_server c1 "(create it, e.g. truncate -s 8G FILE, or fix --image)" --image /tmp/vd-missing.img
bad_server c2 "image /tmp/vd-empty.img: empty (0 bytes): give the disk a size, e.g. truncate -s" \
    --image /tmp/vd-empty.img
# A directory does not open read-write: the message names the image, the reason and the fix.
bad_server c3 "image /tmp: Is a directory (os error 21) (--image names the disk image itself" --image /tmp
# A second server on the first one's socket path: refused, the first keeps listening.
vd-ivshmem-server --socket /tmp/vd-hs.sock --image $img > /tmp/vd-c4.out 2> /tmp/vd-c4.err &
c4=$!
_GL_PIDS="$_GL_PIDS $c4"
wait_for "a second server on /tmp/vd-hs.sock exits at once" 10 sh -c "! kill -0 $c4 2>/dev/null"
wait $c4; rc=$?
echo "  it said: $(cat /tmp/vd-c4.err)"
check "it exits non-zero ($rc)" test $rc != 0
check "its message says the path is busy and what to do" \
    grep -q "socket path busy: another vd-ivshmem-server listens on /tmp/vd-hs.sock.*stop it or pick another path" /tmp/vd-c4.err
check "the first server still listens" sh -c "kill -0 $srv && test -S /tmp/vd-hs.sock"

# A second server on the image the paused guest holds: it starts, but its QEMU is refused.
start_server lock $img --lock-wait 1; lock_srv=$SERVER_PID
qemu-system-x86_64 -accel kvm -cpu host -M q35 -m 64 -nodefaults -display none -S \
    $(vd_disk_args lock) > /tmp/vd-lockq.qemu 2>&1 < /dev/null &
lockq=$!
_GL_PIDS="$_GL_PIDS $lockq"
wait_for "QEMU on the image in use stops by itself" 30 sh -c "! kill -0 $lockq 2>/dev/null"
wait $lockq; rc=$?
echo "  QEMU said: $(cat /tmp/vd-lockq.qemu)"
server_log lock
check "QEMU exits non-zero ($rc)" test $rc != 0
check "QEMU says the server refused it (version -16, EBUSY)" grep -q "server sent version -16" /tmp/vd-lockq.qemu
check "the server says the image is in use and what to do" \
    grep -q "in use (locked).*stop that VM first" /tmp/vd-lock.server.err
check "that server keeps running" kill -0 $lock_srv

kill -TERM $paused; wait $paused
wait_for "the paused QEMU's channel is gone after it was stopped" 20 no_guest_channel
stop_server lock; rc=$?
check "the second server exits 0 on SIGTERM (exit $rc)" test $rc = 0
stop_server hs; rc=$?
check "vd-ivshmem-server exits 0 on SIGTERM after all that (exit $rc)" test $rc = 0
check "nothing left listening" sh -c "! test -e /tmp/vd-hs.sock && ! test -e /tmp/vd-lock.sock"
rmmod vd_evtchn; rc=$?
check "vd_evtchn unloads after the guests are gone (rmmod exit $rc)" test $rc = 0
rm -f $img /tmp/vd-empty.img

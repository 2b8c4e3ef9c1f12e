# vd-timeout: 600
# vd-tcg b
# Issue 12: the guest's disk keeps working while its server is killed and restarted. The guest
# (`server-restart`) runs fio verify, then reads its disk uncached until it finds the host's go,
# then runs fio verify again. The host kills vd-ivshmem-server with SIGKILL once the channel has
# served more than 200 requests (mid-fio: the probe needs 2), checks that the channel stays,
# starts a new server on the same socket and image (a second QEMU through it is refused: the
# image stays locked by the guest's channel), sees the channel serve more requests with no
# server of its own alive... then writes the go into the image; the guest's second fio verify
# runs after the restart by construction. No fio error anywhere.
. ./lib.sh
. ./guest-lib.sh
load vd_evtchn
img=/tmp/vd-rst.img
rm -f $img; truncate -s 64M $img
start_server rst $img; srv1=$SERVER_PID
start_guest rst server-restart $(vd_disk_args rst)
wait_for "the guest's fio is under way (> 200 requests)" $(guest_secs 200) guest_io_over rst $srv1 200
kill -9 $srv1; wait $srv1 2>/dev/null
r1=$(served_requests $srv1)
echo "server (pid $srv1) killed with SIGKILL after $r1 requests"
check "the guest's channel outlives its server (orphaned, still listed)" \
    sh -c "vdctl evtchn list --json | grep -q '\"orphan\": true'"
wait_for "the guest's disk is served with no server alive (requests > $r1)" $(guest_secs 60) guest_io_over rst $srv1 "$r1"
start_server rst $img; srv2=$SERVER_PID
echo "server restarted (pid $srv2)"
# A second QEMU through the new server, on the image the running guest's channel holds.
timeout 60 qemu-system-x86_64 -accel kvm -M q35 -m 64 -nodefaults -display none -S \
    -chardev socket,path=/tmp/vd-rst.sock,id=c2 -device ivshmem-doorbell,chardev=c2,vectors=1 \
    > /tmp/qemu2.out 2>&1 < /dev/null
rc=$?
echo "second QEMU: exit $rc: $(cat /tmp/qemu2.out)"
check "a second QEMU on the same image is refused (exit $rc, not the 124 of a hang)" \
    sh -c "[ $rc != 0 ] && [ $rc != 124 ]"
check "QEMU says why: the server's refusal is EBUSY (version -16)" grep -q 'version -16' /tmp/qemu2.out
check "the restarted server logged the refusal (image in use)" grep -q '"event":"refused".*"errno":16' /tmp/vd-rst.server.out
r2=$(served_requests $srv1)
printf 'VDGO-RST' | dd of=$img bs=4096 seek=15360 conv=notrunc 2>/dev/null
echo "go written after $r2 requests"
wait_guest rst; rc=$?
check "the guest's fio verified before and after the server's restart with no error ($GUEST_RESULT)" test $rc = 0
wait_for "the guest's channel is gone after QEMU exited" 20 no_guest_channel
stop_server rst; rc=$?
check "the restarted server exits 0 on SIGTERM (exit $rc)" test $rc = 0
rmmod vd_evtchn; rc=$?
check "vd_evtchn unloads after the guest is gone (rmmod exit $rc)" test $rc = 0
rm -f $img

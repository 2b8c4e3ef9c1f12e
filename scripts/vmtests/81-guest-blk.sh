# vd-timeout: 300
# vd-tcg a
# A stock QEMU guest's disk through vd_evtchn (issue 12): vd-ivshmem-server serves an image in
# the test VM's tmpfs; QEMU's ivshmem-doorbell device connects to it; in the guest vd_front
# drives /dev/vdb0 and fio writes at random and verifies every block (crc32c). From the host
# side: while the guest runs, `vdctl evtchn list` shows the guest's (orphaned) block channel
# with traffic; after QEMU exits the channel is gone and vd_evtchn unloads.
. ./lib.sh
. ./guest-lib.sh
load vd_evtchn
img=/tmp/vd-blk.img
rm -f $img; truncate -s 64M $img
start_server blk $img
start_guest blk fio-verify $(vd_disk_args blk)
seen=0
while guest_running blk; do
    if [ $seen = 0 ] && vdctl evtchn list --json > /tmp/list.json 2>/dev/null \
        && [ "$(guest_channels /tmp/list.json "$SERVER_PID")" = 1 ]; then
        seen=1
        echo "while the guest runs:"; vdctl evtchn list; cat /tmp/list.json
    fi
    sleep 0.2
done
wait_guest blk; rc=$?
server_log blk
check "guest fio-verify on vd_front's /dev/vdb0 passes (${GUEST_SECS}s)" test $rc = 0
check "vdctl evtchn list showed the guest's channel (orphan, block, requests > 0) while it ran" test $seen = 1
wait_for "the guest's channel is gone after QEMU exited" 20 no_guest_channel
stop_server blk; rc=$?
check "vd-ivshmem-server exits 0 on SIGTERM (exit $rc)" test $rc = 0
rmmod vd_evtchn; rc=$?
check "vd_evtchn unloads after the guest is gone (rmmod exit $rc)" test $rc = 0
rm -f $img

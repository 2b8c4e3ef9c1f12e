# vd-timeout: 300
# vd-tcg b
# Issue 12: data survives a guest reboot and a QEMU restart. Guest 1 writes a known 4 MiB pattern
# to /dev/vdb0 (dd conv=fsync, then sync) and powers off; the server is stopped; the host image
# file in the test VM holds the pattern (no server or QEMU alive: the guest's flush reached the
# file); a new server on the same image and a new QEMU read the pattern back in guest 2.
. ./lib.sh
. ./guest-lib.sh
load vd_evtchn
img=/tmp/vd-persist.img
rm -f $img; truncate -s 64M $img
# 4 MiB of pattern (65536 lines of 64 bytes); 1 MiB with TCG guests (generating it in the guest
# takes minutes there).
lines=65536; [ "$GUEST_ACCEL" = tcg ] && lines=16384
GUEST_APPEND="vd.pattern_lines=$lines"
pattern() { awk -v n=$lines 'BEGIN { for (i = 0; i < n; i++) printf "vd-persist %08d abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\n", i }'; }
want=$(pattern | md5sum); want=${want%% *}
start_server persist $img
run_guest persist pattern-write $(vd_disk_args persist); rc=$?
check "guest 1 wrote the pattern and synced ($GUEST_RESULT)" test $rc = 0
wait_for "guest 1's channel is gone after QEMU exited" 20 no_guest_channel
stop_server persist; rc=$?
check "vd-ivshmem-server exits 0 on SIGTERM (exit $rc)" test $rc = 0
got=$(head -c $((lines * 64)) $img | md5sum); got=${got%% *}
check "the host image holds the guest's pattern with no server or QEMU alive (md5 $got, want $want)" \
    test "$got" = "$want"
start_server persist $img
run_guest persist pattern-read $(vd_disk_args persist); rc=$?
check "a new QEMU (new channel, new server) reads the pattern back ($GUEST_RESULT)" test $rc = 0
wait_for "guest 2's channel is gone after QEMU exited" 20 no_guest_channel
stop_server persist
rmmod vd_evtchn; rc=$?
check "vd_evtchn unloads after the guests are gone (rmmod exit $rc)" test $rc = 0
rm -f $img

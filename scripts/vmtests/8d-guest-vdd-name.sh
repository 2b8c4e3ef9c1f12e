# vd-timeout: 300
# vdd sees a real stock QEMU guest (issue 14, first step): a Linux guest doing disk I/O through
# vd_front (`io-loop` on /dev/vdb0), started the way libvirt starts QEMU (`-name
# guest=desk9,debug-threads=on`), is found through KVM's debugfs; `vdctl vm list` names it from
# QEMU's command line and lists its vCPU thread (QEMU's `CPU 0/KVM`). After QEMU is killed, the
# VM leaves the list.
. ./lib.sh
. ./guest-lib.sh
load vd_evtchn
grep -q " /sys/kernel/debug debugfs " /proc/mounts || mount -t debugfs none /sys/kernel/debug || fail "mount debugfs"
W=/tmp/vddname; rm -rf $W; mkdir -p $W
img=$W/disk.img; truncate -s 64M $img
start_server name $img; srv=$SERVER_PID
start_guest name io-loop $(vd_disk_args name) -name guest=desk9,debug-threads=on
qpid=$GUEST_PID
wait_for "the guest's vd disk is doing I/O (> 20 requests)" 150 guest_io_over name $srv 20
vdd_conf $W
export VDD_SOCKET=$W/vdd.sock
vdd --config $W/vdd.toml > $W/vdd.log 2>&1 & D=$!
_GL_PIDS="$_GL_PIDS $D"
wait_for "vdd answers" 10 vdctl daemon status
listed() { vdctl vm list --json > $W/list.json 2>&1 && grep -q "\"name\": \"desk9\"" $W/list.json; }
wait_for "vdctl vm list names the guest desk9 (QEMU pid $qpid)" 30 listed
cat $W/list.json
vdctl vm list
tid=$(for t in /proc/$qpid/task/*; do [ "$(cat $t/comm)" = "CPU 0/KVM" ] && basename $t; done)
check "QEMU names its vCPU thread 'CPU 0/KVM' (tid ${tid:-none})" test -n "$tid"
check "the guest's entry is QEMU's pid with that vCPU thread" sh -c "grep -q '\"pid\": $qpid' $W/list.json && tr -d ' \n' < $W/list.json | grep -q '\"vcpus\":\[$tid\]'"
kill -9 $qpid; wait $qpid 2>/dev/null
gone() { vdctl vm list --json > $W/list.json 2>&1 && ! grep -q '"name": "desk9"' $W/list.json; }
wait_for "after QEMU is killed the guest leaves the list" 30 gone
kill -TERM $D; wait $D; rc=$?
check "vdd exits 0 on SIGTERM (exit $rc)" test $rc = 0
stop_server name

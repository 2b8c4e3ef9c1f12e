# vd-timeout: 300
# vdd sees a real stock QEMU guest (issue 14, first step): a Linux guest doing disk I/O through
# vd_front (`io-loop` on /dev/vdb0), started the way libvirt starts QEMU (`-name
# guest=desk9,debug-threads=on`), is found through KVM's debugfs; `vdctl vm list` names it from
# QEMU's command line and lists its vCPU thread (QEMU's `CPU 0/KVM`); its vd requests count as
# its own (EVTCHN/s: the channel's kicker is QEMU) and the server that created the channel is no
# VM. After QEMU is killed, the VM leaves the list.
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
# The guest's vd requests are its own: vd_evtchn names QEMU as its channel's kicker (QEMU's vCPU
# thread takes the guest's doorbell write through KVM's ioeventfd), so vdd counts them for QEMU,
# and the server, which only created the channel, is no VM.
vdctl evtchn list --json > $W/evtchn.json || fail "vdctl evtchn list --json"
check "the guest's channel was created by the server ($srv) and is kicked by QEMU ($qpid)" \
    test "$(kicked_channels $W/evtchn.json $srv $qpid)" -ge 1
evtchn_rate() {
    vdctl vm list --json > $W/list.json 2>&1 || return 1
    awk -v q="$qpid" '/"pid": / { v = $2; sub(/,/, "", v); cur = v }
        /"evtchn_requests": / { v = $2; sub(/,/, "", v); if (cur == q && v + 0 > 0) f = 1 }
        END { exit !f }' $W/list.json
}
wait_for "vdctl vm list gives the guest (QEMU $qpid) a nonzero EVTCHN/s" 30 evtchn_rate
vdctl vm list
check "the server (pid $srv) is not listed as a VM" sh -c "! grep -Eq '\"pid\": $srv,?\$' $W/list.json"
kill -9 $qpid; wait $qpid 2>/dev/null
gone() { vdctl vm list --json > $W/list.json 2>&1 && ! grep -q '"name": "desk9"' $W/list.json; }
wait_for "after QEMU is killed the guest leaves the list" 30 gone
kill -TERM $D; wait $D; rc=$?
check "vdd exits 0 on SIGTERM (exit $rc)" test $rc = 0
stop_server name

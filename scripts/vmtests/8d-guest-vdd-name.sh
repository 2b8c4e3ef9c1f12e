# vd-timeout: 300
# vdd sees a real stock QEMU guest (issue 14, first step): a Linux guest doing disk I/O through
# vd_front (`io-loop` on /dev/vdb0), started the way libvirt starts QEMU (`-name
# guest=desk9,debug-threads=on`), is found through KVM's debugfs; `vdctl vm list` names it from
# QEMU's command line and lists its vCPU thread (QEMU's `CPU 0/KVM`); its vd requests count as
# its own (EVTCHN/s: the channel's kicker is QEMU) and the server that created the channel is no
# VM. With a threshold under the guest's rate vdd places its vCPU thread on the driver core, and
# restores it when QEMU is stopped (issue 14, placement of real QEMU vCPU threads); the same for a
# second guest doing virtio-blk I/O (no vd), seen through KVM's debugfs alone. After QEMU is
# killed, the VM leaves the list.
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
# Placement of the real guest (issue 14): with the threshold under its rate, vdd moves its vCPU
# thread to the driver core (CPU 1) with the short EEVDF slice (500 us) and leaves QEMU's other
# threads alone; with QEMU stopped (SIGSTOP: no exits, no vd requests) it restores the thread's
# original affinity and slice once the rate has stayed under threshold - hysteresis for hold_ms.
# aff TID / aff_is TID LIST / slice TID: a thread of QEMU $qpid (or of ${in_qemu}, if set).
aff() { awk '/^Cpus_allowed_list/ {print $2}' /proc/${in_qemu:-$qpid}/task/$1/status 2>/dev/null; }
aff_is() { [ "$(aff $1)" = "$2" ]; }
slice() { awk '/^se.slice/ {print $3}' /proc/${in_qemu:-$qpid}/task/$1/sched 2>/dev/null | cut -d. -f1; }
base=$(cat /sys/kernel/debug/sched/base_slice_ns)
check "the vCPU thread starts on every CPU (affinity 0-1)" aff_is $tid 0-1
check "lower the hysteresis, then the threshold, and shorten the hold (vdctl policy set)" sh -c \
    'vdctl policy set hysteresis 1 && vdctl policy set threshold 2 && vdctl policy set hold_ms 1000'
wait_for "vdd places the guest's vCPU thread ($tid) on the driver core" 30 aff_is $tid 1
vdctl vm list
check "vdctl vm list shows desk9 placed" sh -c "vdctl vm list | grep -Eq '^$qpid +desk9 +placed'"
check "its slice is 500 us (se.slice $(slice $tid))" test "$(slice $tid)" = 500000
check "QEMU's other threads were not moved" sh -c "for t in \$(ls /proc/$qpid/task); do [ \$t = $tid ] && continue; [ \"\$(awk '/^Cpus_allowed_list/ {print \$2}' /proc/$qpid/task/\$t/status)\" = 0-1 ] || exit 1; done"
kill -STOP $qpid
wait_for "with QEMU stopped (no I/O), vdd restores the vCPU thread's affinity" 30 aff_is $tid 0-1
check "and its slice (se.slice back to the default $base)" test "$(slice $tid)" = "$base"
grep -E "placed VM $qpid|restored VM $qpid" $W/vdd.log
kill -CONT $qpid
# A guest doing virtio I/O (virtio-blk, no vd): its doorbell is an ioeventfd the kernel serves,
# a fast MMIO exit that neither io_exits nor mmio_exits counts, so vdd sees it only through
# KVM's other exits (`other_exits_weight`). With the weight at 0 (the default) vdd leaves it
# alone; with 1 it places its vCPU thread and, once QEMU is stopped, restores it.
vimg=$W/virtio.img; truncate -s 64M $vimg
GUEST_APPEND="vd.disk=virtio" start_guest virt io-loop \
    -drive file=$vimg,if=none,id=d1,format=raw -device virtio-blk-pci,drive=d1 -name guest=virt9,debug-threads=on
vqpid=$GUEST_PID; in_qemu=$vqpid
looping() { guest_running virt || fail "the virtio guest stopped: $(tail -5 /tmp/guest-virt.console)"; grep -q "io-loop: 20 rounds" /tmp/guest-virt.console; }
wait_for "the virtio guest loops on its virtio-blk disk (20 rounds)" 150 looping
vtid=$(for t in /proc/$vqpid/task/*; do [ "$(cat $t/comm)" = "CPU 0/KVM" ] && basename $t; done)
vrates() { # vrates: the virtio guest's rates in vdctl vm list --json (keys sorted), on one line
    vdctl vm list --json | tr -d ' \n' | sed 's/.*"name":"virt9","pid":'$vqpid',//; s/,"state".*//' | grep -o '"rates":{[^}]*}'
}
rated() { vrates | grep -q '"other_exits"'; }
wait_for "vdctl vm list names the virtio guest virt9 (QEMU pid $vqpid) with its rates" 30 rated
vrates
vr=$(vrates)
other=$(echo "$vr" | grep -o '"other_exits":[0-9.]*' | cut -d: -f2 | cut -d. -f1)
io=$(echo "$vr" | grep -o '"io_exits":[0-9.]*' | cut -d: -f2 | cut -d. -f1)
mmio=$(echo "$vr" | grep -o '"mmio_exits":[0-9.]*' | cut -d: -f2 | cut -d. -f1)
echo "virtio guest doing I/O: io_exits ${io}/s, mmio_exits ${mmio}/s, other exits ${other}/s"
check "its I/O shows in KVM's other exits (${other}/s), not in io_exits + mmio_exits (${io} + ${mmio}/s, under the threshold of 2/s)" \
    test "${other:-0}" -gt 100 -a $(( ${io:-9} + ${mmio:-9} )) -lt 2
check "with other_exits_weight 0 vdd leaves its vCPU thread ${vtid:-none} where it is (affinity $(aff $vtid))" aff_is $vtid 0-1
check "vdctl policy set other_exits_weight 1" vdctl policy set other_exits_weight 1
wait_for "vdd now places the virtio guest's vCPU thread (${vtid:-none}) on the driver core" 30 aff_is $vtid 1
vdctl vm list
check "its slice is 500 us (se.slice $(slice $vtid))" test "$(slice $vtid)" = 500000
kill -STOP $vqpid
wait_for "with the virtio guest's QEMU stopped, vdd restores its vCPU thread" 30 aff_is $vtid 0-1
kill -CONT $vqpid; kill -9 $vqpid; wait $vqpid 2>/dev/null; in_qemu=
kill -9 $qpid; wait $qpid 2>/dev/null
gone() { vdctl vm list --json > $W/list.json 2>&1 && ! grep -q '"name": "desk9"' $W/list.json; }
wait_for "after QEMU is killed the guest leaves the list" 30 gone
kill -TERM $D; wait $D; rc=$?
check "vdd exits 0 on SIGTERM (exit $rc)" test $rc = 0
stop_server name

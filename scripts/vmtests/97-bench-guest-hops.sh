# vd-timeout: 600
# make bench (issue 12): where a stock QEMU guest's vd disk request spends its time, hop by hop,
# on one clock. vd_front (guest) and vd_evtchn (host) stamp each request with the TSC (their
# debugfs `hops`, rust/vd/hops.rs); KVM's tsc-offset of the guest's vCPU turns the guest's stamps
# into the host's, and `vd-itest hops` pairs the two traces request by request: doorbell (guest
# publish -> the kick in vd_evtchn's wait-queue entry), wake-up (-> work item), backend (file
# I/O), signal (-> call eventfd = QEMU's MSI-X irqfd), interrupt (-> vd_front's handler),
# completion (-> request ended). One guest, two vd disks on two servers and two images: vdb0 on
# an ivshmem-doorbell with `ioeventfd=on` (QEMU's default: the doorbell is a KVM ioeventfd) and
# vdb1 with `ioeventfd=off` (the doorbell exits to QEMU's userspace, which signals the same
# eventfd): the difference in the doorbell hop is what the ioeventfd saves. 4k random reads at
# QD1 (fio, VD_HOPS_IOS requests per disk); the guest leaves each trace on its disk at 50 MiB.
# Fails when a trace cannot be read or paired.
. ./lib.sh
. ./guest-lib.sh
load vd_evtchn
grep -q " /sys/kernel/debug debugfs " /proc/mounts || mount -t debugfs none /sys/kernel/debug \
    || fail "mount debugfs"
H=/sys/kernel/debug/vd_evtchn/hops
[ -w $H ] || fail "no $H (vd_evtchn without the hop trace?)"
ios=${VD_HOPS_IOS:-2000}
for d in on off; do rm -f /tmp/hops-$d.img; truncate -s 64M /tmp/hops-$d.img; start_server h$d /tmp/hops-$d.img; done
GUEST_APPEND="vd.hops_ios=$ios vd.hops_disks=2"
echo 1 > $H || fail "turn vd_evtchn's hop trace on"
start_guest hops bench-hops \
    -chardev socket,path=/tmp/vd-hon.sock,id=vd-hon \
    -device ivshmem-doorbell,chardev=vd-hon,vectors=1,ioeventfd=on,addr=0x12 \
    -chardev socket,path=/tmp/vd-hoff.sock,id=vd-hoff \
    -device ivshmem-doorbell,chardev=vd-hoff,vectors=1,ioeventfd=off,addr=0x13
c=/tmp/guest-hops.console
# KVM's TSC offset of the guest's vCPU, read while it runs (its debugfs goes with the VM): once
# the first trace is printed, the guest's clock has been set up long ago.
off=""; ratio=""
while guest_running hops; do
    if grep -q '^VDHOPS ' $c; then
        v=$(ls -d /sys/kernel/debug/kvm/"$GUEST_PID"-*/vcpu0 2>/dev/null | head -1)
        [ -n "$v" ] || fail "no KVM debugfs directory of QEMU $GUEST_PID"
        off=$(cat $v/tsc-offset)
        [ -r $v/tsc-scaling-ratio ] && ratio=$(cat $v/tsc-scaling-ratio)
        break
    fi
    sleep 0.2
done
wait_guest hops || fail "guest: $GUEST_RESULT"
echo 0 > $H
cp $H /tmp/hops.host
[ -n "$off" ] || fail "the guest printed no trace while it ran"
echo "KVM tsc-offset $off${ratio:+, tsc-scaling-ratio $ratio}; vd_evtchn: $(head -1 /tmp/hops.host)"
for s in on off; do stop_server h$s > /dev/null; done
for d in vdb0:on vdb1:off; do
    dev=${d%%:*}; mode=${d#*:}
    img=/tmp/hops-$mode.img
    dd if=$img bs=1M skip=50 count=4 2>/dev/null | tr -d '\000' > /tmp/hops-$dev.guest
    head -1 /tmp/hops-$dev.guest | grep -q '^hops ' || fail "$dev: no trace at 50 MiB of $img"
    echo "== $dev (ioeventfd=$mode, $(tr -d '\r' < $c | grep "^VDHOPS $dev " | cut -d' ' -f3)): $ios x 4k randread QD1"
    args="--host /tmp/hops.host --guest /tmp/hops-$dev.guest --tsc-offset $off ${ratio:+--tsc-ratio $ratio} --min-pairs $((ios / 2))"
    vd-itest hops $args > /tmp/hops-$dev.txt 2>&1; rc=$?
    cat /tmp/hops-$dev.txt
    [ $rc = 0 ] || fail "$dev: the traces did not pair (vd-itest hops exit $rc)"
    vd-itest hops $args --json > /tmp/hops-$dev.json || fail "$dev: vd-itest hops --json failed"
done
on=$(tr ',' '\n' < /tmp/hops-vdb0.json | sed -n 's/"total_median_ns"://p')
offt=$(tr ',' '\n' < /tmp/hops-vdb1.json | sed -n 's/"total_median_ns"://p')
awk -v a="$on" -v b="$offt" 'BEGIN { printf "round trip (guest publish -> request ended), median: ioeventfd on %.1f us, off %.1f us (%.2fx with the exit to QEMU)\n", a / 1000, b / 1000, b / a }'
rm -f /tmp/hops-on.img /tmp/hops-off.img
check "hop-by-hop traces of both disks paired (ioeventfd on and off)" test -s /tmp/hops-vdb0.json -a -s /tmp/hops-vdb1.json

# vd-timeout: 1200
# make bench: a nested QEMU guest's disk through vd (vd-ivshmem-server + ivshmem-doorbell ->
# vd_front's /dev/vdb0) vs. QEMU's virtio-blk-pci on the same kind of image (tmpfs, cache=writeback
# on both: the image lives in the test VM's page cache either way, vd's backend does buffered
# reads/writes of the file, and O_DIRECT on tmpfs has no device under it to bypass anything to),
# without and with an iothread. One guest boot per path; the guest (scripts/guest-bench.sh) runs
# fio cases in sequence: 4k randread/randwrite at QD1 and QD16, 1m read/write at QD4, libaio,
# direct=1, VD_BENCH_SECS (5) each. Per case and path:
#   iops, clat p50/p99 (us)  fio's own numbers (terse output, parsed in the guest)
#   uexit/req  KVM exits to QEMU's userspace per request: the VM's debugfs sums mmio_exits
#              (counted only when an MMIO access is handed to userspace, x86.c) + io_exits
#              (every PIO intercept, svm.c: an upper bound on PIO to userspace) over the case
#   exit/req   every VM exit (`exits`) per request
#   qemu-us    QEMU's utime+stime (/proc/PID/stat) per request
#   cpu-us     the test VM's total non-idle CPU time (/proc/stat: all but idle and iowait) per
#              request: QEMU + the vd_evtchn worker + everything else (the test VM is quiet)
# Counters are sampled when the guest's VDBENCH-START/END lines appear on its console (polled
# every 0.1 s: the window is a little wider than fio's run, and includes the marker lines' own
# serial-port exits: ~40 PIO exits per case).
. ./lib.sh
. ./guest-lib.sh
load vd_evtchn
secs=${VD_BENCH_SECS:-5}
GUEST_TIMEOUT=$((120 + secs * 8 * 6))
grep -q " /sys/kernel/debug debugfs " /proc/mounts || mount -t debugfs none /sys/kernel/debug || fail "mount debugfs"
cases="randread-4k-qd1 randwrite-4k-qd1 randread-4k-qd16 randwrite-4k-qd16 read-1m write-1m"

sample() { # sample PID: exits io_exits mmio_exits qemu_ticks nonidle_ticks
    d=$(ls -d /sys/kernel/debug/kvm/"$1"-* 2>/dev/null | head -1)
    [ -n "$d" ] || { echo "none"; return; }
    echo "$(cat $d/exits) $(cat $d/io_exits) $(cat $d/mmio_exits)" \
        "$(awk '{ print $14 + $15 }' /proc/$1/stat)" \
        "$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat)"
}

# bench PATH SCENARIO-DISK QEMU-ARGS...: one boot; results in /tmp/bench-PATH.res as
# "case ios iops p50 p99 uexits exits qemu_ticks cpu_ticks"
bench() {
    p=$1; GUEST_APPEND="vd.bench_secs=$secs vd.disk=$2"; shift 2
    : > /tmp/bench-$p.res
    start_guest bench-$p bench-blk "$@"
    c=/tmp/guest-bench-$p.console; seen=0
    while guest_running bench-$p || [ "$(grep -c '^VDBENCH-\(START\|END\) ' $c)" -gt $seen ]; do
        n=$(grep -c '^VDBENCH-\(START\|END\) ' $c)
        while [ $seen -lt $n ]; do
            seen=$((seen + 1))
            l=$(grep '^VDBENCH-\(START\|END\) ' $c | sed -n ${seen}p | tr -d '\r')
            echo "$l $(sample $GUEST_PID)" >> /tmp/bench-$p.samples
        done
        guest_running bench-$p || break
        sleep 0.1
    done
    wait_guest bench-$p || fail "$p: $GUEST_RESULT"
    for k in $cases; do
        r=$(grep -a "^VDBENCH $k " $c | tr -d '\r' | head -1)
        [ -n "$r" ] || fail "$p: no result for $k"
        s0=$(grep "^VDBENCH-START $k " /tmp/bench-$p.samples | head -1 | cut -d' ' -f3-)
        s1=$(grep "^VDBENCH-END $k " /tmp/bench-$p.samples | head -1 | cut -d' ' -f3-)
        case "$s0 $s1" in *none*|" "*|*" ") fail "$p $k: no KVM counters sampled (debugfs?)" ;; esac
        echo "$r" | awk -v k=$k -v a="$s0" -v b="$s1" '{
            split(a, x, " "); split(b, y, " ")
            for (i = 3; i <= 6; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            print k, v["ios"], v["iops"], v["p50"], v["p99"], (y[2] - x[2]) + (y[3] - x[3]),
                y[1] - x[1], y[4] - x[4], y[5] - x[5] }' >> /tmp/bench-$p.res
    done
    echo "$p:"; cat /tmp/bench-$p.res
}
rm -f /tmp/bench-*.samples
img=/tmp/bench.img
rm -f $img; truncate -s 64M $img
start_server bench $img
bench vd vd $(vd_disk_args bench)
stop_server bench || fail "vd-ivshmem-server did not exit on SIGTERM"
drv="-drive file=$img,if=none,id=d0,format=raw,cache=writeback"
bench virtio virtio $drv -device virtio-blk-pci,drive=d0
bench virtio-iot virtio $drv -object iothread,id=io0 -device virtio-blk-pci,drive=d0,iothread=io0
rm -f $img

echo
echo "guest block I/O, ${secs}s per case, one boot per path (vd = vd_front/vd_evtchn; virtio ="
echo "virtio-blk-pci cache=writeback; virtio-iot = the same with an iothread); image in tmpfs"
awk -v cases="$cases" '
    FNR == 1 { f++ ; name = (f == 1) ? "vd" : (f == 2) ? "virtio" : "virtio-iot" }
    { ios[name, $1] = $2; iops[name, $1] = $3; p50[name, $1] = $4; p99[name, $1] = $5
      ue[name, $1] = $6; ex[name, $1] = $7; qt[name, $1] = $8; ct[name, $1] = $9 }
    END {
        printf "%-18s %-10s %8s %8s %8s %9s %8s %8s %8s\n", "case", "path", "iops", "p50us",
            "p99us", "uexit/req", "exit/req", "qemu-us", "cpu-us"
        n = split(cases, cs, " ")
        for (i = 1; i <= n; i++) {
            k = cs[i]
            for (j = 1; j <= 3; j++) {
                p = (j == 1) ? "vd" : (j == 2) ? "virtio" : "virtio-iot"
                r = ios[p, k] > 0 ? ios[p, k] : 1
                printf "%-18s %-10s %8d %8s %8s %9.2f %8.2f %8.1f %8.1f\n", k, p, iops[p, k],
                    p50[p, k], p99[p, k], ue[p, k] / r, ex[p, k] / r, qt[p, k] * 10000 / r,
                    ct[p, k] * 10000 / r
            }
            printf "%-18s %-10s %8.2fx %8.2fx %8.2fx   (vd/virtio)  iops %.2fx vs virtio-iot\n", k,
                "ratio", iops["vd", k] / (iops["virtio", k] > 0 ? iops["virtio", k] : 1),
                p50["vd", k] / (p50["virtio", k] > 0 ? p50["virtio", k] : 1),
                p99["vd", k] / (p99["virtio", k] > 0 ? p99["virtio", k] : 1),
                iops["vd", k] / (iops["virtio-iot", k] > 0 ? iops["virtio-iot", k] : 1)
        }
        for (i = 1; i <= 2; i++) {
            k = cs[i]; r = iops["vd", k] / (iops["virtio", k] > 0 ? iops["virtio", k] : 1)
            printf "GOAL %s: vd/virtio iops %.2fx (goal >= 1.5x): %s; vd userspace exits/req %.3f (goal 0): %s\n",
                k, r, ((r >= 1.5) ? "met" : "NOT met"), ue["vd", k] / ((ios["vd", k] > 0) ? ios["vd", k] : 1),
                ((ue["vd", k] / ((ios["vd", k] > 0) ? ios["vd", k] : 1) < 0.01) ? "met" : "NOT met")
        }
    }' /tmp/bench-vd.res /tmp/bench-virtio.res /tmp/bench-virtio-iot.res || fail "the table (awk)"
rmmod vd_evtchn || fail "rmmod vd_evtchn after the guests"
echo "ok: bench-guest-blk"

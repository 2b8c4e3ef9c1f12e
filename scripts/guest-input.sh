# Sourced by the nested guest's /init (scripts/guest-init.sh, scenario input-evdev, rounds:
# vd.input_rounds=N, default 1): issue 13,
# a host input device's events read from the guest's own evdev node. vd_front makes the vd input
# ring of an ivshmem-doorbell device an evdev device named "vd-input"; everything it reports is
# recorded by a plain `cat` of /dev/input/eventN (no reader-side buffering) until the host's end
# marker (KEY_F12 released) arrives, then summarised in the format `vd-itest input-feed` prints
# for what it sent. The comparison path (QEMU's input-linux + virtio-keyboard/-mouse/-tablet):
# vd.input_match=Virtio vd.input_devices=3 records every device whose name has that substring
# (the summary is over their recordings one after the other: keys and sums compare, the
# all-events hash does not):
#   events=N keys=K keyhash=H allhash=A relx=X rely=Y absx=AX absy=AY dropped=D
# (N: events other than EV_SYN; keyhash over EV_KEY (code, value) in order; allhash over every
# non-EV_SYN (type, code, value) in order; relx/rely: REL_X/REL_Y sums; absx/absy: the last
# ABS_X/ABS_Y; dropped: SYN_DROPPED reports). Values are u32 arithmetic modulo 2^32.
input_evdev() {
    rounds=1; match=vd-input; ndev=1; wait=300
    for a in $(cat /proc/cmdline); do
        case "$a" in
            vd.input_rounds=*) rounds=${a#vd.input_rounds=} ;;
            vd.input_match=*) match=${a#vd.input_match=} ;;
            vd.input_devices=*) ndev=${a#vd.input_devices=} ;;
            vd.input_wait=*) wait=${a#vd.input_wait=} ;;
        esac
    done
    if [ "$match" = vd-input ]; then
        [ -f /lib/modules/vd_front.ko ] || die "vd_front.ko is not in the guest initramfs (driver not built)"
        insmod /lib/modules/vd_front.ko || die "insmod vd_front.ko failed: $(dmesg | tail -3 | tr '\n' ' ')"
    fi
    # The evdev nodes of every input device whose name contains $match ($ndev of them).
    n=0; nodes=""
    while :; do
        nodes=$(awk -v m="$match" '/^N: Name=/ { f = index($0, m) > 0 } f && /^H: Handlers=/ { for (i = 2; i <= NF; i++) if ($i ~ /^event/) print $i } /^$/ { f = 0 }' /proc/bus/input/devices)
        [ "$(echo $nodes | wc -w)" -ge "$ndev" ] && break
        n=$((n + 1)); [ $n -le 300 ] || die "$(echo $nodes | wc -w) of $ndev input devices named *$match* 30 s after boot: $(grep '^N:' /proc/bus/input/devices | tr '\n' ' ') $(dmesg | grep -i vd_front | tail -3 | tr '\n' ' ')"
        sleep 0.1
    done
    dev=""
    for d in $nodes; do
        [ -c "/dev/input/$d" ] || die "/dev/input/$d is not a character device"
        dev="$dev${dev:+,}/dev/input/$d"
    done
    all=""; r=1
    while [ $r -le $rounds ]; do
        input_round $r
        all="$all round$r: $sum;"
        r=$((r + 1))
    done
    finish PASS "$dev:$all"
}

# input_round R: records $dev until the end marker (the host feeds after "input ready R"); sets
# sum to the summary.
input_round() {
    pids=""; files=""
    for d in $nodes; do
        cat "/dev/input/$d" > /tmp/ev.$1.$d &
        pids="$pids $!"; files="$files /tmp/ev.$1.$d"
    done
    step "input round $1 ready on $dev (*$match*)"
    echo "VDGUEST-INFO input ready $1 $dev"
    # Until the end marker: KEY_F12 (88) released, i.e. type 1, code 88, value 0.
    n=0
    until cat $files | od -An -v -tu2 -w24 | awk '$9 == 1 && $10 == 88 && $11 == 0 && $12 == 0 { f = 1 } END { exit !f }'; do
        n=$((n + 1)); [ $n -le $((wait * 10)) ] || die "round $1: no end marker within $wait s ($(($(cat $files | wc -c) / 24)) events read)"
        sleep 0.1
    done
    # Several devices: what the other devices still had to say arrives with the marker's frame.
    [ "$ndev" = 1 ] || sleep 1
    kill $pids
    sum=$(cat $files | od -An -v -tu2 -w24 | awk '
        function u32(v) { return v % 4294967296 }
        function s32(v) { return v >= 2147483648 ? v - 4294967296 : v }
        { t = $9; c = $10; v = $11 + $12 * 65536 }
        t == 0 && c == 3 { dropped++ }
        t == 0 { next }
        { n++; all = u32(all * 31 + t * 65536 + c + v * 3) }
        t == 1 { k++; kh = u32(kh * 31 + c * 4 + v) }
        t == 2 && c == 0 { rx += s32(v) }
        t == 2 && c == 1 { ry += s32(v) }
        t == 3 && c == 0 { ax = v }
        t == 3 && c == 1 { ay = v }
        END { printf "events=%d keys=%d keyhash=%.0f allhash=%.0f relx=%d rely=%d absx=%d absy=%d dropped=%d\n", n, k, kh, all, rx, ry, ax, ay, dropped }')
    step "input round $1: $sum"
}

# Sourced by the nested guest's /init (scripts/guest-init.sh, scenario input-evdev, rounds:
# vd.input_rounds=N, default 1): issue 13,
# a host input device's events read from the guest's own evdev node. vd_front makes the vd input
# ring of an ivshmem-doorbell device an evdev device named "vd-input"; everything it reports is
# recorded by a plain `cat` of /dev/input/eventN (no reader-side buffering) until the host's end
# marker (KEY_F12 released) arrives, then summarised in the format `vd-itest input-feed` prints
# for what it sent:
#   events=N keys=K keyhash=H allhash=A relx=X rely=Y absx=AX absy=AY dropped=D
# (N: events other than EV_SYN; keyhash over EV_KEY (code, value) in order; allhash over every
# non-EV_SYN (type, code, value) in order; relx/rely: REL_X/REL_Y sums; absx/absy: the last
# ABS_X/ABS_Y; dropped: SYN_DROPPED reports). Values are u32 arithmetic modulo 2^32.
input_evdev() {
    [ -f /lib/modules/vd_front.ko ] || die "vd_front.ko is not in the guest initramfs (driver not built)"
    insmod /lib/modules/vd_front.ko || die "insmod vd_front.ko failed: $(dmesg | tail -3 | tr '\n' ' ')"
    n=0; node=""
    while [ -z "$node" ]; do
        node=$(awk '/^N: Name="vd-input"/ { f = 1 } f && /^H: Handlers=/ { for (i = 2; i <= NF; i++) if ($i ~ /^event/) { print $i; exit } } /^$/ { f = 0 }' /proc/bus/input/devices)
        [ -n "$node" ] && break
        n=$((n + 1)); [ $n -le 300 ] || die "no vd-input device 30 s after insmod vd_front: $(dmesg | grep -i vd_front | tail -3 | tr '\n' ' ')"
        sleep 0.1
    done
    dev=/dev/input/$node
    [ -c "$dev" ] || die "$dev is not a character device"
    rounds=1
    for a in $(cat /proc/cmdline); do case "$a" in vd.input_rounds=*) rounds=${a#vd.input_rounds=} ;; esac; done
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
    ev=/tmp/ev.$1
    cat "$dev" > $ev &
    catpid=$!
    step "input round $1 ready on $dev (vd-input)"
    echo "VDGUEST-INFO input ready $1 $dev"
    # Until the end marker: KEY_F12 (88) released, i.e. type 1, code 88, value 0.
    n=0
    until od -An -v -tu2 -w24 $ev | awk '$9 == 1 && $10 == 88 && $11 == 0 && $12 == 0 { f = 1 } END { exit !f }'; do
        n=$((n + 1)); [ $n -le 3000 ] || die "round $1: no end marker within 300 s ($(($(wc -c < $ev) / 24)) events read)"
        sleep 0.1
    done
    kill $catpid
    sum=$(od -An -v -tu2 -w24 $ev | awk '
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

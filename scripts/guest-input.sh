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
    rounds=1; match=vd-input; ndev=1; wait=300; tags=0
    for a in $(cat /proc/cmdline); do
        case "$a" in
            vd.input_tags=*) tags=${a#vd.input_tags=} ;;
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
        nodes=""
        for e in /sys/class/input/event*; do
            case "$(cat "$e/device/name" 2>/dev/null)" in *"$match"*) nodes="$nodes ${e##*/}" ;; esac
        done
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
    sum=$(cat $files | od -An -v -tu2 -w24 | awk -v tags="$tags" '
        function u32(v) { return v % 4294967296 }
        function s32(v) { return v >= 2147483648 ? v - 4294967296 : v }
        { t = $9; c = $10; v = $11 + $12 * 65536 }
        t == 0 && c == 3 { dropped++ }
        # vd.input_tags=1: frames of vd-itest input-focus-guests (a key, REL_X t, REL_Y -t,
        # REL_WHEEL; the key of frame t is pressed if t is odd, released if even) are whole or
        # not; their tags t count, sum, sum of squares, and rise. A focus switch between a press
        # and its release: the host releases the key in the guest left behind (a frame of just
        # that release, for a key it holds), and this guest`s input core drops the release of a
        # key it does not hold (frame t even without its key). Anything else is broken, and so
        # is a key still held at the end (stuck).
        t == 0 && c == 0 && fn > 0 {
            hk = (fn == 4 && ft[1] == 1) ? 1 : 0
            if (fn == 3 + hk && ft[1+hk] == 2 && fc[1+hk] == 0 && ft[2+hk] == 2 && fc[2+hk] == 1 && fv[2+hk] == -fv[1+hk] && ft[3+hk] == 2 && fc[3+hk] == 8 && (hk || fv[1] % 2 == 0)) {
                g = fv[1+hk]; whole++; tsum += g; tsq += g * g; if (g <= last) order = 1; last = g
                if (hk) down[fc[1]] = fv[1]; else keyless++
            } else if (fn == 1 && ft[1] == 1 && fc[1] != 88 && fv[1] == 0 && down[fc[1]] == 1) {
                down[fc[1]] = 0; released++
            } else if (!(fn == 1 && ft[1] == 1 && fc[1] == 88)) broken++
            fn = 0
        }
        t == 0 { next }
        { fn++; ft[fn] = t; fc[fn] = c; fv[fn] = s32(v) }
        { n++; all = u32(all * 31 + t * 65536 + c + v * 3) }
        t == 1 { k++; kh = u32(kh * 31 + c * 4 + v) }
        t == 2 && c == 0 { rx += s32(v) }
        t == 2 && c == 1 { ry += s32(v) }
        t == 3 && c == 0 { ax = v }
        t == 3 && c == 1 { ay = v }
        END { printf "events=%d keys=%d keyhash=%.0f allhash=%.0f relx=%d rely=%d absx=%d absy=%d dropped=%d", n, k, kh, all, rx, ry, ax, ay, dropped
              if (tags) {
                  for (c in down) if (down[c] == 1) stuck++
                  printf " tagged=%d tagsum=%.0f tagsq=%.0f split=%d disorder=%d keyless=%d released=%d stuck=%d", whole, tsum, tsq, broken + (fn > 0), order, keyless, released, stuck
              }
              printf "\n" }')
    step "input round $1: $sum"
}

# Scenario input-latency (make bench, 96-bench-guest-input): the guest's reader for the latency
# benchmark. vd_front's "vd-input" device and QEMU's virtio keyboard are read by `vd-itest
# input-echo` (from the tools disk), which echoes every key event into the ivshmem-plain device at
# PCI 00:11.0 (vd.echo_bdf=) for the host to see; it exits when the host's end key arrived on both.
input_latency() {
    bdf=0000:00:11.0
    for a in $(cat /proc/cmdline); do case "$a" in vd.echo_bdf=*) bdf=${a#vd.echo_bdf=} ;; esac; done
    bin=$(find /tools -name vd-itest -type f | head -1)
    [ -n "$bin" ] || die "vd-itest is not on the tools disk"
    [ -f /lib/modules/vd_front.ko ] || die "vd_front.ko is not in the guest initramfs (driver not built)"
    insmod /lib/modules/vd_front.ko || die "insmod vd_front.ko failed: $(dmesg | tail -3 | tr '\n' ' ')"
    [ -e "/sys/bus/pci/devices/$bdf/resource2" ] || die "no echo device at $bdf"
    vd=""; vi=""; n=0
    while [ -z "$vd" ] || [ -z "$vi" ]; do
        for e in /sys/class/input/event*; do
            case "$(cat "$e/device/name" 2>/dev/null)" in
                vd-input) vd=/dev/input/${e##*/} ;;
                *"Virtio Keyboard"*) vi=/dev/input/${e##*/} ;;
            esac
        done
        n=$((n + 1)); [ $n -le 300 ] || die "input devices 30 s after boot: vd-input '$vd', virtio keyboard '$vi': $(grep '^N:' /proc/bus/input/devices | tr '\n' ' ')"
        [ -n "$vd" ] && [ -n "$vi" ] || sleep 0.1
    done
    step "latency reader on $vd (vd) and $vi (virtio), echo memory $bdf"
    "$bin" input-echo --shm "/sys/bus/pci/devices/$bdf/resource2" "$vd" "$vi" > /tmp/echo.out 2>&1 &
    epid=$!
    n=0
    until grep -q '^ECHO ready' /tmp/echo.out; do
        kill -0 $epid 2>/dev/null || die "input-echo: $(cat /tmp/echo.out)"
        n=$((n + 1)); [ $n -le 300 ] || die "input-echo not ready in 30 s"
        sleep 0.1
    done
    echo "VDGUEST-INFO input latency ready"
    wait $epid || die "input-echo: $(tail -3 /tmp/echo.out | tr '\n' ' ')"
    finish PASS "$(tail -1 /tmp/echo.out)"
}

# Scenario input-caps (8c-guest-input-caps): the capabilities vd_front gave its "vd-input"
# device, printed by `vd-itest input-caps` from the tools disk (the host compares them with the
# union of the devices routed when QEMU connected).
input_caps() {
    bin=$(find /tools -name vd-itest -type f | head -1)
    [ -n "$bin" ] || die "vd-itest is not on the tools disk"
    insmod /lib/modules/vd_front.ko || die "insmod vd_front.ko failed: $(dmesg | tail -3 | tr '\n' ' ')"
    n=0; sys=""
    while [ -z "$sys" ]; do
        for e in /sys/class/input/event*; do
            [ "$(cat "$e/device/name" 2>/dev/null)" = vd-input ] && sys=$(readlink -f "$e/device")
        done
        n=$((n + 1)); [ $n -le 300 ] || die "no vd-input device 30 s after boot: $(dmesg | grep -i vd_front | tail -3 | tr '\n' ' ')"
        [ -n "$sys" ] || sleep 0.1
    done
    out=$("$bin" input-caps --sys "$sys" 2>&1) || die "input-caps: $out"
    finish PASS "$out"
}

#!/bin/sh
# /init of the nested guest (busybox sh; the same bzImage as the test VM, booted by QEMU inside
# the test VM, see scripts/vmtests/guest-lib.sh). Runs one scenario named on the kernel command
# line and prints its verdict on the console, then powers off:
#   VDGUEST PASS <scenario>[: detail]     VDGUEST FAIL <scenario>: why
# Parameters: vd.scenario=boot|fio-verify|mkfs|virtio-verify|io-loop|server-restart|bench-hops|... (the case below), vd.disk=/dev/... (default: /dev/vdb0;
# for virtio-verify, or vd.disk=virtio, the virtio-blk disk that is not the tools disk),
# vd.fio_size=<fio size, default 16m>, vd.expect=REASON:N,... (probe-refused: see refusal_text). fio and mkfs.ext4 come from the tools disk (see tools()).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
echo "VDGUEST-INFO init started at $(cut -d' ' -f1 /proc/uptime)s guest uptime"
scenario=""; disk=""; fio_size=16m; expect=""; pattern_lines=65536
for a in $(cat /proc/cmdline); do
    case "$a" in
        vd.scenario=*) scenario=${a#vd.scenario=} ;;
        vd.disk=*) disk=${a#vd.disk=} ;;
        vd.tcg=1) fio_size=4m ;; # the guest runs under TCG (make test): a quarter of the data
        vd.fio_size=*) fio_size=${a#vd.fio_size=} ;;
        vd.pattern_lines=*) pattern_lines=${a#vd.pattern_lines=} ;;
        vd.expect=*) expect=${a#vd.expect=} ;;
    esac
done

finish() { # finish PASS|FAIL detail: the verdict (a clean kernel log is part of it), then off
    verdict=$1; detail=$2
    bad=$(dmesg | grep -E 'Oops|BUG:|WARNING:|kernel BUG|general protection|Call Trace|KASAN|UBSAN' | head -1)
    if [ "$verdict" = PASS ] && [ -n "$bad" ]; then verdict=FAIL; detail="kernel log: $bad"; fi
    if [ "$verdict" != PASS ]; then
        echo "==== GUEST DMESG BEGIN"; dmesg; echo "==== GUEST DMESG END"
    fi
    echo "VDGUEST $verdict $scenario${detail:+: $detail}"
    # The serial console drains behind the guest: give it a second before the power goes (the
    # harness waits for the VDGUEST line, not for this).
    sleep 1
    poweroff -f
    exit 1
}
die() { finish FAIL "$*"; }
step() { echo "VDGUEST-INFO $* at $(cut -d' ' -f1 /proc/uptime)s"; }

# wait_dev DEV SECONDS: the disk's node appears (the driver probes asynchronously).
wait_dev() {
    n=0
    while [ ! -b "$1" ]; do
        n=$((n + 1)); [ $n -le $(($2 * 10)) ] || return 1; sleep 0.1
    done
}

# virtio_disk SERIAL: the virtio-blk disk (vdX) whose serial is SERIAL ("" = the first without
# serial vdtools).
virtio_disk() {
    for b in /sys/block/vd[a-z]*; do
        [ -e "$b/serial" ] || continue
        s=$(cat "$b/serial")
        if [ -n "$1" ]; then [ "$s" = "$1" ] || continue; else [ "$s" != vdtools ] || continue; fi
        echo "/dev/${b##*/}"; return 0
    done
    return 1
}

# tools: fio and mkfs.ext4 with their libraries, from the read-only tools disk (serial vdtools)
# that scripts/vmtests/guest-lib.sh attaches, mounted at /tools; /usr, /lib64 and the library
# directory point there, so the binaries run as on the host.
tools() {
    n=0
    until t=$(virtio_disk vdtools); do
        n=$((n + 1)); [ $n -le 300 ] || die "no tools disk (a virtio-blk disk with serial vdtools)"
        sleep 0.1
    done
    mount -t ext4 -o ro "$t" /tools || die "mount the tools disk $t"
    step "tools disk $t mounted"
    ln -s /tools/usr /usr; ln -s /tools/lib64 /lib64
    ln -s /tools/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu
    # Debian's fio keeps its job table in SysV shared memory (the kernel config has SYSVIPC).
    [ -d /proc/sysvipc ] || die "no SysV IPC in this kernel (CONFIG_SYSVIPC): fio cannot run"
    # (No trial run of fio here: loading it with its ~70 libraries, all bound at load time, takes
    # ~10 s under nested TCG.)
}

vd_disk() { # loads vd_front and waits for its first disk
    [ -f /lib/modules/vd_front.ko ] || die "vd_front.ko is not in the guest initramfs (driver not built)"
    insmod /lib/modules/vd_front.ko || die "insmod vd_front.ko failed: $(dmesg | tail -3 | tr '\n' ' ')"
    wait_dev "$disk" 30 || die "$disk did not appear within 30 s after insmod vd_front: $(dmesg | grep -i vd_front | tail -3 | tr '\n' ' ')"
}

# fio_run LABEL: one fio pass of random writes of mixed sizes (4k-256k) over $fio_size of $disk,
# then a verify of every block (crc32c); dies on any error; FIO_SUMMARY says what it did.
fio_run() {
    step "fio $1"
    echo "\$ fio on $disk ($(cat /sys/block/${disk#/dev/}/size 2>/dev/null) sectors), size $fio_size"
    fio --name=verify --filename="$disk" --direct=1 --ioengine=libaio --iodepth=8 --eta=never \
        --rw=randwrite --bssplit=4k/60:16k/20:128k/10:256k/10 --size="$fio_size" --verify=crc32c --verify_fatal=1 \
        --do_verify=1 --randrepeat=0 --output=/tmp/fio.out
    rc=$?
    cat /tmp/fio.out
    step "fio $1 done"
    [ $rc = 0 ] || die "fio ($1) exited $rc"
    grep -q 'err= 0' /tmp/fio.out || die "fio ($1) reported errors: $(grep -o 'err=[^:]*' /tmp/fio.out | head -1)"
    w=$(grep -o 'WRITE: bw=[^ ]*' /tmp/fio.out | head -1)
    r=$(grep -o 'READ: bw=[^ ]*' /tmp/fio.out | head -1)
    n=$(grep -o 'issued rwts: total=[0-9]*,[0-9]*' /tmp/fio.out | head -1)
    [ -n "$r" ] || die "fio ($1) did not read back (no verify phase)"
    FIO_SUMMARY="fio randwrite + crc32c verify of $fio_size on $disk, err=0, ${n#issued } (read,write), $w, verify $r"
}

fio_verify() { fio_run verify; finish PASS "$FIO_SUMMARY"; }

mkfs_check() { # mkfs.ext4, mount, write a file, sync, read it back after a remount
    step "mkfs.ext4 $disk"
    mkfs.ext4 -q -F "$disk" > /tmp/mkfs.out 2>&1 || die "mkfs.ext4 $disk: $(cat /tmp/mkfs.out)"
    step "mount, write"
    mount -t ext4 "$disk" /mnt || die "mount $disk"
    dd if=/dev/urandom of=/tmp/data bs=64k count=64 2>/dev/null
    want=$(md5sum < /tmp/data)
    cp /tmp/data /mnt/data || die "write /mnt/data"
    step "sync"
    sync || die "sync"
    umount /mnt || die "umount"
    echo 3 > /proc/sys/vm/drop_caches
    mount -t ext4 "$disk" /mnt || die "mount $disk again"
    step "read back"
    got=$(md5sum < /mnt/data)
    umount /mnt || die "umount (2)"
    step "done"
    [ "$got" = "$want" ] || die "read back $got, wrote $want"
    finish PASS "ext4 on $disk: 4 MiB file written, synced, read back after a remount (md5 ${want%% *})"
}

# vd_pattern: 4 MiB of a known, non-repeating-per-block pattern (block numbers in each line)
# (vd.pattern_lines lines of 64 bytes, default 65536: 4 MiB.)
vd_pattern() { awk -v n="$pattern_lines" 'BEGIN { for (i = 0; i < n; i++) printf "vd-persist %08d abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG\n", i }'; }

# refusal_text REASON: vd_front's log line for a refused device, an extended regular expression
# (drivers/vd_front/geometry.rs GeomError::name after "not a vd disk: "; timeout: the size query
# nobody answers).
refusal_text() {
    case "$1" in
        magic) echo "not a vd disk: no vd ring magic" ;;
        version) echo "not a vd disk: unknown ring version" ;;
        slots) echo "not a vd disk: bad entries or slot size" ;;
        arrays) echo "not a vd disk: arrays not at the vd-ring offsets" ;;
        ring) echo "not a vd disk: ring larger than BAR2" ;;
        data) echo "not a vd disk: bad data area" ;;
        kind) echo "not a vd disk: device kind is not BLOCK" ;;
        # ETIMEDOUT's name without CONFIG_SYMBOLIC_ERRNAME: Error(110)
        timeout) echo "the size query failed: (ETIMEDOUT|Error\(110\))" ;;
        *) return 1 ;;
    esac
}

# probe_refused: every ivshmem device is bad (87-guest-bad's fake server); vd.expect= says how
# many refusals of each reason vd_front must log. No disk may appear, the kernel log stays clean,
# the module unloads.
probe_refused() {
    [ -n "$expect" ] || die "no vd.expect= on the kernel command line"
    [ -f /lib/modules/vd_front.ko ] || die "vd_front.ko is not in the guest initramfs"
    total=0
    for e in $(echo "$expect" | tr ',' ' '); do
        refusal_text "${e%%:*}" > /dev/null || die "vd.expect: unknown reason ${e%%:*}"
        total=$((total + ${e#*:}))
    done
    ndev=$(grep -l 0x1110 /sys/bus/pci/devices/*/device 2>/dev/null | wc -l)
    [ "$ndev" = "$total" ] || die "$ndev ivshmem devices (1af4:1110), vd.expect= names $total"
    step "insmod vd_front ($ndev ivshmem devices)"
    insmod /lib/modules/vd_front.ko || die "insmod vd_front.ko failed"
    # Probes may run asynchronously and the size query waits 5 s: wait for all the refusals
    # (60 s at most: a probe that hangs fails here).
    n=0
    refusals='vd_front .*(not a vd disk: |the size query failed)'
    while [ "$(dmesg | grep -E -c "$refusals")" -lt "$total" ]; do
        n=$((n + 1)); [ $n -le 600 ] || die "after 60 s only $(dmesg | grep -E -c "$refusals") of $total refusals logged: $(dmesg | grep vd_front | tr '\n' ' ')"
        sleep 0.1
    done
    step "refusals logged"
    summary=""
    for e in $(echo "$expect" | tr ',' ' '); do
        t=$(refusal_text "${e%%:*}")
        got=$(dmesg | grep -E -c "vd_front .*$t")
        [ "$got" = "${e#*:}" ] || die "'$t' logged $got times, want ${e#*:}: $(dmesg | grep vd_front | tr '\n' ' ')"
        summary="$summary ${e%%:*}=$got"
    done
    ls /dev/vdb* > /dev/null 2>&1 && die "a vd disk appeared: $(ls /dev/vdb*)"
    ls -d /sys/block/vdb* > /dev/null 2>&1 && die "a vd disk appeared: $(ls -d /sys/block/vdb*)"
    bound=$(ls -d /sys/bus/pci/drivers/vd_front/0000:* 2>/dev/null | wc -l)
    [ "$bound" = 0 ] || die "$bound devices bound to vd_front after refusals"
    rmmod vd_front || die "rmmod vd_front failed"
    grep -q '^vd_front ' /proc/modules && die "vd_front still loaded after rmmod"
    finish PASS "vd_front refused all $total ivshmem devices (${summary# }), no /dev/vdb*, rmmod ok"
}

# input_read: issue 13 (88-guest-input-fake): vd_front's input side against `vd-itest
# fake-ivshmem`'s input layouts. Finds the evdev device vd-input, reads one round of the fake's
# events (scripts/guest-input.sh's input_round: "input ready 1", then everything up to the end
# marker, summarised) and unloads vd_front. With vd.input_mode=broken the fake then breaks the
# ring ("input ready 2"): vd_front must log it once; then the fake publishes valid events and
# interrupts again ("input ready 3"): the interrupt runs (counted in /proc/interrupts) and the
# device reports nothing; vd_front still unloads.
vd_irqs() { awk '/ vd_front$/ { s = 0; for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i; print s; exit }' /proc/interrupts; }
input_read() {
    . /guest-input.sh
    mode=normal
    for a in $(cat /proc/cmdline); do case "$a" in vd.input_mode=*) mode=${a#vd.input_mode=} ;; esac; done
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
    phys=$(awk '/^N: Name="vd-input"/ { f = 1 } f && /^P: Phys=/ { sub(/^P: Phys=/, ""); print; exit }' /proc/bus/input/devices)
    # input_round's parameters (scripts/guest-input.sh): this one device, the default wait.
    nodes=$node; ndev=1; match=vd-input; wait=300; tags=0
    input_round 1
    detail="$dev ($phys): round1: $sum;"
    if [ "$mode" = broken ]; then
        broke='vd-input: the host broke the ring ('
        cat "$dev" > /tmp/ev.after &
        apid=$!
        echo "VDGUEST-INFO input ready 2 $dev"
        n=0
        until dmesg | grep -q "$broke"; do
            n=$((n + 1)); [ $n -le 600 ] || die "no broken-ring log line 60 s after the host broke the ring: $(dmesg | grep vd | tail -3 | tr '\n' ' ')"
            sleep 0.1
        done
        step "broken ring logged: $(dmesg | grep "$broke")"
        i0=$(vd_irqs)
        [ -n "$i0" ] || die "no vd_front line in /proc/interrupts"
        echo "VDGUEST-INFO input ready 3 $dev"
        n=0
        while [ "$(vd_irqs)" -le "$i0" ]; do
            n=$((n + 1)); [ $n -le 600 ] || die "the host's interrupt after the break never came ($i0 interrupts)"
            sleep 0.1
        done
        # The handler has run (one CPU: before this shell); give the reader a moment to copy
        # out anything evdev had queued (the host also checks that rsp_cons did not move).
        sleep 1
        kill $apid
        after=$(($(wc -c < /tmp/ev.after) / 24))
        [ "$after" = 0 ] || die "vd-input reported $after events after the ring broke"
        logs=$(dmesg | grep -c "$broke")
        [ "$logs" = 1 ] || die "the broken ring was logged $logs times, want once"
        why=$(dmesg | grep "$broke" | sed 's/.*the host broke the ring (//; s/): no more input.*//')
        detail="$detail broken ($why): logged once, interrupts $i0 -> $(vd_irqs), 0 events after the break;"
    fi
    rmmod vd_front || die "rmmod vd_front failed"
    grep -q '^vd_front ' /proc/modules && die "vd_front still loaded after rmmod"
    grep -q 'Name="vd-input"' /proc/bus/input/devices && die "vd-input still listed after rmmod"
    finish PASS "$detail rmmod ok"
}

# net_failover: issue 14 (8e-guest-vf-failover). The guest's standby virtio-net NIC
# (failover=on, MAC vd.mac=) gets a net_failover master; the host plugs and unplugs a VF with the
# same MAC (igbvf) under it. The master gets vd.ip= (CIDR), `vd-itest udp-echo` answers the host's
# probe on UDP 7777 until the host sends STOP. Every change of the master's lower devices (the
# standby, the VF) and of the VF's carrier is logged with the guest's uptime; the verdict gives
# how many datagrams went out through each lower device (from their tx counters).
net_failover() {
    mac=""; ip=""
    for a in $(cat /proc/cmdline); do
        case "$a" in vd.mac=*) mac=${a#vd.mac=} ;; vd.ip=*) ip=${a#vd.ip=} ;; esac
    done
    [ -n "$mac" ] && [ -n "$ip" ] || die "vd.mac= and vd.ip= are needed"
    tools
    bin=$(find /tools -name vd-itest -type f | head -1)
    [ -n "$bin" ] || die "no vd-itest on the tools disk"
    # The master: the netdev with that MAC that has lower devices (net_failover links its
    # standby, and later the VF, under it).
    master=""; n=0
    while [ -z "$master" ]; do
        for d in /sys/class/net/*; do
            [ "$(cat $d/address 2>/dev/null)" = "$mac" ] || continue
            ls -d $d/lower_* > /dev/null 2>&1 && master=${d##*/}
        done
        [ -n "$master" ] && break
        n=$((n + 1)); [ $n -le 300 ] || die "no net_failover master with MAC $mac: $(ls /sys/class/net)"
        sleep 0.1
    done
    lowers() { for l in /sys/class/net/$master/lower_*; do [ -e "$l" ] && printf '%s ' "${l##*/lower_}"; done; }
    ip link set lo up
    for l in $(lowers); do ip link set "$l" up; done
    ip link set "$master" up || die "ip link set $master up"
    ip addr add "$ip" dev "$master" || die "ip addr add $ip dev $master"
    step "net_failover master $master ($mac) has $ip; lower: $(lowers)"
    "$bin" udp-echo --port 7777 > /tmp/echo.out 2>&1 &
    echo_pid=$!
    prev=""; tx_by=""
    while kill -0 $echo_pid 2>/dev/null; do
        now=""
        for l in $(lowers); do
            f=$(cat /sys/class/net/$l/flags 2>/dev/null || echo 1)
            [ $((f & 1)) = 1 ] || ip link set "$l" up 2>/dev/null # a VF just plugged in is down
            now="$now $l:$(cat /sys/class/net/$l/carrier 2>/dev/null || echo -)"
            # Remember the last tx count of every lower seen (a VF's counters go with it).
            t=$(cat /sys/class/net/$l/statistics/tx_packets 2>/dev/null || echo 0)
            tx_by=$(echo "$tx_by" | tr ' ' '\n' | grep -v "^$l=" | tr '\n' ' ')"$l=$t "
        done
        if [ "$now" != "$prev" ]; then
            step "lower devices (name:carrier):$now"
            prev=$now
        fi
        sleep 0.1
    done
    wait $echo_pid; rc=$?
    step "$(tail -1 /tmp/echo.out)"
    [ $rc = 0 ] || die "udp-echo exited $rc: $(cat /tmp/echo.out)"
    finish PASS "$(tail -1 /tmp/echo.out); tx packets by lower device (last seen): $tx_by"
}

case "$scenario" in
    probe-refused) probe_refused ;; # issue 12 bad geometry (87-guest-bad): nothing binds
    boot)
        kvm=$(dmesg | grep -o 'Hypervisor detected: .*' | head -1)
        finish PASS "kernel $(uname -r), ${kvm:-no hypervisor detected}, $(grep -c ^processor /proc/cpuinfo) cpu, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)" ;;
    fio-verify)
        tools; disk=${disk:-/dev/vdb0}; vd_disk; fio_verify ;;
    mkfs)
        tools; disk=${disk:-/dev/vdb0}
        case "$disk" in
            /dev/vdb[0-9]*) vd_disk ;;
            virtio) disk=$(virtio_disk "") || die "no virtio-blk disk besides the tools disk" ;;
            *) wait_dev "$disk" 30 || die "$disk missing" ;;
        esac
        mkfs_check ;;
    virtio-verify)
        tools
        if [ -z "$disk" ]; then disk=$(virtio_disk "") || die "no virtio-blk disk besides the tools disk"; fi
        fio_verify ;;
    pattern-write) # issue 12 persistence (83-guest-persist): 4 MiB known pattern, fsync, sync
        disk=${disk:-/dev/vdb0}; vd_disk
        vd_pattern > /tmp/pattern
        want=$(md5sum < /tmp/pattern); want=${want%% *}
        dd if=/tmp/pattern of="$disk" bs=64k conv=fsync 2>/tmp/dd.out || die "dd to $disk: $(cat /tmp/dd.out)"
        sync || die "sync"
        # The block layer sent vd_front flushes (its disk has a volatile write cache): field 16
        # of the disk's stat is completed flush requests. (The host turns each into an fsync of
        # the image: 21-evtchn-shm counts them.)
        flushes=$(awk '{ print $16 }' "/sys/block/${disk#/dev/}/stat")
        [ "${flushes:-0}" -ge 1 ] || die "no flush reached $disk after conv=fsync and sync (stat: $(cat /sys/block/${disk#/dev/}/stat))"
        finish PASS "pattern written to $disk and synced (md5 $want, $flushes flushes completed)" ;;
    pattern-read) # issue 12 persistence: the pattern is on the disk after a guest/QEMU restart
        disk=${disk:-/dev/vdb0}; vd_disk
        echo 3 > /proc/sys/vm/drop_caches
        want=$(vd_pattern | md5sum); want=${want%% *}
        got=$(head -c $((pattern_lines * 64)) "$disk" | md5sum); got=${got%% *}
        [ "$got" = "$want" ] || die "the pattern's $pattern_lines lines at the start of $disk: md5 $got, pattern $want"
        finish PASS "pattern read back from $disk after a restart (md5 $want)" ;;
    bench-blk) tools; . /guest-bench.sh ;; # make bench's 94-bench-guest-blk (scripts/guest-bench.sh)
    bench-place) tools; . /guest-bench-place.sh ;; # make bench's 98-bench-guest-place (scripts/guest-bench-place.sh)
    bench-hops) # make bench's 97-bench-guest-hops: vd_front's hop trace (debugfs hops) of 4k random
        # reads at QD1 (vd.hops_ios, default 2000) on each of vd.hops_disks vd disks in turn; each
        # trace goes onto its own disk at 50 MiB (past fio's 48 MiB; the host reads it from the
        # image: a serial console would take ~100,000 nested exits per trace), and the console
        # says "VDHOPS vdbN <PCI address> <records>".
        tools; disk=/dev/vdb0; vd_disk
        ios=2000; ndisks=1
        for a in $(cat /proc/cmdline); do
            case "$a" in vd.hops_ios=*) ios=${a#vd.hops_ios=} ;; vd.hops_disks=*) ndisks=${a#vd.hops_disks=} ;; esac
        done
        last=/dev/vdb$((ndisks - 1)); wait_dev "$last" 30 || die "$last did not appear"
        mount -t debugfs none /sys/kernel/debug 2>/dev/null
        h=/sys/kernel/debug/vd_front/hops
        [ -w $h ] || die "no $h"
        i=0; summary=""
        while [ $i -lt "$ndisks" ]; do
            d=vdb$i; i=$((i + 1))
            pci=$(dmesg | sed -n "s/.*vd_front \([0-9a-f:.]*\): $d: .*/\1/p" | head -1)
            step "hops: fio 4k randread QD1, $ios requests on /dev/$d ($pci)"
            echo 1 > $h || die "turn the hop trace on"
            fio --name=hops --filename=/dev/$d --rw=randread --bs=4k --iodepth=1 --direct=1 \
                --ioengine=libaio --size=48m --number_ios="$ios" --output-format=terse \
                > /tmp/hops.out 2>&1 || die "fio on /dev/$d: $(tail -3 /tmp/hops.out)"
            echo 0 > $h
            cat $h > /tmp/hops.txt
            n=$(head -1 /tmp/hops.txt | cut -d' ' -f2)
            dd if=/tmp/hops.txt of=/dev/$d bs=1M seek=50 conv=fsync 2>/tmp/dd.out \
                || die "write the trace to /dev/$d: $(cat /tmp/dd.out)"
            echo "VDHOPS $d $pci $n"
            summary="$summary $d:$n"
        done
        finish PASS "hop traces (records per disk):$summary" ;;
    input-evdev) . /guest-input.sh; input_evdev ;; # issue 13 (82-guest-input): scripts/guest-input.sh
    input-latency) tools; . /guest-input.sh; input_latency ;; # make bench, 96-bench-guest-input
    input-caps) tools; . /guest-input.sh; input_caps ;; # 8c-guest-input-caps
    input-read) input_read ;; # issue 13 (88-guest-input-fake): vd_front's input side, fake host
    corrupt-eio) # issue 12 hostile guest (84-guest-hostile): vd_front's debug knob garbles the ring
        disk=${disk:-/dev/vdb0}; vd_disk
        mount -t debugfs none /sys/kernel/debug 2>/dev/null
        [ -w /sys/kernel/debug/vd_front/corrupt ] || die "no /sys/kernel/debug/vd_front/corrupt"
        echo 1 > /sys/kernel/debug/vd_front/corrupt || die "write the corrupt knob"
        if dd if=/dev/zero of="$disk" bs=4k count=1 conv=fsync 2>/tmp/dd.out; then
            die "a write after corrupting the ring succeeded"
        fi
        grep -q -e 'Input/output error' -e 'I/O error' /tmp/dd.out \
            || die "the write failed, but not with EIO: $(cat /tmp/dd.out)"
        finish PASS "after the corrupt knob, a write to $disk fails with EIO ($(head -1 /tmp/dd.out))" ;;
    io-loop) # issue 12, 85-guest-kill: vd I/O that never ends (write 1 MiB with fsync, read it
        # back uncached, compare) until the host kills QEMU; a mismatch or an error fails.
        # vd.disk=virtio: the same on the virtio-blk disk (8d-guest-vdd-name's virtio guest).
        case "${disk:-/dev/vdb0}" in
            virtio) disk=$(virtio_disk "") || die "no virtio-blk disk besides the tools disk" ;;
            *) disk=${disk:-/dev/vdb0}; vd_disk ;;
        esac
        dd if=/dev/urandom of=/tmp/blk bs=64k count=16 2>/dev/null
        step "io-loop on $disk"
        i=0
        while :; do
            i=$((i + 1)); at=$(( (i % 32) * 16 ))
            dd if=/tmp/blk of="$disk" bs=64k seek=$at conv=fsync 2>/tmp/dd.out || die "write $i: $(cat /tmp/dd.out)"
            echo 3 > /proc/sys/vm/drop_caches
            dd if="$disk" of=/tmp/back bs=64k skip=$at count=16 2>/tmp/dd.out || die "read $i: $(cat /tmp/dd.out)"
            cmp -s /tmp/blk /tmp/back || die "round $i: read back differs from what was written"
            [ $((i % 20)) != 0 ] || step "io-loop: $i rounds"
        done ;;
    server-restart) # issue 12, 86-guest-server-restart: fio verify while the host kills the server;
        # then the disk is polled (uncached reads through vd) until the host, having restarted
        # the server, writes "VDGO-RST" into the image at 60 MiB; then a second fio verify.
        tools; disk=${disk:-/dev/vdb0}; vd_disk
        fio_run before; first=$FIO_SUMMARY
        step "waiting for the host's go (VDGO-RST at 60 MiB of $disk)"
        n=0
        until [ "$(dd if="$disk" bs=4096 skip=15360 count=1 2>/dev/null | head -c 8)" = VDGO-RST ]; do
            n=$((n + 1)); [ $n -le 1500 ] || die "no go from the host within 300 s"
            sleep 0.2; echo 3 > /proc/sys/vm/drop_caches
        done
        step "go after $n polls"
        fio_run after
        finish PASS "before the restart: $first; after: $FIO_SUMMARY; $n uncached polls in between" ;;
    net-failover) net_failover ;; # issue 14 (8e-guest-vf-failover): a VF and its standby NIC
    "") die "no vd.scenario= on the kernel command line" ;;
    *) die "unknown scenario" ;;
esac

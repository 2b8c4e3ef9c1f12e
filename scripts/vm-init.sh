#!/bin/sh
# /init of the vd test VM (busybox). Mode from the kernel command line:
# vd.mode=demo|test|shell|bench|reconfig|guests|tcg-guests-a|tcg-guests-b,
# vd.tests="name ..." to run only some tests, vd.timeout=<s per test>.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
mount -t debugfs debugfs /sys/kernel/debug
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
ip link set lo up 2>/dev/null
mode=test; only=""; tmo=120
for a in $(cat /proc/cmdline); do
    case "$a" in
        vd.mode=*) mode=${a#vd.mode=} ;;
        vd.tests=*) only=$(echo "${a#vd.tests=}" | tr ',' ' ') ;;
        vd.timeout=*) tmo=${a#vd.timeout=} ;;
    esac
done
echo "VD-BOOT-OK mode=$mode cpus=$(nproc) kernel=$(uname -r)"
# Debug kernel: forget what boot itself left for kmemleak, so the final scan reports only what
# the tests leaked.
KML=/sys/kernel/debug/kmemleak
if [ -w $KML ]; then echo scan > $KML; echo clear > $KML; fi
export VD_MODS=/lib/modules

finish() {
    # Kernel log last, between markers, for the host's oops check and KTAP parsing.
    for f in /tmp/ktap/*.txt; do
        [ -f "$f" ] || continue
        echo "==== KTAP $(basename "$f" .txt) BEGIN"; cat "$f"; echo "==== KTAP END"
    done
    if [ -w $KML ]; then
        # Objects must stay unreferenced across scans (and be older than 5 s) to be reported.
        sleep 6; echo scan > $KML; sleep 1; echo scan > $KML
        echo "==== KMEMLEAK BEGIN"; cat $KML; echo "==== KMEMLEAK END"
    fi
    echo "==== DMESG BEGIN"; dmesg; echo "==== DMESG END"
    echo "VD-DONE"
    sleep 2
    reboot -f
}

case "$mode" in
demo)
    for m in vd_evtchn vd_sriov_mgr vd_input_irq; do
        insmod $VD_MODS/$m.ko && echo "loaded $m"
    done
    echo "\$ vdctl status"; vdctl status
    echo "\$ vdctl status --json"; vdctl status --json
    # The main job: a real (nested) KVM guest does its I/O through vd_evtchn: ring in shared
    # pages, doorbell by KVM_IOEVENTFD, in-kernel backend, interrupt by KVM_IRQFD.
    insmod $VD_MODS/kvm.ko && insmod $VD_MODS/kvm-amd.ko
    echo "\$ vd-testvmm evtchn --requests 2000 --batch 16"; vd-testvmm evtchn --requests 2000 --batch 16
    echo "\$ vd-testvmm evtchn --requests 2000 --batch 16 --path vmm   # the same, served by the VMM after exits"
    vd-testvmm evtchn --requests 2000 --batch 16 --path vmm
    # Issue 12: a stock QEMU guest (the same kernel, nested) whose disk is a vd_evtchn channel,
    # served by vd-ivshmem-server; the guest's driver vd_front; see scripts/vmtests/demo-guest.sh.
    echo "--- a stock QEMU guest with a vd disk"
    (cd /vd/tests && sh ./demo-guest.sh); guest=$?
    [ $guest = 0 ] || echo "VD-DEMO-FAIL: the guest part failed (above)"
    unloaded=0
    for m in vd_input_irq vd_sriov_mgr vd_evtchn; do rmmod $m && echo "unloaded $m" && unloaded=$((unloaded + 1)); done
    [ $guest = 0 ] && [ $unloaded = 3 ] && echo "VD-DEMO-OK"
    finish ;;
shell)
    for m in vd_evtchn vd_sriov_mgr vd_input_irq; do insmod $VD_MODS/$m.ko; done
    echo "modules loaded; tests are in /vd/tests; 'reboot -f' to leave"
    setsid cttyhack sh
    reboot -f ;;
test|bench|reconfig|guests|tcg-guests-*)
    cd /vd/tests
    # tcg-guests-G (make test, two boots at once): the 8x tests marked "# vd-tcg G", their Linux
    # guests run by QEMU's own emulator instead of nested KVM (scripts/vmtests/guest-lib.sh:
    # GUEST_ACCEL), TCG_SLOW times slower, so each test gets TCG_SLOW times its timeout (vm.sh's
    # stall watchdog knows).
    TCG_SLOW=6; tcg_group=""
    case $mode in tcg-guests-*) tcg_group=${mode#tcg-guests-}; export GUEST_ACCEL=tcg GUEST_SLOW=$TCG_SLOW ;; esac
    # Stall reporter: a test still running at 2/3 of its timeout gets its processes and the tasks
    # blocked in D state listed once, with where they wait (wchan). (If nothing is printed, the
    # guest's timers stopped.)
    ( while sleep 10; do
        [ -f /tmp/cur ] || continue
        read cur start ctmo < /tmp/cur
        now=$(cut -d. -f1 /proc/uptime)
        [ $((now - start)) -ge $((ctmo * 2 / 3)) ] && [ ! -f /tmp/reported.$cur ] || continue
        touch /tmp/reported.$cur
        echo "STALL-REPORT $cur: running for $((now - start))s; user processes and D-state tasks:"
        for p in /proc/[0-9]*; do
            st=$(awk '/^State/ {print $2}' $p/status 2>/dev/null)
            cmd=$(tr '\0' ' ' < $p/cmdline 2>/dev/null)
            [ "$st" = D ] || [ -n "$cmd" ] || continue
            echo "  ${p#/proc/} $st $(cat $p/comm 2>/dev/null) in $(cat $p/wchan 2>/dev/null): $cmd"
            [ "$st" = D ] && [ -r $p/stack ] && sed "s/^/    /" $p/stack
        done
      done ) &
    for t in [0-9]*.sh; do
        name=${t%.sh}; name=${name#*-}
        # 0x-6x: make test's first boot; 7x: its second, reconfig boot (see scripts/test.sh);
        # 8x (nested Linux guests): `make test-guests`, and those marked "# vd-tcg a|b" once more
        # in make test's two TCG guest boots; 9x: bench.
        case "$mode:$t" in
            bench:9*|test:[0-6]*|reconfig:7*|guests:8*|tcg-guests-*:8*) ;;
            *) continue ;;
        esac
        [ -z "$tcg_group" ] || grep -q "^# vd-tcg $tcg_group\$" "$t" || continue
        if [ -n "$only" ] && ! echo " $only " | grep -q " $name "; then continue; fi
        # "# vd-on-demand": experiments that run only when named (TESTS='name ...').
        if [ -z "$only" ] && grep -q '^# vd-on-demand' "$t"; then continue; fi
        # A test may need longer than vd.timeout: a "# vd-timeout: SECONDS" line in it (the nested
        # guest tests boot a VM or two under nested TCG).
        ttmo=$(sed -n 's/^# vd-timeout: \([0-9]*\).*/\1/p' "$t" | head -1)
        [ -n "$ttmo" ] && [ "$ttmo" -gt "$tmo" ] || ttmo=$tmo
        [ -z "$tcg_group" ] || ttmo=$((ttmo * TCG_SLOW))
        echo "VDTEST-START $name"
        echo "$name $(cut -d. -f1 /proc/uptime) $ttmo" > /tmp/cur
        s=$(date +%s)
        timeout "$ttmo" sh "./$t" > /tmp/out.$name 2>&1
        rc=$?
        sed "s/^/  | /" /tmp/out.$name
        if [ $rc = 0 ]; then r=PASS; elif [ $rc = 143 ] || [ $rc = 124 ]; then r="FAIL(timeout ${ttmo}s)"; else r="FAIL(rc=$rc)"; fi
        echo "VDTEST $name $r $(( $(date +%s) - s ))s"
    done
    finish ;;
esac

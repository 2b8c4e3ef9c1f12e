# Two stock QEMU guests with net_failover and one VF between them (sourced by the VF-move tests,
# 8e-guest-vf-failover and 99-bench-vf-move, after lib.sh, guest-lib.sh and sriov-lib.sh).
# Each guest has a standby virtio-net NIC (failover=on) on a tap in a bridge with the igb PF
# (the test VM's address, 10.77.0.1, is on the bridge) and a root port for its VF. Guest A starts
# with VF 0 (vfio-pci, failover_pair_id, its MAC set to A's), leased to VM 1 (held by $H1);
# guest B has only its standby NIC (VM 2). Each guest answers a UDP probe from the test VM
# (`vd-itest udp-probe`: numbered datagrams, echoed; lost datagrams and the longest silence).
#
#   vfm_start TAG          sets all of this up and boots both guests (QEMU QMP in $W/A.qmp,
#                          $W/B.qmp), waits for A's VF under its failover master
#   probe NAME IP US       (re)starts guest NAME's probe (every US microseconds)
#   stop_probe NAME        stops it and prints its JSON report
#   vf_up_in / standby_only NAME, via NAME TAP vf|tap: where the guest's traffic goes
# A test's own background processes: `vfm_more_pids` (a function it defines) lists them for
# the cleanup.
W=/tmp/vdfo
MACA=52:54:00:77:00:0a; MACB=52:54:00:77:00:0b
IPA=10.77.0.2; IPB=10.77.0.3
H1=; PA=; PB=; PR=; VFM_TAIL=
vfm_more_pids() { :; }
cleanup() {
    kill $PA $PB $PR $H1 $(vfm_more_pids) 2>/dev/null
    # What the test printed, for the harness (it went to $W/out.log and the serial console).
    if [ -n "$VFM_TAIL" ]; then exec 1>&3 2>&4; kill $VFM_TAIL 2>/dev/null; cat $W/out.log; fi
    for t in vdtapA vdtapB; do ip link del $t 2>/dev/null; done
    ip link set vdbr0 down 2>/dev/null; brctl delbr vdbr0 2>/dev/null
    _gl_cleanup
}
trap cleanup EXIT
# Progress on the serial console as it happens (the harness shows a test's output at its end):
# a long test that hangs the test VM says where.
mark() { echo "<2>vd $VFM_TAG: $*" > /dev/kmsg; echo "== $*"; }

vfm_start() {
    VFM_TAG=$1
    rm -rf $W; mkdir -p $W
    # Every line the test prints also reaches the serial console as it happens (the harness
    # shows a test's output at its end, and the emulator can end the test VM before that).
    exec 3>&1 4>&2
    exec > $W/out.log 2>&1
    mkfifo $W/out.fifo
    ( while IFS= read -r l; do echo "<2>vd $VFM_TAG| $l" > /dev/kmsg; done < $W/out.fifo ) &
    tail -f $W/out.log > $W/out.fifo & VFM_TAIL=$! # the reader ends when this does
    guest_kvm
    sriov_init 2
    pfnd=$(ls /sys/bus/pci/devices/$PF/net | head -1)
    ip link set "$pfnd" up || fail "PF $pfnd up"
    poll 20 carrier_is $pfnd 1 || fail "no carrier on PF $pfnd"
    # The L2 segment: the PF (whose embedded switch joins the VFs) and the guests' taps in a bridge;
    # the bridge has the PF's MAC so frames from a VF to the test VM stay in the switch.
    brctl addbr vdbr0 || fail "brctl addbr"
    brctl addif vdbr0 "$pfnd" || fail "PF into the bridge"
    ip link set vdbr0 address "$(cat /sys/class/net/$pfnd/address)"
    ip addr add 10.77.0.1/24 dev vdbr0
    ip link set vdbr0 up
    for t in vdtapA vdtapB; do
        tunctl -t $t > /dev/null || fail "tunctl $t"
        brctl addif vdbr0 $t || fail "$t into the bridge"
        ip link set $t up
    done
    check "VF $VF gets guest A's standby MAC $MACA (vdctl sriov mac)" vdctl sriov mac $VF $MACA
    vd-itest sriov-hold --vf $VF --vm 1 > $W/holdA.out 2>&1 & H1=$!
    wait_line $W/holdA.out LEASED 20
    wait_vf $VF driver vfio-pci || fail "the leased VF is not on vfio-pci"
    mark "VF leased to VM 1, starting guest A"
    # One guest boots at a time, the other idle: a boot (and the VF's vfio-pci setup in A's)
    # is when the emulator's nested SVM fails most (README limits), and a busy second guest only
    # adds to what it can hit.
    boot A
    # Every minute, each guest's last console line and echo count on the serial console (where a slow run is).
    ( while sleep 60; do
        for g in A B; do
            echo "<2>vd $VFM_TAG: guest $g: $(received $g 2>/dev/null) echoes; console: $(tail -2 /tmp/guest-$g.console | tr -d '\r' | tr '\n' '|' | cut -c1-200)" > /dev/kmsg
        done
      done ) & PR=$!
    probe A $IPA 10000
    wait_for "guest A echoes its probe" $(guest_secs 400) answering A
    stop_probe A > /dev/null; probe A $IPA 200000
    mark "guest A answers; starting guest B"
    boot B; probe B $IPB 10000
    wait_for "guest B echoes its probe" $(guest_secs 400) answering B
    stop_probe A > /dev/null; probe A $IPA 10000
    echo "guests booted again after a silent reset by the emulator: $REBOOTS"
    wait_for "guest A's VF (igbvf) is up under its failover master" $(guest_secs 60) vf_up_in A
    pin_vf_irqs A
    grep -a 'lower devices\|net_failover master' /tmp/guest-A.console /tmp/guest-B.console
}

GUEST_TIMEOUT=600
# nic NAME MAC TAP: the guest's standby NIC, and a root port for its VF (q35's root bus takes no
# hot-plugged device).
nic() {
    echo "-qmp unix:$W/$1.qmp,server=on,wait=off" \
        "-netdev tap,id=hn0,ifname=$3,script=no,downscript=no" \
        "-device virtio-net-pci,netdev=hn0,id=net0,mac=$2,failover=on,romfile=" \
        "-device pcie-root-port,id=vdrp0,chassis=2,slot=2"
}
# Each guest keeps to one CPU of the test VM (A: CPU 0, B: CPU 1) with every thread of its QEMU,
# its probe and, while it has the VF, the VF's interrupts (pin_vf_irqs): the emulator's nested
# SVM can take the host's reschedule IPI at the instruction after VMRUN, before KVM restores
# the host's state, and dies (README limits); an interrupt for a guest raised on its own CPU
# kicks no other CPU, so the test sends far fewer of them.
cpu_of() { [ $1 = A ] && echo 0 || echo 1; }
boot() { # boot A|B
    if [ $1 = A ]; then
        GUEST_CPUS=0 GUEST_APPEND="vd.mac=$MACA vd.ip=$IPA/24" start_guest A net-failover $(nic A $MACA vdtapA) \
            -device vfio-pci,host=$VF,id=vdvf0,bus=vdrp0,failover_pair_id=net0
    else
        GUEST_CPUS=1 GUEST_APPEND="vd.mac=$MACB vd.ip=$IPB/24" start_guest B net-failover $(nic B $MACB vdtapB)
    fi
}
# pin_vf_irqs NAME: the VF's interrupts (vfio-msix lines of $VF in /proc/interrupts) and the
# PF's (its netdev's queues: the VF's frames to the test VM arrive there) go to guest NAME's
# CPU. (An affinity the kernel refuses leaves them where they are: fewer kicks, not a test.)
pin_vf_irqs() {
    for n in $(grep -E "vfio-msi.*$VF|$pfnd" /proc/interrupts | cut -d: -f1); do
        echo $(( 1 << $(cpu_of $1) )) > /proc/irq/$n/smp_affinity 2>/dev/null
    done
}
# A guest the emulator resets at boot (README limits: nested SVM under TCG; QEMU exits 0 with
# -no-reboot and the guest said nothing) is booted again, at most twice, and the test says so.
# Anything else that stops a guest fails the test.
REBOOTS=0
answering() { # answering NAME: the guest echoed 100 probes; reboots it after a silent reset
    [ "$(received $1)" -gt 100 ] && return 0
    guest_running $1 && return 1
    wait $(guest_pid $1); rc=$?
    if [ $rc = 0 ] && [ ! -s /tmp/guest-$1.qemu ] && ! grep -q -e 'Kernel panic' -e 'Oops' -e 'BUG:' /tmp/guest-$1.console \
        && [ $REBOOTS -lt 2 ]; then
        REBOOTS=$((REBOOTS + 1))
        echo "guest $1 was reset silently by the emulator at boot (QEMU exit 0, console: $(tail -c 300 /tmp/guest-$1.console)): booting it again ($REBOOTS)"
        boot $1
        return 1
    fi
    fail "guest $1 stopped (QEMU exit $rc): $(cat /tmp/guest-$1.qemu); console: $(tail -20 /tmp/guest-$1.console)"
}

# probe NAME IP INTERVAL_US: (re)starts the probe of guest NAME; its reports in $W/probe-NAME.json.
probe() {
    echo $3 > $W/probe-$1.us
    taskset -c $(cpu_of $1) vd-itest udp-probe --to $2:7777 --interval-us $3 --status $W/probe-$1.status >> $W/probe-$1.json 2> $W/probe-$1.err &
    eval P$1=\$!
}
stop_probe() { eval "kill \$P$1; wait \$P$1; P$1="; tail -1 $W/probe-$1.json; }
received() { awk '{ print $4 }' $W/probe-$1.status 2>/dev/null || echo 0; }
echoes_over() {
    guest_running $1 || { echo "guest $1 stopped: $(guest_verdict $1); QEMU said: $(cat /tmp/guest-$1.qemu); console: $(tail -20 /tmp/guest-$1.console)"; wait $(guest_pid $1); echo "QEMU's exit status: $?"; cat $W/holdA.out; fail "guest $1 stopped"; }
    [ "$(received $1)" -gt "$2" ]
}
# lowers NAME: guest NAME's lower devices, as last logged ("eth0nsby:1 enp1s0:1", name:carrier).
lowers() { grep -a 'lower devices' /tmp/guest-$1.console | tail -1 | grep -o '[a-z0-9]*:[01-]' | tr '\n' ' '; }
# vf_up_in NAME: two lower devices (the standby and the VF), both with carrier.
vf_up_in() { set -- $(lowers $1); [ $# = 2 ] && [ "${1##*:}${2##*:}" = 11 ]; }
standby_only() { set -- $(lowers $1); [ $# = 1 ]; }
tap_rx() { cat /sys/class/net/$1/statistics/rx_packets; }
# via NAME TAP vf|tap: over the next 300 (or 30) echoes from guest NAME, its tap carried under a tenth of
# as many frames from the guest (vf: its traffic goes through the VF), or at least half as many
# (tap). (The probe's status file lags by 50 ms or more, so the two counts are not equal.)
via() {
    # 300 echoes (30 from a guest probed every 200 ms: the test waits less in a slow phase).
    n=300; [ "$(cat $W/probe-$1.us)" -le 50000 ] || n=30
    r0=$(received $1); t0=$(tap_rx $2)
    wait_for "$n more echoes from guest $1" $(guest_secs 120) echoes_over $1 $((r0 + n))
    dt=$(( $(tap_rx $2) - t0 )); dr=$(( $(received $1) - r0 ))
    echo "guest $1: $dr echoes, $dt frames from the guest on $2"
    if [ "$3" = vf ]; then [ $((dt * 10)) -lt $dr ]; else [ $((dt * 2)) -ge $dr ]; fi
}

# wait_move WHAT SECS CMD...: wait_for a move; if it does not come, what the module and vdd saw
# (the VFs with their rates, the policy, vdd's SR-IOV log) before the test fails.
wait_move() {
    _wm=$1; shift
    poll "$@" && { echo "ok: $_wm"; return 0; }
    echo "--- no move: the VFs as the module sees them, its policy, and vdd's SR-IOV log:"
    vdctl sriov list; vdctl sriov policy; grep "SR-IOV" $W/vdd*.log | tail -20
    fail "timed out waiting: $_wm"
}

# The module's threshold (B/s): a guest probed every 10 ms is over it, every 200 ms under it.
VFM_THRESHOLD=4000
# vfm_vdd_conf: the module's policy (a guest probed every 10 ms is busy, every 200 ms idle) and
# $W/vdd.toml with guests A (VM 1) and B (VM 2); a test appends its other [[vm]] tables.
vfm_vdd_conf() {
    vdctl sriov policy --threshold $VFM_THRESHOLD --hysteresis 1000 --window-ms 1000 --min-hold-ms 500 --sample-ms 100 > /dev/null \
        || fail "module policy"
    vdd_conf $W
    cat >> $W/vdd.toml <<EOT
[sriov]
unplug_timeout_ms = $(( $(guest_secs 15) * 1000 ))
retry_ms = 600000
[[vm]]
id = 1
qmp = "$W/A.qmp"
standby_nic = "net0"
vf_bus = "vdrp0"
[[vm]]
id = 2
qmp = "$W/B.qmp"
standby_nic = "net0"
vf_bus = "vdrp0"
EOT
    export VDD_SOCKET=$W/vdd.sock
}

# busy: the module measures the VF's traffic at or over the threshold of vfm_vdd_conf.
busy() { r=$(vf_field $VF rate_bps); [ -n "$r" ] && [ "$r" != null ] && [ "$r" -ge $VFM_THRESHOLD ] 2>/dev/null; }

# vfm_end: the end of a VF-move test with vdd running as $D: the probes' last reports (no echo
# duplicated), vdd exits 0 on SIGTERM, each guest's echo stops and the guest gives its verdict
# (tx counts per lower device).
vfm_end() {
    mark "the end"
    stop_probe A; stop_probe B
    kill -TERM $D; wait $D; rc=$?; D=
    check "vdd exits 0 (rc=$rc)" test $rc = 0
    echo "probe reports (one per segment; each segment spans at most one switch of its guest):"
    cat $W/probe-A.json $W/probe-B.json
    check "no echo was duplicated" sh -c "! grep -h -v '\"duplicates\":0,' $W/probe-A.json $W/probe-B.json | grep -q ."
    for g in A B; do
        ip=$IPA; [ $g = B ] && ip=$IPB
        check "guest $g's echo stops" vd-itest udp-stop --to $ip:7777
        wait_guest $g || fail "guest $g: $GUEST_RESULT"
    done
}

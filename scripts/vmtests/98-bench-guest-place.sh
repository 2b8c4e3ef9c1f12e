# vd-timeout: 1200
# make bench (issue 14, item 2): what vdd's placement gains a real guest's disk I/O. One stock QEMU
# guest with nested KVM and a vd disk (vd-ivshmem-server + ivshmem-doorbell -> vd_front's
# /dev/vdb0), booted once; in it fio 4k randread QD1 (libaio, direct=1) in 2 x VD_PLACE_PAIRS
# rounds (6 pairs) of VD_BENCH_SECS (5) each, placement off and on alternately (off, on, off, on,
# ...), with 4 CPU-bound processes on the test VM's CPUs through every round: 2 pinned to each
# (91-bench-vdd's 4 hogs, pinned so that the scheduler's balancing cannot leave the driver core
# with more or fewer of them in one mode than in the other). The only thing switched between rounds
# is vdd's placement: `vdctl policy set max_vms_on_driver_cores 0|1` (0 disables placement; with 1
# vdd places the guest's vCPU thread, QEMU's `CPU 0/KVM`, on the driver core, CPU 1, with a 500 us
# EEVDF slice). Threshold 2/s and hold_ms 3600000: the guest, which polls its disk between rounds,
# is placed as soon as placement is on, and stays placed until it is switched off. The guest
# (scripts/guest-bench-place.sh) starts a round only when the host has written that round's go into
# the disk image; the host writes it once the round's mode is in place (the vCPU thread's affinity
# and slice, and `vdctl vm list`'s state). A round counts only if it ran wholly in its mode: the
# state is checked again at the round's VDBENCH-START and VDBENCH-END console lines, the vCPU
# thread's affinity at every poll in between (every 0.2 s plus the poll's own cost, which the hogs
# stretch to 0.3-1 s), and vdd's placement and restore counters (`vdctl daemon status`) must not
# have moved from before the go to after the end. Anything else fails the bench. Printed: fio's
# p50/p99 completion latency and IOPS per round, per pair with its ratio off/on, and the medians
# over the rounds of each mode with their ratio, and the median of the pairs' ratios (> 1:
# placement helps). Not pass/fail on the numbers. The test VM's CPUs are emulated by threads of a
# host shared with other work, so their speed varies over a boot, and not alike: each hog counts
# its loops (into $W/hog.N every 5000), and every round prints how fast the hogs of each CPU ran
# from its start to its end (thousands of loops per second, summed per CPU): a round in which one
# CPU crawled shows there. VD_BENCH_SECS and VD_PLACE_PAIRS reach the test through VD_APPEND
# (scripts/vm.sh). Results and what they say: README, Performance.
. ./lib.sh
. ./guest-lib.sh
load vd_evtchn
grep -q " /sys/kernel/debug debugfs " /proc/mounts || mount -t debugfs none /sys/kernel/debug || fail "mount debugfs"
[ "$(cat /sys/devices/system/cpu/online)" = 0-1 ] || fail "needs CPUs 0-1 online (got $(cat /sys/devices/system/cpu/online))"
secs=${VD_BENCH_SECS:-5}
pairs=${VD_PLACE_PAIRS:-6}
case "$pairs" in [1-9]|[1-4][0-9]) ;; *) fail "VD_PLACE_PAIRS=$pairs: 1..49" ;; esac
rounds=$((pairs * 2))
HOGS=4
GUEST_TIMEOUT=$((300 + rounds * (secs + 60)))
W=/tmp/place; rm -rf $W; mkdir -p $W
img=$W/disk.img; truncate -s 64M $img
c=/tmp/guest-place.console

median() { sort -n | awk '{a[NR] = $1} END {if (NR == 0) exit 1; if (NR % 2) print a[(NR + 1) / 2]; else printf "%d\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
# seen LINE: the guest printed LINE (a console line starting with it).
seen() { grep -aq "^$1" $c; }
alive() { guest_running place || fail "the guest stopped: $(guest_verdict place) $(tail -3 $c | tr -d '\r')"; }
# The vCPU thread's affinity, without a fork (polled during the rounds): A.
aff_now() {
    A=""
    while read -r k v; do case $k in Cpus_allowed_list:) A=$v; break ;; esac; done < /proc/$qpid/task/$tid/status
}
slice() { awk '/^se.slice/ {print $3}' /proc/$qpid/task/$tid/sched 2>/dev/null | cut -d. -f1; }
# vdd's state for the guest ("placed", "normal", "waiting": hot, no slot) in `vdctl vm list`.
vm_state() {
    vdctl vm list --json > $W/list.json 2>&1 || return 1
    awk -v q="$qpid" '/"pid": / { v = $2; sub(/,/, "", v); cur = v }
        /"state": / { v = $2; gsub(/[",]/, "", v); if (cur == q) print v }' $W/list.json
}
counters() { # placements_total restores_total
    vdctl --json daemon status > $W/status.json 2>&1 || { echo "?"; return; }
    echo "$(sed -n 's/.*"placements_total": \([0-9]*\).*/\1/p' $W/status.json | head -1)" \
        "$(sed -n 's/.*"restores_total": \([0-9]*\).*/\1/p' $W/status.json | head -1)"
}
# mode_is off|on: the vCPU thread and vdd agree on the mode (WHY says what was seen).
mode_is() {
    aff_now; s=$(slice); st=$(vm_state)
    WHY="affinity $A, se.slice $s ns, vdctl state ${st:-?}"
    case $1 in
        off) [ "$A" = 0-1 ] && [ "$s" = "$base" ] && { [ "$st" = normal ] || [ "$st" = waiting ]; } ;;
        on) [ "$A" = 1 ] && [ "$s" = 500000 ] && [ "$st" = placed ] ;;
    esac
}
diag() { echo "vdd log:"; tail -20 $W/vdd.log; vdctl vm list; tail -5 $c | tr -d '\r'; }

start_server place $img; srv=$SERVER_PID
GUEST_APPEND="vd.bench_secs=$secs vd.place_rounds=$rounds"
start_guest place bench-place $(vd_disk_args place) -name guest=place,debug-threads=on
qpid=$GUEST_PID
vdd_conf $W
cat >> $W/vdd.toml <<EOT
metrics = ""
[policy]
threshold = 2
hysteresis = 1
hold_ms = 3600000
max_vms_on_driver_cores = 0
EOT
export VDD_SOCKET=$W/vdd.sock
vdd --config $W/vdd.toml > $W/vdd.log 2>&1 & D=$!
_GL_PIDS="$_GL_PIDS $D"
wait_for "vdd answers" 10 vdctl daemon status
# The guest has booted, filled its disk, loaded fio and waits for the first go.
ready() { alive; seen "VDBENCH-READY 01"; }
wait_for "the guest waits for round 01's go (booted, disk filled, fio loaded)" $(guest_secs 400) ready
tid=$(cat /sys/kernel/debug/kvm/$qpid-*/vcpu0/pid 2>/dev/null | head -1)
comm=$(cat /proc/$qpid/task/${tid:-none}/comm 2>/dev/null)
check "KVM's vcpu0 thread (${tid:-none}) is QEMU's 'CPU 0/KVM' ('$comm')" test "$comm" = "CPU 0/KVM"
# (vdctl's JSON has its keys sorted; the guest is the only VM.)
listed() {
    vdctl vm list --json > $W/list.json 2>&1 && grep -q '"name": "place"' $W/list.json \
        && grep -Eq "\"pid\": $qpid,?\$" $W/list.json && tr -d ' \n' < $W/list.json | grep -q "\"vcpus\":\[$tid\]"
}
poll 30 listed || { cat $W/list.json; fail "vdctl vm list does not name the guest (QEMU $qpid, vCPU thread $tid)"; }
base=$(cat /sys/kernel/debug/sched/base_slice_ns)
hogs=""
i=0
while [ $i -lt $HOGS ]; do
    taskset -c $((i % 2)) sh -c "n=0; while :; do n=\$((n + 1)); [ \$((n % 5000)) != 0 ] || echo \$n > $W/hog.$i; done" &
    hogs="$hogs $!"; i=$((i + 1))
done
# hog_loops CPU: the loops so far of CPU's hogs (hog i runs on CPU i % 2); a file caught while
# being rewritten reads empty: read again.
hog_loops() {
    ht=0; hi=$1
    while [ $hi -lt $HOGS ]; do
        v=""; k=0
        while [ -z "$v" ] && [ $k -lt 20 ]; do { read -r v < $W/hog.$hi; } 2>/dev/null; k=$((k + 1)); done
        ht=$((ht + ${v:-0})); hi=$((hi + 2))
    done
    echo $ht
}
_GL_PIDS="$_GL_PIDS $hogs"
hogs_run() { for f in $(seq 0 $((HOGS - 1))); do [ -s $W/hog.$f ] || return 1; done; }
wait_for "the $HOGS CPU hogs run and count" 30 hogs_run
echo "setup: $HOGS CPU hogs, $((HOGS / 2)) pinned to each of CPUs 0 and 1; guest QEMU $qpid, vCPU thread $tid; vdd threshold 2/s," \
    "hold 3600 s, driver core 1, slice 500 us ($(vdctl --json daemon status | sed -n 's/.*"slice_mode": "\([^"]*\)".*/\1/p')); default slice $base ns"

r=1
while [ $r -le $rounds ]; do
    nn=$(printf %02d $r)
    if [ $((r % 2)) = 1 ]; then mode=off; max=0; else mode=on; max=1; fi
    vdctl policy set max_vms_on_driver_cores $max > /dev/null || fail "vdctl policy set max_vms_on_driver_cores $max"
    poll 60 mode_is $mode || { diag; fail "round $nn: placement $mode not in place within 60 s: $WHY"; }
    before=$(counters)
    printf "VDGO-$nn" | dd of=$img bs=4096 seek=15360 conv=notrunc 2>/dev/null || fail "write round $nn's go"
    started() { alive; seen "VDBENCH-START $nn"; }
    wait_for "round $nn: the guest started it" 60 started
    mode_is $mode || { diag; fail "round $nn ($mode): at its start: $WHY"; }
    at_start=$WHY
    h0=$(hog_loops 0); h1=$(hog_loops 1); t0=$(uptime_cs)
    # Until its end: the vCPU thread stays where the mode puts it.
    want=0-1; [ $mode = on ] && want=1
    n=0; limit=$(( (secs * 10 + 600) * GUEST_SLOW ))
    until seen "VDBENCH-END $nn"; do
        kill -0 $qpid 2>/dev/null || fail "round $nn: the guest's QEMU exited: $(guest_verdict place)"
        aff_now
        [ "$A" = $want ] || { diag; fail "round $nn ($mode): the vCPU thread's affinity became $A mid-round"; }
        n=$((n + 1)); [ $n -le $limit ] || fail "round $nn: no end after $((limit / 5)) s"
        sleep 0.2
    done
    h0=$(( $(hog_loops 0) - h0 )); h1=$(( $(hog_loops 1) - h1 )); t0=$(( $(uptime_cs) - t0 ))
    mode_is $mode || { diag; fail "round $nn ($mode): at its end: $WHY"; }
    # thousands of loops per second of the CPU 0 and CPU 1 hogs in this round
    echo "$nn $((h0 * 100 / 1000 / (t0 > 0 ? t0 : 1))) $((h1 * 100 / 1000 / (t0 > 0 ? t0 : 1)))" >> $W/hogs
    after=$(counters)
    [ "$before" = "$after" ] && [ "$before" != "?" ] \
        || { diag; fail "round $nn ($mode): vdd placed or restored during it (placements, restores: $before -> $after)"; }
    echo "round $nn: placement $mode throughout ($n affinity checks; start: $at_start; end: $WHY; vdd placements/restores $after; hogs k loops/s CPU 0 $(tail -1 $W/hogs | cut -d' ' -f2), CPU 1 $(tail -1 $W/hogs | cut -d' ' -f3))"
    r=$((r + 1))
done
wait_guest place || fail "the guest: $GUEST_RESULT"
kill -TERM $D; wait $D; rc=$?
[ $rc = 0 ] || { tail $W/vdd.log; fail "vdd exited $rc on SIGTERM"; }
grep -E "placed VM $qpid|restored VM $qpid" $W/vdd.log | head -4
stop_server place || fail "vd-ivshmem-server did not exit on SIGTERM"
kill -9 $hogs; wait $hogs 2>/dev/null

# Results: "round mode ios iops p50 p99" per round.
: > $W/res
r=1
while [ $r -le $rounds ]; do
    nn=$(printf %02d $r); mode=off; [ $((r % 2)) = 0 ] && mode=on
    l=$(grep -a "^VDBENCH $nn " $c | tr -d '\r' | head -1)
    [ -n "$l" ] || fail "round $nn: no result line from the guest"
    h=$(grep "^$nn " $W/hogs | cut -d' ' -f2-)
    echo "$l" | awk -v m=$mode -v h="$h" '{ for (i = 3; i <= 6; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        print $2, m, v["ios"], v["iops"], v["p50"], v["p99"], h }' >> $W/res
    r=$((r + 1))
done
awk '$3 <= 0 { bad = 1 } END { exit bad }' $W/res || { cat $W/res; fail "a round completed no request"; }
echo
echo "BENCH guest-place: a stock QEMU guest's fio 4k randread QD1 on its vd disk, $HOGS CPU hogs"
echo "  ($((HOGS / 2)) pinned to each CPU), vdd placement off/on alternated in one boot, $pairs pairs of ${secs}s rounds"
echo "  (on: vCPU thread on driver core 1, 500 us slice; clat in us, fio's percentiles)"
# IOPS as requests / round length (fio's own IOPS is an integer: 0 for a starved round).
awk -v t=$secs '{ m[NR] = $0 } END {
    printf "  %-5s %-16s %-16s %-12s %-16s %s\n", "pair", "off p50/p99", "on p50/p99", "IOPS off/on",
        "off/on p50, p99", "hogs k loops/s CPU 0/1 off, on"
    for (i = 1; i + 1 <= NR; i += 2) {
        split(m[i], a, " "); split(m[i + 1], b, " ")
        printf "  %-5d %-16s %-16s %-12s %-16s %s\n", (i + 1) / 2, a[5] "/" a[6], b[5] "/" b[6],
            sprintf("%.1f/%.1f", a[3] / t, b[3] / t),
            sprintf("%.2fx, %.2fx", a[5] / (b[5] > 0 ? b[5] : 1), a[6] / (b[6] > 0 ? b[6] : 1)),
            a[7] "/" a[8] ", " b[7] "/" b[8]
        print a[5] / (b[5] > 0 ? b[5] : 1), a[6] / (b[6] > 0 ? b[6] : 1) > "'$W/ratios'"
    } }' $W/res
o50=$(awk '$2 == "off" { print $5 }' $W/res | median); n50=$(awk '$2 == "on" { print $5 }' $W/res | median)
o99=$(awk '$2 == "off" { print $6 }' $W/res | median); n99=$(awk '$2 == "on" { print $6 }' $W/res | median)
oio=$(awk '$2 == "off" { print $3 }' $W/res | median); nio=$(awk '$2 == "on" { print $3 }' $W/res | median)
oio=$(awk -v n=$oio -v t=$secs 'BEGIN { printf "%.1f", n / t }'); nio=$(awk -v n=$nio -v t=$secs 'BEGIN { printf "%.1f", n / t }')
[ "${o50:-0}" -gt 0 ] 2>/dev/null && [ "${n50:-0}" -gt 0 ] 2>/dev/null || fail "no latency measured (off '$o50', on '$n50')"
echo "  median of $pairs rounds each: off p50 $o50 us, p99 $o99 us, $oio IOPS; on p50 $n50 us, p99 $n99 us, $nio IOPS"
awk -v a=$o50 -v b=$n50 -v c=$o99 -v d=$n99 -v e=$oio -v f=$nio 'BEGIN {
    printf "  ratio off/on of the medians: p50 %.2fx, p99 %.2fx; IOPS on/off %.2fx (> 1: placement helps)\n", a / b, c / (d > 0 ? d : 1), (e > 0 ? f / e : 0) }'
mr() { awk -v k=$1 '{ print $k }' $W/ratios | sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo "  median of the $pairs pairs' ratios off/on: p50 $(mr 1 | awk '{ printf "%.2fx", $1 }'), p99 $(mr 2 | awk '{ printf "%.2fx", $1 }')"
rmmod vd_evtchn || fail "rmmod vd_evtchn after the guest"
echo "ok: bench-guest-place"

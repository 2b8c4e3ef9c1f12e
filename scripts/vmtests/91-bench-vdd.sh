# make bench: vdd, in one boot (2 vCPUs, CPU 1 the driver core; only ratios mean anything under TCG).
# 1. Reaction: a real nested KVM guest on vd_evtchn (vd-testvmm evtchn --probe-ms) is stopped
#    until vdd restores it, then continued (burst start); time to its vCPU thread's move to CPU 1.
# 2. Latency: that guest's round trip (guest TSC per request, median per 500 ms period) with
#    CPU-bound processes busy on both CPUs, placement off (vdctl policy set
#    max_vms_on_driver_cores 0) and on, alternated; the ratio off/on is the seed's claim.
# 3. vdd's own CPU time at 100 simulated VMs (a fake KVM debugfs tree, [host] kvm_debugfs, whose
#    vcpu0/pid are real processes; 10 of them hot at a time, rotating) at the default interval.
# Not pass/fail on the numbers; fails when something could not be measured.
. ./lib.sh
load kvm
is_loaded kvm_amd || insmod $M/kvm-amd.ko || fail "insmod kvm-amd"
load vd_evtchn
[ "$(cat /sys/devices/system/cpu/online)" = 0-1 ] || fail "needs CPUs 0-1 online (got $(cat /sys/devices/system/cpu/online))"

BURSTS=5          # reaction samples
ROUNDS=3          # off/on latency pairs
PHASE_S=5         # seconds measured per latency phase
HOGS=4            # CPU-bound competitors (2 per CPU)
CPU_S=30          # vdd CPU measurement period at 100 VMs
NVM=100

now_ms() { awk '{printf "%d\n", $1 * 1000}' /proc/uptime; }        # 10 ms resolution
aff() { awk '/^Cpus_allowed_list/ {print $2}' /proc/$1/task/$2/status 2>/dev/null; }
slice() { awk '/^se.slice/ {print $3}' /proc/$1/task/$2/sched 2>/dev/null | cut -d. -f1; }
# wait_aff SECONDS PID TID CPUS: polls every 20 ms
wait_aff() { n=$(( $1 * 50 )); while [ $n -gt 0 ]; do [ "$(aff $2 $3)" = "$4" ] && return 0; usleep 20000; n=$((n - 1)); done; return 1; }
median() { sort -n | awk '{a[NR] = $1} END {if (NR == 0) exit 1; if (NR % 2) print a[(NR + 1) / 2]; else printf "%d\n", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
minmax() { sort -n | awk 'NR == 1 {lo = $1} {hi = $1} END {print lo ".." hi}'; }
cputicks() { sed 's/.*) //' /proc/$1/stat | awk '{print $12 + $13}'; }   # utime + stime (1/100 s)
sched_ns() { cat /proc/$1/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%d\n", s}'; }
status_num() { vdctl --json daemon status | sed -n "s/.*\"$1\": \([0-9][0-9]*\).*/\1/p" | head -1; }
PIDS=""
probe_alive() { case "$(awk '/^State/ {print $2}' /proc/$P/status 2>/dev/null)" in ""|Z) return 1 ;; esac; }
diag() { echo "probe VM $P: $([ -d /proc/$P ] && echo "alive, state $(awk '/^State/ {print $2}' /proc/$P/status), vCPU affinity $(aff $P $T)" || echo exited)"
         tail -3 /tmp/probe.out; tail -5 /tmp/bench-vdd.log; vdctl vm list 2>&1; }
cleanup() { for p in $PIDS; do kill -9 $p 2>/dev/null; done; }
trap cleanup EXIT

# The probe's two modes work (and the idle baseline: no competitor, no vdd).
B=$(vd-testvmm evtchn --path kernel --batch 1 --requests 2000 --samples 2000 2>&1) || fail "vd-testvmm evtchn --samples: $B"
BASE_NS=$(echo "$B" | sed -n 's/.*median round trip \([0-9]*\) ns over 2000 batches.*result=PASS.*/\1/p')
[ -n "$BASE_NS" ] || fail "vd-testvmm evtchn --samples 2000 gave no median: $B"
Q=$(vd-testvmm evtchn --path kernel --batch 1 --requests 4000000000 --probe-ms 200 --duration 1 2>&1) || fail "vd-testvmm evtchn --probe-ms --duration: $Q"
echo "$Q" | grep -q '^probe .*median_ns=' && echo "$Q" | tail -1 | grep -q 'bad=0 .*result=PASS' || fail "the probe's own run: $Q"
echo "idle baseline (no competitor, no vdd): median round trip $BASE_NS ns over 2000 requests; probe self-check: $(echo "$Q" | grep -c '^probe ') periods, $(echo "$Q" | tail -1 | sed 's/.*: \([0-9]*\) requests in.*/\1/') requests checked, PASS"

i=0; while [ $i -lt $HOGS ]; do ( while :; do :; done ) & PIDS="$PIDS $!"; i=$((i + 1)); done

# The I/O VM: one vCPU thread doing back-to-back round trips on vd_evtchn's in-kernel path.
vd-testvmm evtchn --path kernel --batch 1 --requests 4000000000 --probe-ms 500 --timeout 900 > /tmp/probe.out 2>&1 &
P=$!; PIDS="$PIDS $P"
n=100; while [ $n -gt 0 ]; do T=$(cat /sys/kernel/debug/kvm/$P-*/vcpu0/pid 2>/dev/null | head -1); [ -n "$T" ] && [ "$T" != 0 ] && break; sleep 0.1; n=$((n - 1)); done
[ -n "$T" ] && [ "$T" != 0 ] && [ -d /proc/$P/task/$T ] || { cat /tmp/probe.out; fail "the probe VM $P never ran its vCPU"; }
d=$(ls -d /sys/kernel/debug/kvm/$P-* | head -1)
sleep 1; a=$(cat $d/io_exits); sleep 2; b=$(cat $d/io_exits)
RATE=$(( (b - a) / 2 ))
grep -q median_ns= /tmp/probe.out || { cat /tmp/probe.out; fail "the probe prints no latency"; }
[ $RATE -gt 20 ] || fail "the probe VM makes only $RATE io_exits/s beside $HOGS CPU hogs"
# Placed from an eighth of the probe's rate; restored only under a 32nd (threshold - hysteresis)
# for a second, so a slow stretch under the CPU hogs does not end a placement-on phase early.
THR=$(( RATE / 8 )); HYST=$(( THR * 3 / 4 ))
cat > /tmp/bench-vdd.toml <<EOT
[policy]
threshold = $THR
hysteresis = $HYST
hold_ms = 1000
max_vms_on_driver_cores = 1
[host]
driver_cores = "1"
[daemon]
metrics = ""
EOT
vdd --config /tmp/bench-vdd.toml > /tmp/bench-vdd.log 2>&1 & D=$!; PIDS="$PIDS $D"
n=100; while [ $n -gt 0 ] && ! vdctl daemon status > /dev/null 2>&1; do sleep 0.1; n=$((n - 1)); done
vdctl daemon status > /dev/null 2>&1 || { cat /tmp/bench-vdd.log; fail "vdd did not start"; }
SLICE_MODE=$(vdctl --json daemon status | sed -n 's/.*"slice_mode": "\([^"]*\)".*/\1/p')
echo "setup: $HOGS CPU hogs on CPUs 0-1; probe VM $P (vCPU thread $T) makes $RATE io_exits/s;"
echo "       vdd: interval 1000 ms, window 2000 ms (defaults), threshold $THR/s, hysteresis $HYST, hold 1000 ms, driver core 1, slice 500 us: $SLICE_MODE"
wait_aff 10 $P $T 1 || { cat /tmp/bench-vdd.log; fail "vdd never placed the probe VM"; }

# 1. Reaction time.
R=""
i=1; while [ $i -le $BURSTS ]; do
    kill -STOP $P
    wait_aff 15 $P $T 0-1 || { kill -CONT $P; diag; fail "burst $i: vdd did not restore the stopped VM"; }
    sleep 1
    t0=$(now_ms); kill -CONT $P
    wait_aff 10 $P $T 1 || { diag; fail "burst $i: not placed within 10 s of the burst"; }
    R="$R $(( $(now_ms) - t0 ))"
    [ -d /proc/$P/task/$T ] || { cat /tmp/probe.out; fail "the probe VM died across SIGSTOP/SIGCONT"; }
    i=$((i + 1))
done
echo "BENCH vdd reaction: burst start -> vCPU thread on the driver core: median $(echo $R | tr ' ' '\n' | median) ms over $BURSTS bursts (ms:$R; interval 1000 ms)"
grep "placed VM $P" /tmp/bench-vdd.log | tail -1 | sed 's/^.*placed VM/  last: placed VM/'

# 2. Latency with and without placement, CPU hogs competing. A phase's value is the median of its
# periods' medians; a period in which no round trip finished counts as 500 ms.
phase() { # phase NAME: sets m (median ns), p (p90 ns), r (round trips/s), st (stalled), np (periods)
    a=$(wc -l < /tmp/probe.out); sleep $PHASE_S; b=$(wc -l < /tmp/probe.out)
    sed -n "$((a + 2)),${b}p" /tmp/probe.out | grep '^probe ' > /tmp/phase.$1
    # A probe VM that ended (its guest left its program, say) reports why as its last line.
    probe_alive || fail "phase $1: the probe VM exited: $(tail -1 /tmp/probe.out)"
    [ -s /tmp/phase.$1 ] || { tail -3 /tmp/probe.out; fail "phase $1: the probe printed no period in ${PHASE_S}s"; }
    m=$(sed -n 's/.*median_ns=\([0-9]*\).*/\1/p; /round_trips=0 /s/.*/500000000/p' /tmp/phase.$1 | median) || fail "phase $1: no median"
    p=$(sed -n 's/.*p90_ns=\([0-9]*\).*/\1/p; /round_trips=0 /s/.*/500000000/p' /tmp/phase.$1 | median) || fail "phase $1: no p90"
    r=$(sed -n 's/.* rate=\([0-9]*\)\/s.*/\1/p' /tmp/phase.$1 | median) || fail "phase $1: no rate"
    st=$(grep -c 'round_trips=0 ' /tmp/phase.$1); np=$(wc -l < /tmp/phase.$1)
}
OFF=""; ON=""; OFF90=""; ON90=""; OFFR=""; ONR=""
i=1; while [ $i -le $ROUNDS ]; do
    vdctl policy set max_vms_on_driver_cores 0 > /dev/null || fail "vdctl policy set"
    wait_aff 5 $P $T 0-1 || { diag; fail "round $i: not restored with placement off"; }
    sleep 1
    phase off$i
    OFF="$OFF $m"; OFF90="$OFF90 $p"; OFFR="$OFFR $r"
    echo "  round $i placement off: median $m ns, p90 $p ns, $r round trips/s, $st of $np periods stalled"
    vdctl policy set max_vms_on_driver_cores 1 > /dev/null || fail "vdctl policy set"
    wait_aff 5 $P $T 1 || { diag; fail "round $i: not placed with placement on"; }
    s=$(slice $P $T)
    sleep 1
    phase on$i
    [ "$(aff $P $T)" = 1 ] || { diag; fail "round $i: the probe VM left the driver core during the phase"; }
    ON="$ON $m"; ON90="$ON90 $p"; ONR="$ONR $r"
    echo "  round $i placement on:  median $m ns, p90 $p ns, $r round trips/s, $st of $np periods stalled (affinity 1, se.slice $s ns)"
    i=$((i + 1))
done
[ -d /proc/$P/task/$T ] || fail "the probe VM exited during the latency rounds"
mo=$(echo $OFF | tr ' ' '\n' | median); mn=$(echo $ON | tr ' ' '\n' | median)
po=$(echo $OFF90 | tr ' ' '\n' | median); pn=$(echo $ON90 | tr ' ' '\n' | median)
ro=$(echo $OFFR | tr ' ' '\n' | median); rn=$(echo $ONR | tr ' ' '\n' | median)
[ "${mo:-0}" -gt 0 ] 2>/dev/null && [ "${mn:-0}" -gt 0 ] 2>/dev/null || fail "no latency measured (off '$mo', on '$mn')"
echo "BENCH vdd latency: I/O VM round trip on vd_evtchn with $HOGS CPU hogs, median of $ROUNDS x ${PHASE_S}s phases"
echo "  placement off: median $mo ns, p90 $po ns, $ro round trips/s"
echo "  placement on:  median $mn ns, p90 $pn ns, $rn round trips/s"
awk -v a=$mo -v b=$mn -v c=$po -v d=$pn -v e=$ro -v f=$rn 'BEGIN {
    printf "  ratio off/on: median %.2fx, p90 %.2fx; round trips/s on/off %.2fx (>1: placement helps)\n", a / b, c / d, (e > 0 ? f / e : 0) }'
kill -9 $P; wait $P 2>/dev/null
kill -TERM $D; wait $D; rc=$?
[ $rc = 0 ] || { tail /tmp/bench-vdd.log; fail "vdd exited $rc on SIGTERM"; }
for p in $PIDS; do kill -9 $p 2>/dev/null; done; wait 2>/dev/null; PIDS=""

# 3. vdd's CPU use at 100 VMs. Each VM is a real process (its vCPU thread: vcpu0/pid) under a fake
# KVM debugfs tree; a writer keeps 10 of them at 5000 io_exits/s (over the default threshold),
# moving to the next 10 every 10 s, so vdd measures, places and restores as it would on a host.
F=/tmp/fakekvm; rm -rf $F; mkdir -p $F
i=1; while [ $i -le $NVM ]; do
    sleep 100000 & p=$!; PIDS="$PIDS $p"
    v=$F/$p-$((i + 10)); mkdir -p $v/vcpu0
    echo 0 > $v/io_exits; echo 0 > $v/mmio_exits; echo 0 > $v/halt_exits; echo $p > $v/vcpu0/pid
    i=$((i + 1))
done
echo 0 > $F/io_exits                                   # the global file KVM also has
VMS=$(ls -d $F/*-* | sort -t/ -k4 -n)
( s=0; while :; do
      g=$(( (s / 10) % 10 ))
      for v in $(echo "$VMS" | sed -n "$((g * 10 + 1)),$((g * 10 + 10))p"); do
          read c < $v/io_exits; echo $((c + 5000)) > $v/io_exits
      done
      sleep 1; s=$((s + 1))
  done ) & W=$!; PIDS="$PIDS $W"
cat > /tmp/bench-vdd100.toml <<EOT
[host]
driver_cores = "1"
kvm_debugfs = "$F"
[daemon]
metrics = ""
EOT
vdd --config /tmp/bench-vdd100.toml > /tmp/bench-vdd100.log 2>&1 & D=$!; PIDS="$PIDS $D"
n=150; while [ $n -gt 0 ] && [ "$(status_num vms 2>/dev/null)" != $NVM ]; do sleep 0.2; n=$((n - 1)); done
[ "$(status_num vms)" = $NVM ] || { vdctl daemon status; tail /tmp/bench-vdd100.log; fail "vdd does not see the $NVM fake VMs"; }
sleep 3                                                 # past the first rates
c0=$(cputicks $D); n0=$(sched_ns $D); k0=$(status_num ticks); t0=$(now_ms)
sleep $CPU_S
c1=$(cputicks $D); n1=$(sched_ns $D); k1=$(status_num ticks); t1=$(now_ms)
[ -n "$c0" ] && [ -n "$c1" ] || fail "could not read /proc/$D/stat"
K=$((k1 - k0)); WALL=$((t1 - t0))
[ $K -gt 0 ] || fail "vdd made no sampling round in ${CPU_S}s"
PL=$(status_num placements_total); RS=$(status_num restores_total); VMS_NOW=$(status_num vms)
kill -TERM $D; wait $D; rc=$?
[ $rc = 0 ] || { tail /tmp/bench-vdd100.log; fail "vdd exited $rc on SIGTERM"; }
echo "BENCH vdd cpu: $VMS_NOW VMs (1 vCPU thread each), default interval 1000 ms, over $WALL ms wall, $K sampling rounds ($PL placements, $RS restores)"
awk -v c=$(( (c1 - c0) * 10 )) -v w=$WALL -v k=$K -v ns=$((n1 - n0)) 'BEGIN {
    printf "  /proc/PID/stat utime+stime: %d ms = %.2f%% of one CPU, %.1f ms per round\n", c, 100 * c / w, c / k
    if (ns > 0) printf "  schedstat (all threads):    %.1f ms = %.2f%% of one CPU, %.2f ms per round\n", ns / 1e6, 100 * ns / 1e6 / w, ns / 1e6 / k }'
! grep -E " (WARN|ERROR) " /tmp/bench-vdd.log /tmp/bench-vdd100.log | grep -v "source vd_evtchn" || echo "  (vdd logged the warnings above)"
true

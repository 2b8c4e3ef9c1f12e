# vdd end to end in the test VM (2 vCPUs): a real nested KVM guest whose every request is a
# KVM_EXIT_IO (vd-testvmm --path vmm) is found through KVM's debugfs, measured, moved onto the
# driver core (CPU 1) with a short EEVDF slice in the first sampling round whose measured rate
# reaches the threshold, restored when it cools
# down (SIGSTOP: rate 0), placed again; vdd killed with -9 and restarted adopts it without acting
# twice; SIGTERM restores everything. A CPU-bound process beside it is never touched.
. ./lib.sh
load kvm
is_loaded kvm_amd || insmod $M/kvm-amd.ko || fail "insmod kvm-amd"
load vd_evtchn
check "CPUs 0-1 online" test "$(cat /sys/devices/system/cpu/online)" = "0-1"

now_cs() { cut -d' ' -f1 /proc/uptime | tr -d '.'; }            # centiseconds since boot
aff() { awk '/^Cpus_allowed_list/ {print $2}' /proc/$1/task/$2/status 2>/dev/null; }
aff_is() { [ "$(aff $1 $2)" = "$3" ]; }                      # aff_is PID TID CPULIST
slice() { awk '/^se.slice/ {print $3}' /proc/$1/task/$2/sched 2>/dev/null; }
vcpu_tid() { cat /sys/kernel/debug/kvm/$1-*/vcpu0/pid 2>/dev/null | head -1; }
# The VMM's own report goes to a file: a VM that ends early (its guest failed) says why there.
start_vm() { vd-testvmm evtchn --path vmm --requests 100000000 --batch 1 --timeout 900 > /tmp/vm.$1.out 2>&1 & }
# alive PID: the VM is still running (else its report is printed).
alive() { case "$(awk '/^State/ {print $2}' /proc/$1/status 2>/dev/null)" in ""|Z) ;; *) return 0 ;; esac; wait $1; echo "VM $1 exited (rc=$?): $(cat /tmp/vm.*.out 2>/dev/null | tail -3)"; return 1; }
BASE=$(cat /sys/kernel/debug/sched/base_slice_ns)
# A failed check exits: nothing it started may outlive it into the next test.
P= V= K= D= HOG=
trap 'for p in $K $V $P $D $HOG; do kill -9 $p 2>/dev/null; done' EXIT

# The CPU-bound process runs from here on: the VM's rate is calibrated beside it, as vdd will
# measure it (calibrated alone, the rate was 3x what vdd then saw, the threshold a quarter of it
# was barely under the rate, and the first placement took 3 sampling periods in 4 of 10 runs).
( while :; do :; done ) & HOG=$!
# Fact: KVM's debugfs gives every vCPU's thread id.
start_vm calib; P=$!
wait_for "KVM debugfs has vcpu0/pid for the VM's vCPU thread" 10 sh -c "t=\$(cat /sys/kernel/debug/kvm/$P-*/vcpu0/pid 2>/dev/null); [ -n \"\$t\" ] && [ \"\$t\" != 0 ] && [ -d /proc/$P/task/\$t ]"
# Calibrate on what this emulated machine does.
d=$(ls -d /sys/kernel/debug/kvm/$P-* | head -1)
sleep 1; a=$(cat $d/io_exits); sleep 2; b=$(cat $d/io_exits)
RATE=$(( (b - a) / 2 ))
echo "calibration: the nested guest makes $RATE io_exits/s beside a CPU-bound process"
kill -9 $P; wait $P 2>/dev/null
check "the nested guest makes port-I/O exits ($RATE/s)" test $RATE -gt 20
# The threshold sits far under the calibrated rate (a 16th): the rate of a nested guest under TCG
# swings several-fold with what else the host runs, and the cool-down below stops the VM (rate 0),
# so nothing needs the threshold close to the rate. (A quarter once left a VM that vdd measured
# under it unplaced for 28 rounds on a loaded host.)
THR=$(( RATE / 16 )); [ $THR -ge 10 ] || THR=10; HYST=$(( THR / 2 ))

cat > /tmp/vdd.toml <<EOT
[policy]
interval_ms = 500
window_ms = 1000
threshold = $THR
hysteresis = $HYST
hold_ms = 1500
slice_us = 500
max_vms_on_driver_cores = 1
[host]
driver_cores = "1"
[daemon]
metrics = "127.0.0.1:9477"
EOT
printf '[policy]\nthreshold = 10\nhysteresis = 20\n' > /tmp/bad.toml
check "vdd --check-config accepts the file" vdd --check-config /tmp/vdd.toml
check "vdd --check-config rejects hysteresis >= threshold, naming the key" sh -c 'vdd --check-config /tmp/bad.toml 2>&1 | grep -q "hysteresis = 20" && ! vdd --check-config /tmp/bad.toml >/dev/null 2>&1'
check "vdctl says how to start vdd when it is not running" sh -c 'vdctl daemon status 2>&1 | grep -q "vdd is not running.*start it with"'

# Debug: a line per VM and sampling round with the rate vdd measured ("round N: VM P I/O rate R/s").
vdd --config /tmp/vdd.toml --log-level debug > /tmp/vdd.log 2>&1 & D=$!
wait_for "vdd answers on its control socket" 10 vdctl daemon status
vdctl daemon status
check "control socket is mode 0600" sh -c 'ls -l /run/vdd/vdd.sock | grep -q "^srw-------"'
check "slice mode is the EEVDF per-task slice" sh -c 'vdctl --json daemon status | grep -q "\"slice_mode\": \"EEVDF per-task slice"'

# Burst: the VM starts doing I/O at its first KVM_RUN (when vcpu0/pid appears).
start_vm io; V=$!
poll 10 sh -c "t=\$(cat /sys/kernel/debug/kvm/$V-*/vcpu0/pid 2>/dev/null); [ -n \"\$t\" ] && [ \"\$t\" != 0 ]" || fail "VM $V never ran"
ticks() { vdctl --json daemon status | sed -n 's/.*"ticks": \([0-9]*\).*/\1/p' | head -1; }
t0=$(now_cs); k0=$(ticks); T=$(vcpu_tid $V)
poll 60 aff_is $V $T 1
dt=$(( $(now_cs) - t0 )); k1=$(ticks)
echo "vCPU thread $T moved after ${dt}0 ms, vdd's sampling rounds $k0 -> $k1 (interval 500 ms)"
grep -E "placed VM|restored VM" /tmp/vdd.log
check "the I/O VM is still running" alive $V
[ "$(aff $V $T)" = 1 ] || { vdctl vm list; tail -5 /tmp/vdd.log; }
check "vCPU thread on the driver core" test "$(aff $V $T)" = 1
# Counted in vdd's sampling rounds and its measured rates, not in wall time or in the rate the
# calibration saw (under load the emulated VM's rate swings several-fold): vdd has the VM's
# rate (two samples) by round k0+2, and places it in the first round whose rate reaches the
# threshold (the log shows rates rounded to 1/s: "reached" is >= THR-1, "under" is < THR+1).
rates() { grep -o "round [0-9]*: VM $V I/O rate [0-9]*/s" /tmp/vdd.log | awk '{ sub(/:/, "", $2); sub(/\/s/, "", $7); print $2, $7 }'; }
rates > /tmp/rates.txt
echo "vdd's rounds and rates for VM $V (threshold $THR/s): $(head -12 /tmp/rates.txt | tr '\n' ' ')"
first=$(head -1 /tmp/rates.txt | cut -d' ' -f1)
placed=$(sed -n "s/.*placed VM $V on driver cores [0-9,-]* in round \([0-9]*\):.*/\1/p" /tmp/vdd.log | head -1)
check "vdd had the VM's rate by round k0+2 (first rate in round ${first:-none}, k0 $k0)" \
    test -n "$first" -a "${first:-0}" -le $((k0 + 2))
check "vdd logged the placement's round (${placed:-none})" test -n "$placed"
check "placed in a round whose rate reached the threshold" \
    awk -v r="$placed" -v t=$THR '$1 == r { found = 1; ok = ($2 >= t - 1) } END { exit !(found && ok) }' /tmp/rates.txt
check "no earlier round's rate reached the threshold (placed in the first one)" \
    awk -v r="$placed" -v t=$THR '$1 < r && $2 >= t + 1 { bad = 1 } END { exit bad }' /tmp/rates.txt
check "its slice is 500 us (se.slice $(slice $V $T))" test "$(slice $V $T)" = 500000.000000 -o "$(slice $V $T)" = 500000
check "the CPU-bound process was not touched" test "$(aff $HOG $HOG)" = 0-1
check "other threads of the VMM were not touched" sh -c "for t in \$(ls /proc/$V/task); do [ \$t = $T ] && continue; [ \"\$(awk '/^Cpus_allowed_list/ {print \$2}' /proc/$V/task/\$t/status)\" = 0-1 ] || exit 1; done"
vdctl vm list
vdctl vm show $V
check "vdctl vm list shows it placed" sh -c "vdctl vm list | grep -q \"^$V  *[^ ]*  *placed\""
check "vdctl --json vm show: managed, original affinity 0-1" sh -c "vdctl --json vm show $V | tr -d ' \n' | grep -q '\"managed\":true,\"orig_affinity\":\"0-1\"'"
check "metrics: placed and an I/O rate" sh -c "wget -q -O- http://127.0.0.1:9477/metrics | grep -q 'vdd_vm_state{pid=\"$V\",state=\"placed\"} 1'"

# Cool down: a stopped VM makes no I/O; restored after window + hold, not before hold.
kill -STOP $V; t0=$(now_cs)
poll 8 aff_is $V $T 0-1
dt=$(( $(now_cs) - t0 ))
echo "restored ${dt}0 ms after SIGSTOP (hold 1500 ms)"
check "restored after cooling down" test "$(aff $V $T)" = 0-1
check "not before hold_ms: ${dt}0 ms >= 1500 ms" test $dt -ge 150
check "slice back to the default ($BASE)" sh -c "[ \"\$(awk '/^se.slice/ {print \$3}' /proc/$V/task/$T/sched | cut -d. -f1)\" = $BASE ]"
check "the log gives the numbers" grep -q "restored VM $V: I/O rate 0/s .* for .*hold 1.5s" /tmp/vdd.log
kill -CONT $V
wait_for "placed again when the I/O comes back" 5 aff_is $V $T 1

# Crash: kill -9, the kernel keeps the placement, the state file the originals.
kill -9 $D; wait $D 2>/dev/null
cat /run/vdd/state.json
check "state file records the thread with its real original affinity" sh -c "tr -d ' \n' < /run/vdd/state.json | grep -q '\"tid\":$T,\"start_time\":[0-9]*,\"orig_affinity\":\"0-1\",\"placed_affinity\":\"1\"'"
check "the VM is still running" alive $V
check "still on the driver core while vdd is down" test "$(aff $V $T)" = 1
vdd --config /tmp/vdd.toml > /tmp/vdd2.log 2>&1 & D=$!
wait_for "restarted vdd answers" 10 vdctl daemon status
sleep 2
cat /tmp/vdd2.log
check "restart: VM adopted from the state file" grep -q "VM $V has 1 thread(s) on the driver cores from the previous run; adopted" /tmp/vdd2.log
check "restart: no second placement" sh -c "! grep -q 'placed VM' /tmp/vdd2.log && vdctl --json daemon status | grep -q '\"placements_total\": 0'"
check "restart: original still 0-1 in the state file" sh -c "tr -d ' \n' < /run/vdd/state.json | grep -q '\"orig_affinity\":\"0-1\"' && ! tr -d ' \n' < /run/vdd/state.json | grep -q '\"orig_affinity\":\"1\"'"
check "restart: still placed" test "$(aff $V $T)" = 1

# Runtime policy change: max 0 disables placement, the VM goes back at the next tick.
vdctl policy set max_vms_on_driver_cores 0 > /dev/null
wait_for "policy set max_vms_on_driver_cores 0: restored" 3 aff_is $V $T 0-1
check "policy get shows it" sh -c 'vdctl policy get | grep -q "^max_vms_on_driver_cores  *0$"'
check "policy set rejects a bad value with the reason" sh -c 'vdctl policy set slice_us 5 2>&1 | grep -q "slice_us"'
vdctl policy set max_vms_on_driver_cores 1 > /dev/null
wait_for "placed again with max 1" 5 aff_is $V $T 1

# Clean shutdown restores everything.
kill -TERM $D; wait $D; rc=$?
tail -3 /tmp/vdd2.log
check "vdd exits 0 on SIGTERM (rc=$rc)" test $rc = 0
check "SIGTERM restored the affinity" test "$(aff $V $T)" = 0-1
check "SIGTERM restored the slice" sh -c "[ \"\$(awk '/^se.slice/ {print \$3}' /proc/$V/task/$T/sched | cut -d. -f1)\" = $BASE ]"
check "state file empty after shutdown" sh -c "tr -d ' \n' < /run/vdd/state.json | grep -q '\"threads\":\[\]'"

# A placed VM that exits: restored as gone, nothing left over.
vdd --config /tmp/vdd.toml > /tmp/vdd3.log 2>&1 & D=$!
wait_for "vdd places the VM again" 8 aff_is $V $T 1
kill -9 $V; wait $V 2>/dev/null
wait_for "exited VM forgotten" 5 sh -c "vdctl --json daemon status | grep -q '\"managed_threads\": 0' && ! vdctl vm list | grep -q \"^$V \""
check "the log says the VM exited" grep -q "restored VM $V: VM exited" /tmp/vdd3.log
# vd_evtchn as a source: a kernel-path guest's requests are counted per VMM.
vd-testvmm evtchn --path kernel --requests 100000000 --batch 1 --timeout 900 > /dev/null 2>&1 & K=$!
sleep 3
vdctl vm list
check "vd_evtchn requests counted for the kernel-path VM" sh -c "vdctl --json vm show $K | grep -q '\"evtchn_requests\": [1-9]'"
kill -9 $K; wait $K 2>/dev/null
kill -TERM $D; wait $D
kill -9 $HOG; wait $HOG 2>/dev/null
check "no vdd warnings or errors but the expected ones" sh -c '! grep -E " (WARN|ERROR) " /tmp/vdd.log /tmp/vdd2.log /tmp/vdd3.log | grep -v "source vd_evtchn"'
true

# vd-timeout: 1200
# vd-on-demand
# Experiment, run only when named (TESTS='irq-fidelity' make test-vm): vd-testvmm's
# interrupt-fidelity oracle in a nested real-mode guest (kvm_amd in this TCG test VM; no vd
# module loaded). It fails if an interrupt arrives outside the architecture's rules: more
# deliveries than injections, a delivery with IF=0, or one on a vector never injected (see
# userspace-tools/vd-testvmm/src/irqfid.rs). IRQF_SECS (default 45) per run, from VD_APPEND
# as vd.irqf_secs=N.
. ./lib.sh
load kvm
is_loaded kvm_amd || insmod $M/kvm-amd.ko || fail "insmod kvm-amd (needs -cpu max for SVM)"
for m in vd_evtchn vd_input_irq vd_sriov_mgr; do unload $m; done
check "no vd module loaded" sh -c '! grep -q "^vd_" /proc/modules'
secs=$(sed -n 's/.*vd\.irqf_secs=\([0-9]*\).*/\1/p' /proc/cmdline)
secs=${secs:-45}
echo "kvm_amd params: $(for p in /sys/module/kvm_amd/parameters/*; do printf '%s=%s ' ${p##*/} $(cat $p); done)"
hogs=""
start_hogs() { for i in 1 2; do sh -c 'while :; do :; done' & hogs="$hogs $!"; done; }
stop_hogs() { for p in $hogs; do kill $p; done; for p in $hogs; do wait $p 2>/dev/null; done; hogs=""; }
bad=0; n=0
run() { # LABEL ARGS...
    label=$1; shift; n=$((n + 1))
    vd-testvmm irq-fidelity --secs $secs "$@" > /tmp/irqf.out; rc=$?
    echo "IRQF $label (args: $*) rc=$rc"; cat /tmp/irqf.out
    [ $rc = 0 ] || bad=$((bad + 1))
}
run plain
run migrate --migrate
start_hogs
run hogs --migrate
run hogs-hlt --migrate --hlt
run hogs-flood-io --migrate --flood --io 4
run hogs-nomigrate
stop_hogs
dmesg | grep -iE 'kvm|svm' | tail -5
check "all $n oracle runs clean ($bad failed)" test $bad = 0

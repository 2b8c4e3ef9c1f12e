# Runs the KUnit suites of every vd module: each module's suites run when it loads; the KTAP it
# printed is saved for the host, which parses it with the kernel's kunit.py.
. ./lib.sh
mkdir -p /tmp/ktap
for m in vd_kunit vd_evtchn vd_sriov_mgr vd_input_irq vd_front; do
    unload $m
    before=$(dmesg | wc -l)
    load $m
    dmesg | tail -n +$((before + 1)) | sed 's/^\[[^]]*\] //' > /tmp/ktap/$m.txt
    unload $m
    grep -q "# Subtest:" /tmp/ktap/$m.txt || fail "$m printed no KUnit suite"
    echo "ok: $m: $(grep -c '^ *ok ' /tmp/ktap/$m.txt) ok, $(grep -c '^ *not ok ' /tmp/ktap/$m.txt) not ok"
done

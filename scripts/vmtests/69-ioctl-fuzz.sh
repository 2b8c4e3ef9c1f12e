# Hostile arguments to every ioctl, mmap and read of the three devices (`vd-itest hostile`):
# seeded and randomised, VD_FUZZ_SECS seconds (default 20; `VD_FUZZ_SECS=600 TESTS=ioctl-fuzz
# make test-vm` for a long run), VD_FUZZ_SEED to replay a seed, VD_FUZZ_EXCLUDE=op,op to skip
# ops (names in `vd-itest hostile --help` / its summary). Every failed call's errno must be the
# one docs/ioctl-errors.md documents. Afterwards every module unloads and loads again, and the
# kernel log since this test started holds no oops, BUG, WARN, KASAN or lockdep report.
. ./lib.sh
. ./sriov-lib.sh
secs=${VD_FUZZ_SECS:-20}
mark="vd-ioctl-fuzz: start $(cut -d' ' -f1 /proc/uptime)"
echo "$mark" > /dev/kmsg
load vd_evtchn; load vd_input_irq; load vd_sriov_mgr
# VFs to lease: whatever count an earlier test left, else 2 (no PF reconfiguration beyond that).
PF=$(vdctl sriov list --json | grep -m1 '"pf":' | sed 's/.*"pf": "\([^"]*\)".*/\1/')
[ -n "$PF" ] || fail "no SR-IOV PF listed"
cur=$(cat /sys/bus/pci/devices/$PF/sriov_numvfs)
sriov_init $([ "$cur" = 0 ] && echo 2 || echo "$cur")
echo "VFs: $VFS"
# Calls being made are progress: tell the harness's stall watchdog (serial lines starting with VD)
# while the trace grows, so a long run is not taken for a hung VM; a hung fuzzer stops this.
: > /tmp/fuzz.trace
( last=0; while sleep 30; do
      n=$(wc -c < /tmp/fuzz.trace)
      [ "$n" != "$last" ] || continue
      last=$n; echo "VD-FUZZ-PROGRESS $(wc -l < /tmp/fuzz.trace) calls" > /dev/console
  done ) &
alive=$!
trap 'kill $alive 2>/dev/null' EXIT
vd-itest hostile --secs "$secs" --trace /tmp/fuzz.trace ${VD_FUZZ_SEED:+--seed $VD_FUZZ_SEED} \
    ${VD_FUZZ_EXCLUDE:+--exclude $VD_FUZZ_EXCLUDE}
rc=$?
kill $alive 2>/dev/null
if [ $rc != 0 ]; then
    echo "last calls of the trace (the kernel may have killed the fuzzer in the last one):"
    grep -v " munmap " /tmp/fuzz.trace | tail -n 15 | sed 's/^/    /'
fi
# The fuzzer's files are closed: released VFs go back to their host driver.
poll 30 sh -c "! vdctl sriov list --json | grep '\"phase\":' | grep -qv '\"host\"'"
# Every check below runs even if one before failed (a stuck module must not hide a splat).
bad=""
soft() { desc=$1; shift; if "$@"; then echo "ok: $desc"; else echo "FAIL: $desc"; bad="$bad; $desc"; fi; }
soft "every VF back on the host after the run" sh -c "! vdctl sriov list --json | grep '\"phase\":' | grep -qv '\"host\"'"
for m in vd_input_irq vd_sriov_mgr vd_evtchn; do
    soft "rmmod $m after the run" timeout 60 rmmod $m
done
for m in vd_evtchn vd_sriov_mgr vd_input_irq; do is_loaded $m || soft "insmod $m again" insmod $M/$m.ko; done
vdctl status --json > /tmp/status.json
soft "all three loaded again and answering" test "$(grep -c '"loaded": true' /tmp/status.json)" = 3
dmesg | sed -n "/$mark/,\$p" > /tmp/fuzz.dmesg
if grep -nE 'Oops|BUG:|WARNING:|kernel BUG|general protection|KASAN|UBSAN|possible circular locking|INFO: task .* blocked|Call Trace' /tmp/fuzz.dmesg > /tmp/fuzz.bad; then
    head -n 60 /tmp/fuzz.bad
    fail "kernel log since the fuzz run started has a splat: $(head -n 1 /tmp/fuzz.bad)"
fi
echo "ok: kernel log clean since the start of the run ($(wc -l < /tmp/fuzz.dmesg) lines)"
[ $rc = 0 ] || fail "vd-itest hostile found violations (rc=$rc; seed in its first line)"
[ -z "$bad" ] || fail "${bad#; }"

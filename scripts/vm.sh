#!/usr/bin/env bash
# Boot the test VM: vm.sh demo|test|shell|bench|reconfig|guests|tcg-guests-a|tcg-guests-b [log file]. QEMU 10, q35, -cpu max (nested SVM),
# an igb SR-IOV PF on a PCIe root port, software emulation. Hard timeout per boot.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
mode=${1:-demo}; logf=${2:-$VD_OUT/vm-$mode.log}
OUT=$VD_OUT
[ -f "$OUT/bzImage" ] && [ -f "$OUT/initramfs.gz" ] || die "vm: build/bzImage or build/initramfs.gz missing: make initramfs"
# tcg-guests (make test's real Linux guests, emulated by QEMU inside the emulator) takes longest.
BOOT_TIMEOUT=${VD_BOOT_TIMEOUT:-1500}
case $mode in tcg-guests-*) BOOT_TIMEOUT=${VD_BOOT_TIMEOUT:-4200} ;; esac
# Per-test timeout in the guest: a benchmark measures for minutes (bench-vdd alone ran past 180 s
# on a loaded 2-core host), a test must not.
tmo=${VD_TEST_TIMEOUT:-180}; [ "$mode" = bench ] && tmo=${VD_TEST_TIMEOUT:-600}
# panic_on_warn=0: a WARN must not end the run (the kernel-log check reports it, with its test).
append="console=ttyS0 panic=-1 panic_on_warn=0 quiet loglevel=4 vd.mode=$mode vd.timeout=$((tmo + ${VD_FUZZ_SECS:-0}))"
# The debug kernel boots with 4-level paging: under -cpu max (LA57) its KASAN misreads a direct-map
# address as wild while identify_cpu() has zeroed the boot CPU's feature bits (pgtable_l5_enabled()
# is then false), if an interrupt lands in that window: a kernel false positive at 0.006 s of
# boot, before any module (README, known limits).
[ "${VARIANT:-base}" = debug ] && append+=" no5lvl"
# 69-ioctl-fuzz.sh's knobs: unknown NAME=value kernel parameters reach init's environment.
for v in VD_FUZZ_SECS VD_FUZZ_SEED VD_FUZZ_EXCLUDE; do [ -z "${!v:-}" ] || append+=" $v=${!v}"; done
[ -n "${TESTS:-}" ] && append+=" vd.tests=$(echo $TESTS | tr ' ' ',')"
# VD_APPEND: more kernel parameters for the test VM (experiments, e.g. kvm_amd.vgif=0).
[ -n "${VD_APPEND:-}" ] && append+=" $VD_APPEND"
# The igb PF's wire: a UDP socket on loopback. A free port pair, so two VMs can run at once.
port=${VD_UDP_PORT:-$(( 47100 + ($$ % 400) * 2 ))}
# The PF reconfiguration tests hung the guest under multi-threaded TCG in xAPIC mode (a timer
# interrupt left in service on a halted vCPU: the emulator's, see the README); the reconfig boot
# keeps single-threaded TCG, which has never hung them.
accel=(); [ "$mode" = reconfig ] && accel=(-accel tcg,thread=single)
# VD_TCG_THREAD=single|multi overrides that choice for any boot (experiments).
[ -n "${VD_TCG_THREAD:-}" ] && accel=(-accel "tcg,thread=$VD_TCG_THREAD")
# An emulated Intel IOMMU (DMA remapping + interrupt remapping with x2APIC support, eim=on), so
# SR-IOV leases hand VFs to vfio-pci in real IOMMU groups and the guest runs its APICs in x2APIC
# mode as on a real host. VD_IOMMU=0 boots without one (vfio's no-IOMMU mode, xAPIC).
iommu=(); machine=q35
if [ "${VD_IOMMU:-1}" = 1 ]; then
    machine=q35,kernel-irqchip=split; iommu=(-device intel-iommu,intremap=on,caching-mode=on,eim=on)
    append+=" intel_iommu=on"
fi
# VD_SMP (2): the test VM's CPUs (experiments: with 1, no vCPU of the test VM interrupts another).
qemu=(qemu-system-x86_64 -M $machine "${accel[@]}" -cpu max -smp "${VD_SMP:-2}" -m 2048 -nographic -no-reboot
      "${iommu[@]}" -kernel "$OUT/bzImage" -initrd "$OUT/initramfs.gz" -append "$append"
      -device pcie-root-port,id=rp0,slot=1,chassis=1
      -netdev socket,id=n0,udp=127.0.0.1:$((port + 1)),localaddr=127.0.0.1:$port
      -device igb,bus=rp0,netdev=n0 -nic none)
log "vm: booting ($mode), timeout ${BOOT_TIMEOUT}s, log $logf"
if [ "$mode" = shell ]; then
    exec "${qemu[@]}"
fi
set +e
# QEMU's own pid (-pidfile; QEMU removes the file when it exits): the stall watchdog stops this
# VM and no other (several helpers' VMs run at once).
pidf=$OUT/qemu-$mode.pid; rm -f "$pidf"
qemu+=(-pidfile "$pidf")
# A guest whose tests stop progressing (no VDTEST/VD- marker line) for VD_STALL_TIMEOUT seconds,
# longer than any test's own timeout, is hung: stop it rather than wait for the boot timeout.
# (Kernel messages such as RCU stall reports keep coming from a hung guest, so they don't count.)
# (Tests may declare a longer timeout of their own: "# vd-timeout: SECONDS", see vm-init.sh.)
maxtmo=$( { echo "$tmo"; sed -n 's/^# vd-timeout: \([0-9]*\).*/\1/p' "$VD_ROOT"/scripts/vmtests/*.sh; } | sort -n | tail -1)
# (vm-init.sh gives each test 6x its own timeout (TCG_SLOW) when its guests run under TCG.)
case $mode in tcg-guests-*) maxtmo=$((maxtmo * 6)) ;; esac
stall=${VD_STALL_TIMEOUT:-$(( maxtmo + 120 ))}
( last=0; idle=0
  while sleep 15; do
      qpid=$(cat "$pidf" 2>/dev/null) && [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null || break
      size=$(grep -c '^VD' "$logf" 2>/dev/null)
      if [ "$size" = "$last" ]; then idle=$((idle + 15)); else idle=0; last=$size; fi
      if [ $idle -ge "$stall" ]; then
          echo "VD-STALL: no test progress for ${idle}s; stopping the VM" >> "$logf"
          log "vm: STALL: no test finished or started for ${idle}s; stopping the VM"
          kill "$qpid"; break
      fi
  done ) &
watch=$!
timeout --foreground -k 5 "$BOOT_TIMEOUT" "${qemu[@]}" < /dev/null 2>&1 | sed -u 's/\r$//' | tee "$logf" | \
    { if [ "${VD_QUIET:-0}" = 1 ]; then grep --line-buffered -E '^(VDTEST|VD-)'; else sed -n '/==== DMESG BEGIN/,/==== DMESG END/!p;'; fi; }
rc=${PIPESTATUS[0]}
kill $watch 2>/dev/null; wait $watch 2>/dev/null
set -e
[ "$rc" = 124 ] && log "vm: TIMEOUT after ${BOOT_TIMEOUT}s"
grep -q '^VD-DONE' "$logf" || { log "vm: the VM never reported VD-DONE (rc=$rc)"; exit 1; }
if [ "$mode" = demo ]; then grep -q '^VD-DEMO-OK' "$logf" || exit 1; fi
if [ "$mode" = bench ]; then
    # Every benchmark must have run and passed: one line per failure, and a non-zero exit.
    bad=0
    for t in "$VD_ROOT"/scripts/vmtests/9*.sh; do
        n=$(basename "$t" .sh); n=${n#*-}
        [ -n "${TESTS:-}" ] && ! echo " $TESTS " | grep -q " $n " && continue
        line=$(grep "^VDTEST $n " "$logf" | tail -1)
        case "$line" in
            *" PASS "*) ;;
            "") log "bench: FAILED: $n never reported (VM died or timed out; see $logf)"; bad=1 ;;
            *) log "bench: FAILED: $n: ${line#VDTEST $n }: $(sed -n "/^VDTEST-START $n\$/,/^VDTEST $n /p" "$logf" | grep -E '^  \| .*FAIL' | head -2 | tr '\n' ' ')"; bad=1 ;;
        esac
    done
    [ $bad = 0 ] || exit 1
    log "bench: every benchmark passed"
fi
exit 0

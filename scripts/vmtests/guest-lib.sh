# Nested guests for the VM tests (sourced after lib.sh): the test VM's QEMU (copied into its
# initramfs by scripts/build.sh) boots the same bzImage with KVM (nested SVM under TCG) and the
# guest initramfs whose /init is scripts/guest-init.sh; the guest runs one scenario and prints
# `VDGUEST PASS|FAIL <scenario>...` on its serial console (a file here).
#
#   run_guest NAME SCENARIO [extra qemu args...]    start_guest + wait_guest; 0 on PASS
#   start_guest NAME SCENARIO [extra qemu args...]  starts QEMU in the background (GUEST_PID;
#                                                   also `guest_pid NAME`)
#   guest_running NAME                              QEMU alive and no verdict yet
#   wait_guest NAME                                 waits for the verdict and QEMU's exit
# After wait_guest: GUEST_RESULT (the VDGUEST line), GUEST_SECS (QEMU start to verdict);
# `result_has TEXT` checks the verdict line.
# The console goes to this test's output between `==== GUEST CONSOLE NAME BEGIN/END` lines;
# scripts/test.sh keeps each in build/guest-consoles/<test>-NAME.log.
# Knobs: GUEST_MEM (MiB, 256), GUEST_APPEND (more kernel parameters), GUEST_INITRD (another
# initramfs), VD_GUEST_TIMEOUT (s, 150).
GUEST_DIR=${VD_GUEST_DIR:-/vd/guest}
GUEST_TIMEOUT=${VD_GUEST_TIMEOUT:-150}

guest_kvm() { # /dev/kvm in the test VM
    is_loaded kvm || insmod "$M/kvm.ko" || fail "insmod kvm"
    is_loaded kvm_amd || insmod "$M/kvm-amd.ko" || fail "insmod kvm-amd (needs -cpu max for SVM)"
    test -c /dev/kvm || fail "/dev/kvm missing after loading kvm-amd"
    command -v qemu-system-x86_64 > /dev/null || fail "qemu-system-x86_64 is not in the test VM's initramfs"
    test -f "$GUEST_DIR/bzImage" -a -f "$GUEST_DIR/initramfs.gz" || fail "$GUEST_DIR: no guest kernel/initramfs"
}

uptime_cs() { # the test VM's uptime in centiseconds
    awk '{ split($1, a, "."); print a[1] * 100 + a[2] }' /proc/uptime
}

start_guest() {
    _gn=$1; _gs=$2; shift 2
    guest_kvm
    _gc=/tmp/guest-$_gn.console
    : > "$_gc"
    GUEST_RESULT=""; GUEST_SECS=""
    uptime_cs > "/tmp/guest-$_gn.start"
    # -display none: nothing else in the initramfs to display with (no UI modules, no keymaps).
    qemu-system-x86_64 -accel kvm -cpu host -M q35 -m "${GUEST_MEM:-256}" -smp 1 \
        -nic none -vga none -nodefaults -display none -no-reboot \
        -serial "file:$_gc" -kernel "$GUEST_DIR/bzImage" -initrd "${GUEST_INITRD:-$GUEST_DIR/initramfs.gz}" \
        -append "console=ttyS0 quiet panic=-1 vd.scenario=$_gs ${GUEST_APPEND:-}" \
        "$@" > "/tmp/guest-$_gn.qemu" 2>&1 < /dev/null &
    GUEST_PID=$!
    echo "$GUEST_PID" > "/tmp/guest-$_gn.pid"
    echo "guest $_gn: QEMU pid $GUEST_PID, scenario $_gs"
}

guest_verdict() { grep -m1 -a '^VDGUEST \(PASS\|FAIL\) ' "/tmp/guest-$1.console" 2>/dev/null | tr -d '\r'; }

guest_pid() { cat "/tmp/guest-$1.pid"; }
guest_running() { kill -0 "$(guest_pid "$1")" 2>/dev/null && [ -z "$(guest_verdict "$1")" ]; }

# wait_guest NAME: the verdict (or QEMU's death, or GUEST_TIMEOUT), then QEMU's own exit (the
# guest powers off; QEMU is stopped by its pid if it does not within 60 s). 0 on PASS.
wait_guest() {
    _gn=$1; _gc=/tmp/guest-$_gn.console; _gpid=$(guest_pid "$_gn")
    _gdeadline=$(( $(uptime_cs) + GUEST_TIMEOUT * 100 )); _gwhy=""
    while guest_running "$_gn"; do
        [ "$(uptime_cs)" -lt $_gdeadline ] || { _gwhy="no verdict within ${GUEST_TIMEOUT}s"; break; }
        sleep 0.2
    done
    GUEST_RESULT=$(guest_verdict "$_gn")
    _gend=$(uptime_cs)
    GUEST_SECS=$(awk -v a="$(cat "/tmp/guest-$_gn.start")" -v b="$_gend" 'BEGIN { printf "%.1f", (b - a) / 100 }')
    # Power-off after the verdict: QEMU exits by itself.
    _gdeadline=$(( $(uptime_cs) + 6000 ))
    while kill -0 "$_gpid" 2>/dev/null && [ "$(uptime_cs)" -lt $_gdeadline ]; do sleep 0.2; done
    if kill -0 "$_gpid" 2>/dev/null; then
        [ -n "$_gwhy" ] || _gwhy="QEMU still running 60 s after the verdict"
        echo "guest $_gn: stopping QEMU (pid $_gpid): $_gwhy"
        kill "$_gpid"
        _gdeadline=$(( $(uptime_cs) + 1000 ))
        while kill -0 "$_gpid" 2>/dev/null && [ "$(uptime_cs)" -lt $_gdeadline ]; do sleep 0.2; done
        kill -9 "$_gpid" 2>/dev/null
    fi
    wait "$_gpid"; _grc=$?
    echo "==== GUEST CONSOLE $_gn BEGIN"
    tr -d '\r' < "$_gc"
    echo "==== GUEST CONSOLE $_gn END"
    if [ -s "/tmp/guest-$_gn.qemu" ]; then echo "QEMU ($_gn) said:"; sed 's/^/  qemu: /' "/tmp/guest-$_gn.qemu"; fi
    [ -n "$GUEST_RESULT" ] || GUEST_RESULT="VDGUEST FAIL ?: no verdict (${_gwhy:-QEMU exited with $_grc first})"
    echo "guest $_gn: $GUEST_RESULT (${GUEST_SECS}s from QEMU start; QEMU exit $_grc)"
    case "$GUEST_RESULT" in "VDGUEST PASS "*) [ -z "$_gwhy" ] ;; *) return 1 ;; esac
}

run_guest() { start_guest "$@" && wait_guest "$1"; }

result_has() { case "$GUEST_RESULT" in *"$1"*) return 0 ;; esac; return 1; }

# Nested guests for the VM tests (sourced after lib.sh): the test VM's QEMU (copied into its
# initramfs by scripts/build.sh) boots the same bzImage with KVM (nested SVM under TCG) and the
# guest initramfs whose /init is scripts/guest-init.sh; the guest runs one scenario and prints
# `VDGUEST PASS|FAIL <scenario>...` on its serial console (a file here). Every guest also gets
# the tools disk (fio, mkfs.ext4; read-only virtio-blk, serial vdtools, PCI slot 0x10 so that a
# test's own virtio disks come first, as /dev/vda...).
#
#   run_guest NAME SCENARIO [extra qemu args...]    start_guest + wait_guest; 0 on PASS
#   start_guest NAME SCENARIO [extra qemu args...]  starts QEMU in the background (GUEST_PID;
#                                                   also `guest_pid NAME`)
#   guest_running NAME                              QEMU alive and no verdict yet
#   wait_guest NAME                                 waits for the verdict and QEMU's exit
# After wait_guest: GUEST_RESULT (the VDGUEST line), GUEST_SECS (QEMU start to verdict),
# GUEST_BOOT_SECS (QEMU start to the guest's /init, within 0.2 s);
# `result_has TEXT` checks the verdict line.
# The console goes to this test's output between `==== GUEST CONSOLE NAME BEGIN/END` lines;
# scripts/test.sh keeps each in build/guest-consoles/<test>-NAME.log.
# Knobs: GUEST_MEM (MiB, 256), GUEST_CPUS (CPU list for QEMU's threads), GUEST_APPEND (more kernel parameters), GUEST_INITRD (another
# initramfs), VD_GUEST_TIMEOUT (s, 150), GUEST_ACCEL (kvm: nested KVM, the default; tcg: QEMU's
# own emulator runs the guest, no nested SVM: make test's tcg-guests-a|b boots export it, with
# GUEST_SLOW, how many times slower such a guest is; waits on a guest's progress scale by it:
# `guest_secs S`).
GUEST_DIR=${VD_GUEST_DIR:-/vd/guest}
GUEST_TIMEOUT=${VD_GUEST_TIMEOUT:-150}
GUEST_ACCEL=${GUEST_ACCEL:-kvm}
GUEST_SLOW=${GUEST_SLOW:-1}
# guest_secs S: S seconds of a nested KVM guest's progress, in this boot's guests' time.
guest_secs() { echo $(( $1 * GUEST_SLOW )); }

# Whatever this test started and left running when it ends (a `fail` midway) is stopped, by pid.
_GL_PIDS=""
_gl_cleanup() {
    for _p in $_GL_PIDS; do kill -0 "$_p" 2>/dev/null && { echo "cleanup: stopping pid $_p"; kill -9 "$_p"; }; done
}
trap _gl_cleanup EXIT

guest_kvm() { # /dev/kvm in the test VM
    is_loaded kvm || insmod "$M/kvm.ko" || fail "insmod kvm"
    is_loaded kvm_amd || insmod "$M/kvm-amd.ko" || fail "insmod kvm-amd (needs -cpu max for SVM)"
    test -c /dev/kvm || fail "/dev/kvm missing after loading kvm-amd"
    command -v qemu-system-x86_64 > /dev/null || fail "qemu-system-x86_64 is not in the test VM's initramfs"
    for f in bzImage initramfs.gz tools.img; do
        test -f "$GUEST_DIR/$f" || fail "$GUEST_DIR/$f missing (scripts/build.sh initramfs)"
    done
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
    uptime_cs > "/tmp/guest-$_gn.start"; rm -f "/tmp/guest-$_gn.init"
    # -display none: nothing else in the initramfs to display with (no UI modules, no keymaps).
    # Under TCG the guest's scenarios use smaller data sets (vd.tcg=1, guest-init.sh).
    case "$GUEST_ACCEL" in
        kvm) _ga="-accel kvm -cpu host"; _gt="" ;;
        # Thread names: a TCG guest has no KVM debugfs entry to find its vCPU threads by.
        tcg) _ga="-accel tcg -cpu qemu64 -name guest=vd-$_gn,debug-threads=on"; _gt="vd.tcg=1" ;;
        *) fail "GUEST_ACCEL=$GUEST_ACCEL: kvm or tcg" ;;
    esac
    # GUEST_CPUS: the test VM's CPUs for every thread of this QEMU (taskset -c), e.g. to keep a
    # guest's vCPU and the threads that interrupt it on one CPU (vfmove-lib.sh).
    ${GUEST_CPUS:+taskset -c "$GUEST_CPUS"} qemu-system-x86_64 $_ga -M q35 -m "${GUEST_MEM:-256}" -smp 1 \
        -nic none -vga none -nodefaults -display none -no-reboot \
        -drive "file=$GUEST_DIR/tools.img,if=none,id=vdtools,format=raw,readonly=on" \
        -device virtio-blk-pci,drive=vdtools,serial=vdtools,addr=0x10 \
        -serial "file:$_gc" -kernel "$GUEST_DIR/bzImage" -initrd "${GUEST_INITRD:-$GUEST_DIR/initramfs.gz}" \
        -append "console=ttyS0 quiet panic=-1 vd.scenario=$_gs $_gt ${GUEST_APPEND:-}" \
        "$@" > "/tmp/guest-$_gn.qemu" 2>&1 < /dev/null &
    GUEST_PID=$!
    _GL_PIDS="$_GL_PIDS $GUEST_PID"
    echo "$GUEST_PID" > "/tmp/guest-$_gn.pid"
    echo "guest $_gn: QEMU pid $GUEST_PID, scenario $_gs"
}

# guest_reset_silently NAME: after wait_guest, the guest ended in a reset with no word on its
# console (no verdict, no panic, oops or BUG): the signature of the emulator's nested-SVM fault
# (README, known limits); a guest kernel that crashes says so first.
guest_reset_silently() {
    case "$GUEST_RESULT" in *"the guest was reset"*) ;; *) return 1 ;; esac
    ! grep -q -e 'Kernel panic' -e 'Oops' -e 'BUG:' -e 'general protection' "/tmp/guest-$1.console"
}

guest_verdict() { grep -m1 -a '^VDGUEST \(PASS\|FAIL\) ' "/tmp/guest-$1.console" 2>/dev/null | tr -d '\r'; }

guest_pid() { cat "/tmp/guest-$1.pid"; }
# guest_running NAME: QEMU alive and no verdict yet (also notes when the guest's /init started).
guest_running() {
    [ -f "/tmp/guest-$1.init" ] || ! grep -q '^VDGUEST-INFO init started' "/tmp/guest-$1.console" \
        || uptime_cs > "/tmp/guest-$1.init"
    kill -0 "$(guest_pid "$1")" 2>/dev/null && [ -z "$(guest_verdict "$1")" ]
}

# wait_guest NAME: the verdict (or QEMU's death, or GUEST_TIMEOUT), then QEMU's own exit (the
# guest powers off; QEMU is stopped by its pid if it does not within 60 s). 0 on PASS.
wait_guest() {
    _gn=$1; _gc=/tmp/guest-$_gn.console; _gpid=$(guest_pid "$_gn")
    _gdeadline=$(( $(uptime_cs) + $(guest_secs "$GUEST_TIMEOUT") * 100 )); _gwhy=""
    while guest_running "$_gn"; do
        [ "$(uptime_cs)" -lt $_gdeadline ] || { _gwhy="no verdict within $(guest_secs "$GUEST_TIMEOUT")s"; break; }
        sleep 0.2
    done
    _ginit=$(cat "/tmp/guest-$_gn.init" 2>/dev/null)
    GUEST_RESULT=$(guest_verdict "$_gn")
    _gend=$(uptime_cs)
    _gs0=$(cat "/tmp/guest-$_gn.start")
    GUEST_SECS=$(awk -v a="$_gs0" -v b="$_gend" 'BEGIN { printf "%.1f", (b - a) / 100 }')
    GUEST_BOOT_SECS=$(awk -v a="$_gs0" -v b="${_ginit:-0}" 'BEGIN { if (b) printf "%.1f", (b - a) / 100; else print "?" }')
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
    # Read again now that QEMU is gone: the first read may have caught a long verdict line
    # while the guest's serial port was still writing it.
    GUEST_RESULT=$(guest_verdict "$_gn")
    echo "==== GUEST CONSOLE $_gn BEGIN"
    tr -d '\r' < "$_gc"
    echo "==== GUEST CONSOLE $_gn END"
    if [ -s "/tmp/guest-$_gn.qemu" ]; then echo "QEMU ($_gn) said:"; sed 's/^/  qemu: /' "/tmp/guest-$_gn.qemu"; fi
    if [ -z "$GUEST_RESULT" ] && [ -z "$_gwhy" ] && ! grep -q 'reboot: Power down' "$_gc"; then
        if [ "$_grc" = 0 ]; then
            # -no-reboot: a guest reset (a triple fault) ends QEMU with 0 and no word on the console.
            _gwhy="QEMU exited with 0 first, without the guest's power-down: the guest was reset"
        else
            _gwhy="QEMU failed (exit $_grc) before the guest's verdict: see what QEMU said"
        fi
    fi
    [ -n "$GUEST_RESULT" ] || GUEST_RESULT="VDGUEST FAIL ?: no verdict (${_gwhy:-QEMU exited with $_grc first})"
    echo "guest $_gn: $GUEST_RESULT (QEMU start to the guest's /init ${GUEST_BOOT_SECS}s, to its verdict ${GUEST_SECS}s; QEMU exit $_grc)"
    case "$GUEST_RESULT" in "VDGUEST PASS "*) [ -z "$_gwhy" ] ;; *) return 1 ;; esac
}

run_guest() { start_guest "$@" && wait_guest "$1"; }

result_has() { case "$GUEST_RESULT" in *"$1"*) return 0 ;; esac; return 1; }

# --- vd disks: vd-ivshmem-server + QEMU's ivshmem-doorbell --------------------------------------
# start_server NAME IMAGE [server args...]: vd-ivshmem-server for IMAGE on /tmp/vd-NAME.sock,
# logs in /tmp/vd-NAME.server.{out,err}; returns once it listens (SERVER_PID, `server_pid NAME`).
start_server() { _sn=$1; _si=$2; shift 2; _server "$_sn" --image "$_si" "$@"; }
# start_input_server NAME VM [server args...]: vd-ivshmem-server --input VM on
# /tmp/vd-NAME.sock (a guest's vd input device; `vd_disk_args NAME` connects a QEMU to it).
start_input_server() { _sn=$1; _sv=$2; shift 2; _server "$_sn" --input "$_sv" "$@"; }
# _server NAME [server args...]: what both start.
_server() {
    _sn=$1; shift
    command -v vd-ivshmem-server > /dev/null \
        || fail "vd-ivshmem-server is not in the test VM (userspace-tools/vd-ivshmem not built into build/bin)"
    rm -f "/tmp/vd-$_sn.sock"
    vd-ivshmem-server --socket "/tmp/vd-$_sn.sock" --json "$@" \
        > "/tmp/vd-$_sn.server.out" 2> "/tmp/vd-$_sn.server.err" &
    SERVER_PID=$!
    _GL_PIDS="$_GL_PIDS $SERVER_PID"
    echo "$SERVER_PID" > "/tmp/vd-$_sn.server.pid"
    wait_for "vd-ivshmem-server $* ($_sn, pid $SERVER_PID) listens on /tmp/vd-$_sn.sock" 20 server_listening "$_sn"
}
server_pid() { cat "/tmp/vd-$1.server.pid"; }
server_listening() {
    kill -0 "$(server_pid "$1")" 2>/dev/null \
        || { cat "/tmp/vd-$1.server.err"; fail "vd-ivshmem-server ($1) exited"; }
    test -S "/tmp/vd-$1.sock"
}
server_log() { echo "vd-ivshmem-server ($1) log:"; cat "/tmp/vd-$1.server.err" "/tmp/vd-$1.server.out"; }
# stop_server NAME: SIGTERM, then waits (10 s at most) for its exit; returns its exit status.
stop_server() {
    _sp=$(server_pid "$1")
    kill -TERM "$_sp"
    poll 10 sh -c "! kill -0 $_sp 2>/dev/null"
    if kill -0 "$_sp" 2>/dev/null; then kill -9 "$_sp"; wait "$_sp"; echo "server $1 ignored SIGTERM"; return 1; fi
    wait "$_sp"
}
# vd_disk_args NAME: QEMU's arguments for a vd disk served by server NAME.
vd_disk_args() {
    echo "-chardev socket,path=/tmp/vd-$1.sock,id=vd-$1 -device ivshmem-doorbell,chardev=vd-$1,vectors=1"
}
# guest_channels FILE PID: how many channels in FILE (`vdctl evtchn list --json`) belong to a
# guest (orphan), were created by PID (a server), serve a block backend and have served requests.
guest_channels() {
    awk -v pid="$2" '
        /\{/ { o = 0; p = 0; b = ""; r = 0 }
        /"orphan": true/ { o = 1 }
        /"domain_pid": / { v = $2; sub(/,/, "", v); p = (v == pid) }
        /"backend": / { b = $2 }
        /"requests": / { v = $2; sub(/,/, "", v); r = v + 0 }
        /\}/ { if (o && p && b ~ /block/ && r > 0) n++ }
        END { print n + 0 }' "$1"
}
# kicked_channels FILE SERVER KICKER: how many guest (orphan) channels in FILE (`vdctl evtchn list
# --json`) were created by SERVER (`domain_pid`) and last kicked by KICKER (`kick_pid`: the
# process whose thread signalled the kick eventfd, e.g. the QEMU whose ioeventfd it is).
kicked_channels() {
    awk -v srv="$2" -v kp="$3" '
        /\{/ { o = 0; p = 0; k = 0 }
        /"orphan": true/ { o = 1 }
        /"domain_pid": / { v = $2; sub(/,/, "", v); p = (v == srv) }
        /"kick_pid": / { v = $2; sub(/,/, "", v); k = (v == kp) }
        /\}/ { if (o && p && k) n++ }
        END { print n + 0 }' "$1"
}
no_guest_channel() { vdctl evtchn list --json > /tmp/list.json && ! grep -q '"orphan": true' /tmp/list.json; }
# served_requests PID: requests served so far on the guest (orphan) block channels that server
# PID created (a channel keeps its creator's pid after that server is gone); 0 if none.
served_requests() {
    vdctl evtchn list --json > /tmp/list-req.json 2>/dev/null || { echo 0; return; }
    awk -v pid="$1" '
        /\{/ { o = 0; p = 0; r = 0 }
        /"orphan": true/ { o = 1 }
        /"domain_pid": / { v = $2; sub(/,/, "", v); p = (v == pid) }
        /"requests": / { v = $2; sub(/,/, "", v); r = v + 0 }
        /\}/ { if (o && p) n += r }
        END { print n + 0 }' /tmp/list-req.json
}
# guest_io_over NAME PID N: guest NAME still runs and server PID's guest channels served more
# than N requests (fails the test if the guest stopped first: its verdict says why).
guest_io_over() {
    guest_running "$1" || fail "guest $1 stopped before doing vd I/O: $(guest_verdict "$1")"
    [ "$(served_requests "$2")" -gt "$3" ]
}

# --- after QEMUs were killed: nothing leaked (22-evtchn-qemu-kill, 85-guest-kill) ----------------
shmem_kb() { awk '/^Shmem:/ { print $2 }' /proc/meminfo; }
# kill_leak_check NAME CLIENTS ROUNDS WHAT SHMEM0: the end of a test whose server NAME served
# CLIENTS QEMUs, ROUNDS of them killed with SIGKILL (WHAT names them in the messages: "QEMU",
# "guest"), all their channels already torn down; SHMEM0 is `shmem_kb` before the server started.
# Checks: the server handed out CLIENTS channels and refused none, it exits 0 on SIGTERM,
# vd_evtchn holds no module reference, Shmem grew by less than half a channel (the server's
# shm_size), and vd_evtchn unloads. Test images must be written out (not sparse): their own pages
# must not count as channel memory.
kill_leak_check() {
    _kn=$1; _kclients=$2; _krounds=$3; _kwhat=$4; _kshmem0=$5
    _kout=/tmp/vd-$_kn.server.out
    _kc=$(grep -c '"event":"client"' "$_kout")
    check "the server handed out a channel to each of the $_kclients QEMUs ($_kc)" test "$_kc" = "$_kclients"
    check "the server refused none" sh -c "! grep -q '\"event\":\"refused\"' $_kout"
    _kshm=$(( $(sed -n 's/.*"event":"listening".*"shm_size":\([0-9]*\).*/\1/p' "$_kout") / 1024 ))
    stop_server "$_kn"; _krc=$?
    check "vd-ivshmem-server exits 0 on SIGTERM after $_krounds killed ${_kwhat}s (exit $_krc)" test $_krc = 0
    _krefs=$(cat /sys/module/vd_evtchn/refcnt)
    check "vd_evtchn holds no module reference for a dead $_kwhat (refcnt $_krefs)" test "$_krefs" = 0
    _kshmem1=$(shmem_kb)
    echo "Shmem: ${_kshmem0} kB before, ${_kshmem1} kB after $_krounds rounds; one channel is ${_kshm} kB"
    check "the channels' shared memory went back (Shmem grew $((_kshmem1 - _kshmem0)) kB, less than half a channel)" \
        test $((_kshmem1 - _kshmem0)) -lt $((_kshm / 2))
    rmmod vd_evtchn; _krc=$?
    check "vd_evtchn unloads after $_krounds killed ${_kwhat}s (rmmod exit $_krc)" test $_krc = 0
}

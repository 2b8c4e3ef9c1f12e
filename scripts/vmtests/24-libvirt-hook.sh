# vd-timeout: 180
# Issue 14 (fleet, libvirt): vd-libvirt-hook, libvirt's qemu hook, starts the server of each vd
# disk of a domain before QEMU starts. It runs here the way libvirt runs it (argv DOMAIN
# OPERATION SUB_OPERATION EXTRA, the domain XML on stdin: the repository's example
# userspace-tools/vd-ivshmem/libvirt-domain.example.xml, its socket directory moved under /tmp),
# with a stand-in for systemctl (the test VM has no systemd) that does what the unit does: runs
# vd-ivshmem@.service's ExecStart with the instance's env file and returns once the socket
# listens (Type=notify). Then a stock QEMU's ivshmem-doorbell device connects to the socket the
# XML names and does verified I/O (vd-itest qtest-guest). Also: a missing env file fails the hook
# with a message that names the file (libvirt then does not start the domain); other operations
# and a domain without vd disks start nothing.
. ./lib.sh
. ./guest-lib.sh
load vd_evtchn
W=/tmp/hook; rm -rf $W; mkdir -p $W/conf $W/run
export VD_IVSHMEM_RUN_DIR=$W/run VD_IVSHMEM_CONF_DIR=$W/conf VD_SYSTEMCTL=$W/systemctl
sed "s|/run/vd-ivshmem/|$W/run/|g" /vd/examples/libvirt-domain.example.xml > $W/domain.xml
grep -q "<server path='$W/run/desk1-disk.sock'/>" $W/domain.xml || fail "the example has no vd disk desk1-disk"
cat > $W/systemctl <<EOF
#!/bin/sh
# Stand-in for "systemctl start vd-ivshmem@NAME.service" (vd-ivshmem@.service's ExecStart).
echo "\$*" >> $W/systemctl.log
[ "\$1" = start ] || exit 1
n=\${2#vd-ivshmem@}; n=\${n%.service}
[ -f $W/conf/\$n.env ] || exit 1
. $W/conf/\$n.env
SOCKET=\${SOCKET:-$W/run/\$n.sock}
vd-ivshmem-server --socket "\$SOCKET" --image "\$IMAGE" --json > $W/\$n.out 2> $W/\$n.err &
echo \$! > $W/\$n.pid
i=0; until [ -S "\$SOCKET" ]; do i=\$((i + 1)); [ \$i -le 200 ] || exit 1; sleep 0.1; done
EOF
chmod +x $W/systemctl
hook() { vd-libvirt-hook "$@" < $W/domain.xml > $W/hook.out 2>&1; }
calls() { cat $W/systemctl.log 2>/dev/null | wc -l; }

hook desk1 prepare begin -; rc=$?; cat $W/hook.out
check "no env file: the hook fails (exit $rc)" test $rc = 1
check "  and names the file to create" grep -q "$W/conf/desk1-disk.env is missing" $W/hook.out
check "  and starts nothing" test "$(calls)" = 0

rm -f /tmp/hook.img; truncate -s 64M /tmp/hook.img
echo "IMAGE=/tmp/hook.img" > $W/conf/desk1-disk.env
for op in "start begin" "started begin" "stopped end" "release end"; do
    hook desk1 $op -; rc=$?
    check "operation '$op' does nothing (exit $rc, no systemctl call)" sh -c "[ $rc = 0 ] && [ $(calls) = 0 ]"
done
hook desk1 prepare begin -; rc=$?; cat $W/hook.out
check "prepare begin: the hook starts the vd disk's server (exit $rc)" test $rc = 0
check "  with systemctl start vd-ivshmem@desk1-disk.service, once" \
    sh -c "[ \"\$(cat $W/systemctl.log)\" = 'start vd-ivshmem@desk1-disk.service' ]"
check "  and the socket the XML names listens" test -S $W/run/desk1-disk.sock
srv=$(cat $W/desk1-disk.pid); _GL_PIDS="$_GL_PIDS $srv"

vd-itest qtest-guest --socket $W/run/desk1-disk.sock --qemu "$(command -v qemu-system-x86_64)" \
    --disk-bytes $((64 << 20)) --requests 64 --seed 24 > $W/qtest.out 2>&1; rc=$?
tail -3 $W/qtest.out
check "a stock QEMU's ivshmem-doorbell on that socket does verified I/O (exit $rc)" test $rc = 0

sed '/<shmem name=/,/<\/shmem>/d' $W/domain.xml > $W/plain.xml
vd-libvirt-hook desk2 prepare begin - < $W/plain.xml > $W/hook.out 2>&1; rc=$?
check "a domain without vd disks: prepare starts nothing (exit $rc)" sh -c "[ $rc = 0 ] && [ $(calls) = 1 ]"
echo '<domain><devices>' | vd-libvirt-hook desk3 prepare begin - > $W/hook.out 2>&1; rc=$?
cat $W/hook.out
check "unreadable domain XML fails the hook with a reason (exit $rc)" \
    sh -c "[ $rc = 1 ] && grep -q 'does not parse' $W/hook.out"

kill -TERM $srv; wait_for "the server exits on SIGTERM" 10 sh -c "! kill -0 $srv 2>/dev/null"
wait_for "no channel left after QEMU and the server" 20 no_guest_channel
rmmod vd_evtchn; rc=$?
check "vd_evtchn unloads (rmmod exit $rc)" test $rc = 0
rm -f /tmp/hook.img

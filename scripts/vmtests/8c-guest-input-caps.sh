# vd-timeout: 300
# The guest's vd input device has the capabilities of the host devices routed when its QEMU
# connected (issue 13): `vd-itest input-devices` makes a routed uinput keyboard+mouse (keys 1-88,
# two buttons, REL X/Y/wheel) and tablet (BTN_TOUCH, ABS X/Y 0..32767) and prints their union;
# vd-ivshmem-server --input writes it into the capabilities block of the guest's shared memory;
# in the guest, vd_front registers "vd-input" with it and `vd-itest input-caps` prints what the
# guest's input core holds (event types, every key, axes, absolute ranges). The lines must be
# equal. Then a guest whose QEMU connected with nothing routed gets the default set (keys
# 1-248 and the mouse buttons, as before).
. ./lib.sh
. ./guest-lib.sh
load vd_input_irq
vd-itest input-devices --prefix "vd-caps $$" > /tmp/caps-host.out 2>&1 &
hpid=$!; _GL_PIDS="$_GL_PIDS $hpid"
wait_line /tmp/caps-host.out '^CAPS '
want=$(grep '^CAPS ' /tmp/caps-host.out)
echo "host union: $want"
start_input_server caps 48
start_guest caps input-caps $(vd_disk_args caps)
wait_guest caps; rc=$?
server_log caps
check "the guest printed its vd-input device's capabilities ($GUEST_RESULT)" test $rc = 0
check "the server wrote the routed devices' capabilities" grep -q '"capabilities":"from vd-caps' /tmp/vd-caps.server.out
got=$(echo "$GUEST_RESULT" | sed -n 's/^VDGUEST PASS input-caps: //p')
check "the guest's vd-input has exactly the routed devices' capabilities: $got" test "$got" = "$want"
stop_server caps
kill $hpid; wait $hpid 2>/dev/null
# Nothing routed: the default set.
start_input_server capsd 49
start_guest capsd input-caps $(vd_disk_args capsd)
wait_guest capsd; rc=$?
server_log capsd
check "nothing routed: the server says so" grep -q '"capabilities":"none routed' /tmp/vd-capsd.server.out
got=$(echo "$GUEST_RESULT" | sed -n 's/^VDGUEST PASS input-caps: //p')
def="CAPS ev=1f key=0,0,0,0,0,0,400,1f0000,1ffffffffffffff,ffffffffffffffff,ffffffffffffffff,fffffffffffffffe rel=143 abs=3 msc=10 absinfo=0:0:32767:0:0,1:0:32767:0:0"
check "nothing routed: the default set (keys 1-248, 5 buttons, BTN_TOUCH, REL X/Y/wheels, ABS X/Y 0..32767, MSC_SCAN): $got" test "$got" = "$def"
stop_server capsd
wait_for "vd_input_irq has no reference left" 20 sh -c '[ "$(cat /sys/module/vd_input_irq/refcnt)" = 0 ]'
rmmod vd_input_irq; rc=$?
check "vd_input_irq unloads (rmmod exit $rc)" test $rc = 0

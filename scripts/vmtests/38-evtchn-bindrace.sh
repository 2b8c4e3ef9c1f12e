# vd_evtchn: threads dup2 pipes, a socket, a file and an eventfd over the kick fd number while
# other threads VDE_IOC_BIND it: the kick fd is looked up once, a pipe's poll (two wait queues)
# is refused, and the kernel log stays clean (lockdep/KASAN/list debugging on the debug kernel).
# VDI_IOC_BIND_KICK (vd_input_irq) attaches through the same KickWaiter::attach.
. ./lib.sh
load vd_evtchn
mark="vdtest: 38-evtchn-bindrace start $$"
echo "$mark" > /dev/kmsg || fail "mark the kernel log"
check "kernel log marked" sh -c "dmesg | grep -q '$mark'"
vd-itest evtchn-case bind-race || fail "bind-race"
check "no oops, BUG, WARNING, list corruption or KASAN report during the race" \
    sh -c "! { dmesg | sed -n '/$mark/,\$p' | grep -E 'BUG|WARNING|Oops|list_(add|del) corruption|KASAN|general protection'; }"
unload vd_evtchn
check "vd_evtchn unloaded after the race" sh -c '! grep -q "^vd_evtchn " /proc/modules'

# vd_input_irq: a VMM registers a vCPU thread and closes the device while the thread lives on:
# rmmod is refused at once (EWOULDBLOCK, the module is in use by the thread's hook), never
# hangs; once the thread exited, rmmod (retried with a bound) succeeds and no hook is left.
. ./lib.sh
load vd_input_irq
vd-itest input-unload || fail "vd-itest input-unload"
check "vd_input_irq unloaded" sh -c '! grep -q "^vd_input_irq " /proc/modules'
load vd_input_irq
check "and loads again" is_loaded vd_input_irq

# vd_input_irq delivery that follows the vCPU: a child process registered as the VM's vCPU
# thread; events arrive at once while it runs; SIGSTOP it, a 10,000-event burst (keys and REL
# motion) waits in the queue, SIGCONT flushes it in order with exact REL sums; SET_RUNNING 0/1;
# the vCPU dying with events queued.
. ./lib.sh
load vd_input_irq
vd-itest input-sched || fail "vd-itest input-sched"

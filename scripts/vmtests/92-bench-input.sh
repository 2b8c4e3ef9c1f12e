# make bench: vd_input_irq delivery latency (VM running) vs. a userspace forwarder (evdev read +
# eventfd write), and the flush time of the 10,000-event burst; one boot.
. ./lib.sh
load vd_input_irq
vd-itest input-bench --rounds ${VD_BENCH_ROUNDS:-1000} || fail "vd-itest input-bench"
# The cost of following threads (preempt notifiers) for every context switch of the host.
vd-itest input-switch-cost --samples ${VD_BENCH_SWITCH_SAMPLES:-15} || fail "vd-itest input-switch-cost"

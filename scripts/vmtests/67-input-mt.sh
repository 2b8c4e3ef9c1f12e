# vd_input_irq: a two-finger multitouch uinput device (type B slots) moves both fingers while
# the vCPU stand-in is stopped; the queue coalesces the burst, and after SIGCONT every
# position in the ring sits in the slot of the finger that made it.
. ./lib.sh
load vd_input_irq
vd-itest input-mt || fail "vd-itest input-mt"

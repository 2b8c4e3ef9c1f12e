# vd_input_irq basics: a uinput keyboard+mouse as the hardware, a VM sink (no vCPU registered:
# delivery at once), routes by name/phys/capability with and without grab, frames in order with
# SYN framing, statistics, call eventfd rebinding, focus moving between VMs.
. ./lib.sh
load vd_input_irq
vd-itest input-hw || fail "the uinput test hardware does not work (vd-itest input-hw)"
vd-itest input-basic || fail "vd-itest input-basic"

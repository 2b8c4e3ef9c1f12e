# vd_input_irq: routed uinput devices unplugged (with a key held and a frame open, under load,
# and 20 quick plug/unplug cycles); the module and the VM sink keep working with new devices.
. ./lib.sh
load vd_input_irq
vd-itest input-unplug || fail "vd-itest input-unplug"
check "the module still lists devices" vdctl input list

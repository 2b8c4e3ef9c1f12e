# vd_input_irq: two VMs, the focus switched every 250 us while frames stream in: each VM sees only
# whole frames, in order, and every frame (every key event) reaches exactly one of them.
. ./lib.sh
load vd_input_irq
vd-itest input-focus --frames ${VD_INPUT_FOCUS_FRAMES:-8000} || fail "vd-itest input-focus"

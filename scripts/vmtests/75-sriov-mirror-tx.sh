# A passed-through VF's real traffic, counted from its igb PF's mirror statistics: the VF is
# leased to vfio-pci (the holder pushes no counts, like a stock VMM) and driven from userspace
# through VFIO as a guest's igbvf would (`vd-itest vfio-tx`: the mailbox reset handshake with the
# PF's igb, a transmit ring DMA-mapped through the emulated IOMMU). While frames go out the
# module counts them (source pf-mirror), the holder's window rate is over the threshold and it
# is no candidate; once they stop it becomes one again.
. ./lib.sh
. ./sriov-lib.sh
check "the VM has an IOMMU" has_iommu
sriov_init 0
pfnd=$(ls /sys/bus/pci/devices/$PF/net | head -1)
ip link set "$pfnd" up || fail "PF $pfnd up"
sriov_init 3
# Enabling VFs restarts igb (link down and up again); its transmitter needs the link up.
wait_for "PF $pfnd has carrier" 20 carrier_is $pfnd 1
VF2=$(echo $VFS | cut -d' ' -f2)
vdctl sriov policy --threshold 20000 --hysteresis 10000 --window-ms 1000 --min-hold-ms 500 \
    --sample-ms 100 > /dev/null || fail "policy"
hold $VF2 85
check "leased: $VF2 on vfio-pci" test "$(vf_field $VF2 driver)" = vfio-pci
check "counted from the PF's mirror, nothing pushed" wait_vf $VF2 source pf-mirror
check "from a baseline of 0" test "$(vf_field $VF2 tx_bytes)" = 0
: > /tmp/tx.out
vd-itest vfio-tx --vf $VF2 --ms 4000 --bytes-per-s 200000 > /tmp/tx.out 2>&1 &
txp=$!
tx_above() { [ "$(vf_field $VF2 tx_bytes)" -gt "$1" ]; }
poll 10 tx_above 100000 || { cat /tmp/tx.out; fail "frames sent through VFIO are not counted"; }
echo "ok: frames sent through VFIO are counted: tx_bytes over 100000"
echo "tx_bytes $(vf_field $VF2 tx_bytes)"
busy() { r=$(vf_field $VF2 rate_bps); [ "$r" != null ] && [ "$r" -gt 30000 ]; }
check "the holder's window rate is over the threshold" poll 10 busy
echo "rate $(vf_field $VF2 rate_bps) B/s"
check "and it is no candidate while they flow" test "$(vf_field $VF2 idle)" = false
# (It may have been one before the frames began: the lease was idle until then.)
cands() { grep -c "EVENT candidate $VF2 vm 85" /tmp/hold.out; }
n0=$(cands)
wait $txp; rc=$?; cat /tmp/tx.out
check "vd-itest vfio-tx exited 0" test $rc = 0
sent=$(sed -n 's/^VFIO-TX frames [0-9]* bytes \([0-9]*\) .*/\1/p' /tmp/tx.out)
# QEMU's igb counts each frame with its 4 bytes of FCS.
check "tx_bytes ($(vf_field $VF2 tx_bytes)) counts the $sent bytes sent" tx_above $((sent - 1))
more_cands() { [ "$(cands)" -gt "$n0" ]; }
check "a candidate (event) once the frames stopped" poll 15 more_cands
check "idle" test "$(vf_field $VF2 idle)" = true
kill $pid; wait $pid 2>/dev/null
check "released: $VF2 back on igbvf" wait_vf $VF2 driver igbvf
vdctl sriov policy --threshold 65536 --hysteresis 16384 --window-ms 5000 --min-hold-ms 5000 \
    --sample-ms 250 > /dev/null || fail "policy reset"

# A passed-through VF whose holder pushes no counts (a stock VMM) is counted from its igb PF's
# mirror of the VF's statistics: frames sent on the VF's netdev before the lease show in the
# raw register (proof the PF's BAR is read), the lease starts from a baseline of 0, its window
# rate is 0 (nothing drives a VF on vfio-pci without a guest driver: QEMU's igb counts received
# frames only into an enabled receive ring), so the holder becomes a candidate and the policy
# swap hands the VF to a waiting VM; a pushed count takes precedence.
. ./lib.sh
. ./sriov-lib.sh
# VFs get their link from the PF: bring the PF up first, then create the VFs.
sriov_init 0
pfnd=$(ls /sys/bus/pci/devices/$PF/net | head -1)
ip link set "$pfnd" up || fail "PF $pfnd up"
wait_for "PF $pfnd has carrier" 20 carrier_is $pfnd 1
sriov_init 3
nd=$(vf_field $VF netdev)
ip link set "$nd" up || fail "VF $nd up"
wait_for "$nd has carrier" 20 carrier_is $nd 1
check "$VF on igbvf counts from its netdev" test "$(vf_field $VF source)" = netdev
vd-itest sriov-mirror --vf $VF --ifname $nd || fail "sriov-mirror"
check "$VF back on igbvf, counted from its netdev again" wait_vf $VF source netdev

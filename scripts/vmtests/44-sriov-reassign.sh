# Reassignment driven by real traffic: frames sent on a VF netdev keep its holder busy; when
# they stop the holder becomes a candidate and the swap hands the VF to the waiting VM.
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
tx0=$(cat /sys/class/net/$nd/statistics/tx_bytes)
vd-itest sriov-reassign --vf $VF --ifname $nd || fail "sriov-reassign"
tx1=$(cat /sys/class/net/$nd/statistics/tx_bytes)
check "the frames really left through $nd (tx_bytes $tx0 -> $tx1)" test $((tx1 - tx0)) -gt 400000

# Reassignment driven by real traffic: frames sent on a VF netdev keep its holder busy; when
# they stop the holder becomes a candidate and the swap hands the VF to the waiting VM.
. ./lib.sh
. ./sriov-lib.sh
# VFs get their link from the PF: bring the PF up first, then create the VFs.
sriov_init 0
pfnd=$(ls /sys/bus/pci/devices/$PF/net | head -1)
ip link set "$pfnd" up || fail "PF $pfnd up"
n=0; while [ "$(cat /sys/class/net/$pfnd/carrier 2>/dev/null)" != 1 ]; do n=$((n+1)); [ $n -lt 200 ] || fail "no carrier on PF $pfnd"; sleep 0.1; done
echo "ok: PF $pfnd has carrier"
sriov_init 3
nd=$(vf_field $VF netdev)
ip link set "$nd" up || fail "VF $nd up"
n=0; while [ "$(cat /sys/class/net/$nd/carrier 2>/dev/null)" != 1 ]; do n=$((n+1)); [ $n -lt 200 ] || fail "no carrier on $nd"; sleep 0.1; done
echo "ok: $nd has carrier"
tx0=$(cat /sys/class/net/$nd/statistics/tx_bytes)
vd-itest sriov-reassign --vf $VF --ifname $nd || fail "sriov-reassign"
tx1=$(cat /sys/class/net/$nd/statistics/tx_bytes)
check "the frames really left through $nd (tx_bytes $tx0 -> $tx1)" test $((tx1 - tx0)) -gt 400000

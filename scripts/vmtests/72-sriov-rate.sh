# Per-VF transmit rate limits through the PF driver (igb: ndo_set_vf_rate, max rate only, the PF
# link must be up): set and read back through the module, kept while the VF is leased, refused
# values, vdctl sriov rate.
. ./lib.sh
. ./sriov-lib.sh
pf_carrier() { poll 20 carrier_is $pfnd $1; } # pf_carrier 1|0: PF carrier up (1) or down (0)
sriov_init 0
pfnd=$(ls /sys/bus/pci/devices/$PF/net | head -1)
ip link set "$pfnd" up || fail "PF $pfnd up"
sriov_init 3
# Enabling VFs restarts igb (link down and up again); its rate limits need the link up.
check "PF $pfnd has carrier" pf_carrier 1
vd-itest sriov-rate --vf $VF || fail "sriov-rate"
VF2=$(echo $VFS | cut -d' ' -f2)
idx=$(vf_field $VF2 vf_index)
vdctl sriov rate $VF2 300 || fail "vdctl sriov rate $VF2 300"
vdctl --json sriov rate $VF2 > /tmp/r.json; cat /tmp/r.json
check "vdctl reads back max_tx_rate 300 Mbit/s for $VF2" grep -q '"max_tx_mbps":300' /tmp/r.json
ip link show "$pfnd"
if ip link show "$pfnd" | grep -q "vf $idx "; then
    check "ip link shows max_tx_rate 300 for vf $idx" sh -c "ip link show $pfnd | grep 'vf $idx ' | grep -q 'max_tx_rate 300'"
else
    echo "(busybox ip prints no VF lines: read back through VDS_IOC_RATE_GET only)"
fi
vdctl sriov rate $VF2 100000 > /tmp/r.err 2>&1
check "vdctl: a rate over the link speed is an error" test $? != 0
cat /tmp/r.err
check "vdctl: the error says why" grep -q "link speed" /tmp/r.err
ip link set "$pfnd" down
pf_carrier 0
vdctl sriov rate $VF2 10 > /tmp/r.err 2>&1
check "PF link down: igb refuses a new rate" test $? != 0
cat /tmp/r.err
ip link set "$pfnd" up
check "PF $pfnd has carrier again" pf_carrier 1
vdctl sriov rate $VF2 0 > /dev/null || fail "vdctl sriov rate $VF2 0"
check "rate 0 lifts the limit" test "$(vdctl --json sriov rate $VF2)" = '{"vf":"'$VF2'","max_tx_mbps":0,"min_tx_mbps":0}'

# SR-IOV inventory and leases on the igb PF: VFs created through sriov_numvfs, listed with
# driver/netdev/MAC, a lease moves a VF to vfio-pci and back, permissions, events.
. ./lib.sh
. ./sriov-lib.sh
sriov_init 0
vdctl sriov list
vdctl sriov list --json > /tmp/l.json
check "the igb PF is listed with TotalVFs 7" grep -q '"total_vfs": 7' /tmp/l.json
check "no VFs yet" test "$(grep -c '"vf":' /tmp/l.json)" = 0
vdctl sriov numvfs 3 || fail "vdctl sriov numvfs 3"
sriov_init 3
vdctl sriov list
vdctl sriov list --json > /tmp/l.json
check "3 VFs listed" test "$(grep -c '"vf":' /tmp/l.json)" = 3
check "3 VFs on igbvf" test "$(grep -c '"driver": "igbvf"' /tmp/l.json)" = 3
check "VF indices 0..2" test "$(grep '"vf_index"' /tmp/l.json | tr -dc '0-9\n' | sort | tr '\n' ' ')" = "0 1 2 "
nd=$(vf_field $VF netdev)
check "VF $VF has netdev '$nd' as in sysfs" test -n "$nd" -a -d /sys/bus/pci/devices/$VF/net/$nd
mac=$(vf_field $VF mac)
check "MAC $mac matches the netdev's" test "$mac" = "$(cat /sys/class/net/$nd/address)"
check "vdctl agrees with sysfs on the VF count" test "$(cat /sys/bus/pci/devices/$PF/sriov_numvfs)" = 3
vdctl sriov numvfs 2 > /dev/null 2>&1
check "changing a nonzero VF count directly is refused (kernel rule)" test $? != 0
vd-itest sriov-basic --vf $VF || fail "sriov-basic"
vd-itest sriov-unpriv --vf $VF || fail "sriov-unpriv"
check "after all that $VF is on igbvf again" test "$(vf_field $VF driver)" = igbvf
check "and has a netdev again" test -n "$(vf_field $VF netdev)"
# The usage sampler runs only while a VF is leased (debugfs vd_sriov/sampler).
check "debugfs shows the sampler" test -r $SAMPLER
check "nothing leased: the sampler is not going" wait_sampler sampling 0
hold $VF 90
t0=$(sampler ticks)
check "a lease starts the sampler" wait_sampler sampling 1
check "which samples (passes: $t0 before)" wait_ticks_above $t0
kill $pid; wait $pid 2>/dev/null
check "the lease ended: the sampler stops" wait_sampler sampling 0
check "and $VF is back on igbvf" wait_vf $VF driver igbvf
t1=$(sampler ticks)
# A negative check needs a span of time: 4 default sampling periods (250 ms) without a pass.
sleep 1
check "and runs no pass while nothing is leased ($t1, then $(sampler ticks))" test "$(sampler ticks)" = "$t1"

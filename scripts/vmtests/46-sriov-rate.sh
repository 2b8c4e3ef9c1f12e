# Per-VF transmit rate limits through the PF driver (igb: ndo_set_vf_rate, max rate only, the PF
# link must be up): set and read back through the module, kept while the VF is leased, refused
# values, vdctl sriov rate.
. ./lib.sh
# --- SR-IOV helpers (same in every 4x-sriov script) ---
sriov_init() { # sriov_init N: module loaded, vfio-pci allowed without IOMMU, exactly N VFs
    load vd_sriov_mgr
    # The test VM has no IOMMU: vfio-pci takes devices only in no-IOMMU mode (taints the kernel).
    echo 1 > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode || fail "vfio no-IOMMU mode"
    PF=$(vdctl sriov list --json | grep -m1 '"pf":' | sed 's/.*"pf": "\([^"]*\)".*/\1/')
    [ -n "$PF" ] || fail "no SR-IOV PF listed"
    cur=$(cat /sys/bus/pci/devices/$PF/sriov_numvfs)
    if [ "$cur" != "$1" ]; then
        [ "$cur" = 0 ] || vdctl sriov numvfs 0 > /dev/null || fail "numvfs 0"
        [ "$1" = 0 ] || vdctl sriov numvfs "$1" > /dev/null || fail "numvfs $1"
    fi
    VFS=$(vdctl sriov list --json | grep '"vf":' | sed 's/.*"vf": "\([^"]*\)".*/\1/')
    VF=$(echo $VFS | cut -d' ' -f1)
}
vf_field() { # vf_field VF KEY: the value of KEY in VF's row of `vdctl sriov list --json`
    vdctl sriov list --json | awk -v vf="\"$1\"" -v k="\"$2\":" '$1 == "\"vf\":" && $2 ~ vf {f=1} f && $1 == k {v=$2; sub(/,$/, "", v); gsub(/"/, "", v); print v; exit}'
}
wait_vf() { # wait_vf VF KEY VALUE [tenths of a second]
    n=0
    while [ "$(vf_field $1 $2)" != "$3" ]; do
        n=$((n + 1)); [ $n -le ${4:-100} ] || return 1; sleep 0.1
    done
}
# ---
pf_carrier() { # pf_carrier 1|0: wait for the PF's carrier to be up (1) or down (0)
    n=0; while [ "$(cat /sys/class/net/$pfnd/carrier 2>/dev/null)" != $1 ]; do n=$((n+1)); [ $n -lt 200 ] || return 1; sleep 0.1; done
}
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

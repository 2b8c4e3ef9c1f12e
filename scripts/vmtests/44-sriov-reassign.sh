# Reassignment driven by real traffic: frames sent on a VF netdev keep its holder busy; when
# they stop the holder becomes a candidate and the swap hands the VF to the waiting VM.
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

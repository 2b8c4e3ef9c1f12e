# Hot-unplug of the slot (PF and its VFs) while a VF is leased: the lease is revoked, nothing is
# left behind, no kernel BUG (the assigned mark is dropped before the PF driver stops); rescan
# brings the PF back. Runs last: after a re-enumeration QEMU's igb VFs get no link carrier.
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
sriov_init 3
VF3=$(echo $VFS | cut -d' ' -f3)
# Hot-unplug of the whole slot (PF and VFs) with a VF leased: VFs are stopped first, the lease is
# revoked, the PF driver may then disable SR-IOV, and nothing is left behind. Rescan brings the PF back.
vd-itest sriov-hold --vf $VF3 --vm 92 > /tmp/hold.out 2>&1 &
pid=$!
n=0; while ! grep -q LEASED /tmp/hold.out; do n=$((n+1)); [ $n -lt 100 ] || fail "holder never leased"; sleep 0.1; done
port=$(basename $(dirname $(readlink -f /sys/bus/pci/devices/$PF)))
echo 1 > /sys/bus/pci/devices/$port/remove || fail "remove root port $port"
n=0; while ! grep -q "EVENT revoked $VF3 vm 92" /tmp/hold.out; do n=$((n+1)); [ $n -lt 50 ] || break; sleep 0.1; done
cat /tmp/hold.out
check "hot-unplug: the holder got a revoked event" grep -q "EVENT revoked $VF3 vm 92" /tmp/hold.out
check "hot-unplug: no VFs listed" test "$(vdctl sriov list --json | grep -c '"vf":')" = 0
check "hot-unplug: no PF listed" test "$(vdctl sriov list --json | grep -c '"total_vfs"')" = 0
kill $pid; wait $pid 2>/dev/null
echo 1 > /sys/bus/pci/rescan
n=0; while [ "$(vdctl sriov list --json | grep -c '"total_vfs"')" = 0 ]; do n=$((n+1)); [ $n -lt 100 ] || fail "PF not back after rescan"; sleep 0.1; done
echo "ok: rescan: the PF is back"
sriov_init 3
check "3 VFs again" test "$(vdctl sriov list --json | grep -c '"vf":')" = 3

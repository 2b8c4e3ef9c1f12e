# make bench: time from the decision to the VF usable by its new holder. vd_sriov_mgr moves the VF
# from the kernel (lease: igbvf -> vfio-pci; release: back to igbvf, until the RETURNED event);
# beside it the same moves by a shell script writing driver_override, unbind and drivers_probe.
# Interleaved round trips in one boot, medians and ratios (vd-itest sriov-bench).
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
sriov_init 1
cat > /tmp/move-vf.sh <<'SH'
# move-vf.sh VF DRIVER: an admin's script moving VF to DRIVER ("" = back to normal matching).
d=/sys/bus/pci/devices/$1
echo "$2" > $d/driver_override || exit 1
if [ -e $d/driver ]; then echo $1 > $d/driver/unbind || exit 1; fi
echo $1 > /sys/bus/pci/drivers_probe || exit 1
SH
vd-itest sriov-bench --vf $VF --repeats ${VD_BENCH_REPEATS:-15} --script /tmp/move-vf.sh || fail "vd-itest sriov-bench"

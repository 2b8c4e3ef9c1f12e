# SR-IOV helpers for the vd_sriov_mgr VM tests and benchmark (sourced after lib.sh).
has_iommu() { [ -n "$(ls /sys/class/iommu 2>/dev/null)" ]; }
sriov_init() { # sriov_init N: module loaded, vfio-pci allowed without IOMMU, exactly N VFs
    load vd_sriov_mgr
    # Without an IOMMU (the first test boot) vfio-pci takes devices only in no-IOMMU mode (taints
    # the kernel); the reconfig boot has an emulated Intel IOMMU and uses its groups.
    if ! has_iommu; then
        echo 1 > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode || fail "vfio no-IOMMU mode"
    fi
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
vf_is() { [ "$(vf_field $1 $2)" = "$3" ]; } # vf_is VF KEY VALUE
wait_vf() { poll 10 vf_is "$@"; } # wait_vf VF KEY VALUE: status 1 if not so within 10 s
carrier_is() { [ "$(cat /sys/class/net/$1/carrier 2>/dev/null)" = "$2" ]; } # carrier_is NETDEV 0|1
hold() { # hold VF VM: a lease holder in the background ($pid), its output in /tmp/hold.out
    # Emptied first: the background shell may open (truncate) the file after the wait below has
    # already read the previous holder's LEASED line.
    : > /tmp/hold.out
    vd-itest sriov-hold --vf $1 --vm $2 > /tmp/hold.out 2>&1 &
    pid=$!
    wait_line /tmp/hold.out LEASED 10
}
wait_revoked() { # wait_revoked VF VM: the holder reported the revocation of its lease
    poll 10 has_line /tmp/hold.out "EVENT revoked $1 vm $2"
}
SAMPLER=/sys/kernel/debug/vd_sriov/sampler
sampler() { awk -v k="$1" '$1 == k {print $2}' $SAMPLER; } # sampler sampling|ticks
sampler_is() { [ "$(sampler $1)" = "$2" ]; }
wait_sampler() { poll 10 sampler_is "$@"; } # wait_sampler KEY VALUE: status 1 if not within 10 s
ticks_above() { [ "$(sampler ticks)" -gt "$1" ]; }
wait_ticks_above() { poll 10 ticks_above "$1"; } # the sampler ran a pass after the count was N
# A test that fails leaves no holder behind to keep its lease into the next test.
trap '[ -z "${pid:-}" ] || kill $pid 2>/dev/null' EXIT

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
wait_vf() { # wait_vf VF KEY VALUE [tenths of a second]
    n=0
    while [ "$(vf_field $1 $2)" != "$3" ]; do
        n=$((n + 1)); [ $n -le ${4:-100} ] || return 1; sleep 0.1
    done
}
hold() { # hold VF VM: a lease holder in the background ($pid), its output in /tmp/hold.out
    # Emptied first: the background shell may open (truncate) the file after the wait below has
    # already read the previous holder's LEASED line.
    : > /tmp/hold.out
    vd-itest sriov-hold --vf $1 --vm $2 > /tmp/hold.out 2>&1 &
    pid=$!
    n=0; while ! grep -q LEASED /tmp/hold.out; do n=$((n+1)); [ $n -lt 100 ] || fail "holder never leased: $(cat /tmp/hold.out)"; sleep 0.1; done
}
wait_revoked() { # wait_revoked VF VM: the holder reported the revocation of its lease
    n=0; while ! grep -q "EVENT revoked $1 vm $2" /tmp/hold.out; do n=$((n+1)); [ $n -lt 100 ] || break; sleep 0.1; done
    grep -q "EVENT revoked $1 vm $2" /tmp/hold.out
}
SAMPLER=/sys/kernel/debug/vd_sriov/sampler
sampler() { awk -v k="$1" '$1 == k {print $2}' $SAMPLER; } # sampler sampling|ticks
wait_sampler() { # wait_sampler KEY VALUE [tenths of a second]
    n=0
    while [ "$(sampler $1)" != "$2" ]; do
        n=$((n + 1)); [ $n -le ${3:-100} ] || return 1; sleep 0.1
    done
}
wait_ticks_above() { # wait_ticks_above N: the sampler ran a pass after the count was N
    n=0
    while [ "$(sampler ticks)" -le "$1" ]; do
        n=$((n + 1)); [ $n -le 100 ] || return 1; sleep 0.1
    done
}
# A test that fails leaves no holder behind to keep its lease into the next test.
trap '[ -z "${pid:-}" ] || kill $pid 2>/dev/null' EXIT

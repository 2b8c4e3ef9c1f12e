# make bench: time from the decision to the VF usable by its new holder. vd_sriov_mgr moves the VF
# from the kernel (lease: igbvf -> vfio-pci; release: back to igbvf, until the RETURNED event);
# beside it the same moves by a shell script writing driver_override, unbind and drivers_probe.
# Interleaved round trips in one boot, medians and ratios (vd-itest sriov-bench).
. ./lib.sh
. ./sriov-lib.sh
sriov_init 1
cat > /tmp/move-vf.sh <<'SH'
# move-vf.sh VF DRIVER: an admin's script moving VF to DRIVER ("" = back to normal matching).
d=/sys/bus/pci/devices/$1
echo "$2" > $d/driver_override || exit 1
if [ -e $d/driver ]; then echo $1 > $d/driver/unbind || exit 1; fi
echo $1 > /sys/bus/pci/drivers_probe || exit 1
SH
vd-itest sriov-bench --vf $VF --repeats ${VD_BENCH_REPEATS:-15} --script /tmp/move-vf.sh || fail "vd-itest sriov-bench"

# vd_evtchn: channels in shmem files (VDE_IOC_CREATE_SHM) driven through the file as a stock QEMU
# guest would (ivshmem), data-area block requests on a tmpfs image, EFAULT on the answer, a
# hostile truncation of the file, and orphans (VDE_IOC_ORPHAN): they outlive their domain, pin
# the module, and go with their kick eventfd (the module unloads afterwards).
. ./lib.sh
load vd_evtchn
vd-itest evtchn-shm --file /tmp/vd-shm.img || fail "evtchn-shm"
vd-itest evtchn-shm-efault || fail "evtchn-shm-efault"
vd-itest evtchn-shm-truncate --file /tmp/vd-trunc.img || fail "evtchn-shm-truncate"
vd-itest evtchn-orphan-race --rounds 30 || fail "evtchn-orphan-race"
vd-itest evtchn-orphan --file /tmp/vd-orphan.img || fail "evtchn-orphan"
check "vd_evtchn unloaded once the orphan was gone" sh -c '! grep -q "^vd_evtchn " /proc/modules'
load vd_evtchn
check "and loads again" is_loaded vd_evtchn
rm -f /tmp/vd-shm.img /tmp/vd-trunc.img /tmp/vd-orphan.img

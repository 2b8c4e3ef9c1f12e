# vd-timeout: 420
# The comparison path and the guest's tools: QEMU's virtio-blk-pci on an image in the test VM's
# tmpfs; in the guest, fio random writes with crc32c verification (Debian's fio and its
# libraries from the guests' tools disk), then mkfs.ext4 + mount + write + sync + read back.
. ./lib.sh
. ./guest-lib.sh
img=/tmp/virtio.img
rm -f $img; truncate -s 64M $img
disk="-drive file=$img,if=none,id=d0,format=raw -device virtio-blk-pci,drive=d0"
run_guest virtio-fio virtio-verify $disk || fail "virtio-verify: $GUEST_RESULT"
echo "virtio-verify: ${GUEST_SECS}s"
GUEST_APPEND="vd.disk=virtio" run_guest virtio-mkfs mkfs $disk || fail "mkfs on virtio-blk: $GUEST_RESULT"
echo "mkfs on virtio-blk: ${GUEST_SECS}s"
check "the image holds an ext4 file system written by the guest" sh -c "dd if=$img bs=1 skip=1080 count=2 2>/dev/null | od -An -tx1 | grep -q '53 ef'"
rm -f $img

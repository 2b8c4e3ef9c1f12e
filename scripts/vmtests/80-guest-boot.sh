# A real guest under stock QEMU: the test VM's QEMU (host's QEMU 10 in the initramfs) boots the
# same bzImage with KVM (nested SVM) to its /init, which reports its kernel and hypervisor.
. ./lib.sh
. ./guest-lib.sh
run_guest boot boot || fail "guest boot: $GUEST_RESULT"
echo "guest boot: QEMU start to the guest's verdict in ${GUEST_SECS}s"
check "the guest runs this kernel ($(uname -r))" result_has "kernel $(uname -r),"
check "the guest runs under KVM (not emulated by QEMU)" result_has "Hypervisor detected: KVM"
check "no QEMU left" sh -c "! kill -0 $(guest_pid boot) 2>/dev/null"

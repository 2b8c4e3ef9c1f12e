# make bench: vd_evtchn round trip from a real KVM guest vs. the VMM-exit path vs. eventfd threads,
# and batching throughput; all in this one boot (ratios are what counts under TCG).
. ./lib.sh
load kvm
is_loaded kvm_amd || insmod $M/kvm-amd.ko || fail "insmod kvm-amd"
load vd_evtchn
vd-testvmm bench --rounds ${VD_BENCH_ROUNDS:-2000} || fail "vd-testvmm bench"
vd-itest evtchn-throughput --requests ${VD_BENCH_REQUESTS:-20000} || fail "vd-itest evtchn-throughput"

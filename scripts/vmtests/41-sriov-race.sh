# Many processes race to lease the same VF: exactly one wins each round.
. ./lib.sh
. ./sriov-lib.sh
sriov_init 3
vd-itest sriov-race --vf $VF --procs 8 --rounds 4 || fail "sriov-race"

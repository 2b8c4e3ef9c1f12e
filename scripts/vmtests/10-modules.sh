# Every driver loads, registers its misc device, answers VD_IOC_VERSION through vdctl, and
# unloads cleanly, twice in a row.
. ./lib.sh
for round in 1 2; do
    for m in vd_evtchn:vd_evtchn vd_sriov_mgr:vd_sriov vd_input_irq:vd_input; do
        mod=${m%%:*}; dev=${m##*:}
        load $mod
        check "round $round: $mod: /dev/$dev exists" test -c /dev/$dev
    done
    vdctl status --json > /tmp/status.json || fail "vdctl status exit $?"
    cat /tmp/status.json
    check "all three loaded" test "$(grep -c '"loaded": true' /tmp/status.json)" = 3
    check "all three ABI compatible" test "$(grep -c '"abi_compatible": true' /tmp/status.json)" = 3
    for mod in vd_input_irq vd_sriov_mgr vd_evtchn; do unload $mod; done
    for dev in vd_evtchn vd_sriov vd_input; do check "round $round: /dev/$dev gone" test ! -e /dev/$dev; done
done
vdctl status --json > /tmp/status.json
check "vdctl reports nothing loaded after unload" test "$(grep -c '"loaded": false' /tmp/status.json)" = 3

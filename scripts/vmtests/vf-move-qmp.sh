#!/bin/sh
# The comparison for vdd's VF move (make bench, 99-bench-vf-move): the same move done the way an
# operator would script it without vdd: QMP through socat, the lease and the VF's MAC with one
# vdctl call each, in the order vdd uses:
#   1. the lease (vdctl sriov swap --force: the operator decided, not the module);
#   2. device_del on the old holder's QEMU, until its DEVICE_DELETED event;
#   3. set_link up + announce-self on the old holder's standby NIC;
#   4. the new holder's standby MAC (qom-get) given to the VF (vdctl sriov mac), then device_add
#      vfio-pci,failover_pair_id=NIC on the new holder's QEMU.
# Prints "BEGIN <unix us>", each step's end as "STEP name <unix us>" (ash's EPOCHREALTIME) and
# "DONE <unix us>".
#
# vf-move-qmp.sh VF FROM_VM FROM_QMP TO_VM TO_QMP [NIC [BUS [DEVICE_ID]]]
set -u
[ $# -ge 5 ] || { echo "usage: $0 VF FROM_VM FROM_QMP TO_VM TO_QMP [NIC [BUS [DEVICE_ID]]]" >&2; exit 2; }
VF=$1; FROM=$2; FROMQ=$3; TO=$4; TOQ=$5; NIC=${6:-net0}; BUS=${7:-vdrp0}; DEV=${8:-vdvf0}
now_us() { echo "$EPOCHREALTIME" | tr -d .; }
echo "BEGIN $(now_us)"
T=$(mktemp -d /tmp/vfmove.XXXXXX) || exit 1
trap 'rm -rf $T' EXIT
die() { echo "vf-move-qmp: $*" >&2; exit 1; }
stamp() { echo "STEP $1 $(now_us)"; }
# qmp SOCKET EVENT CMD...: one QMP session: capabilities, then each command (a JSON line); stdin
# stays open until every command is answered (and, if EVENT is not empty, until a line matches
# that extended regexp) or an error arrives, so socat never cuts a reply short and nothing
# waits for a fixed time. The answers and events are left in $T/out. 30 s at most.
qmp() {
    sock=$1; ev=$2; shift 2
    want=$(($# + 1))
    : > $T/out
    {
        echo '{"execute":"qmp_capabilities"}'
        for c; do echo "$c"; done
        n=0
        until answered; do
            n=$((n + 1)); [ $n -le 30000 ] || break
            usleep 1000
        done
    } | socat - "UNIX-CONNECT:$sock" > $T/out || die "socat $sock failed"
    ! grep -q '"error"' $T/out || die "QMP error from $sock: $(grep '"error"' $T/out)"
    answered || die "no answer (or no '$ev') from $sock within 30 s: $(cat $T/out)"
}
answered() { # (qmp's): every command answered and EVENT seen, or an error
    grep -q '"error"' $T/out && return 0
    [ "$(grep -c '"return"' $T/out)" -ge $want ] || return 1
    [ -z "$ev" ] || grep -Eq "$ev" $T/out
}

vdctl sriov swap "$VF" --from "$FROM" --to "$TO" --force > /dev/null || die "lease swap failed"
stamp lease
qmp "$FROMQ" '"event": *"DEVICE_DELETED".*"device": *"'"$DEV"'"' \
    '{"execute":"device_del","arguments":{"id":"'"$DEV"'"}}'
stamp unplug
qmp "$FROMQ" '' \
    '{"execute":"set_link","arguments":{"name":"'"$NIC"'","up":true}}' \
    '{"execute":"announce-self","arguments":{"initial":50,"max":550,"rounds":5,"step":100,"interfaces":["'"$NIC"'"]}}'
stamp standby
qmp "$TOQ" '' \
    '{"execute":"qom-get","arguments":{"path":"/machine/peripheral/'"$NIC"'","property":"mac"}}'
MAC=$(grep -o '"return": *"[0-9a-f:]*"' $T/out | grep -o '[0-9a-f:]\{17\}')
[ -n "$MAC" ] || die "no MAC for $NIC on $TOQ: $(cat $T/out)"
vdctl sriov mac "$VF" "$MAC" > /dev/null || die "setting $VF's MAC to $MAC failed"
stamp mac
qmp "$TOQ" '' \
    '{"execute":"device_add","arguments":{"driver":"vfio-pci","host":"'"$VF"'","id":"'"$DEV"'","bus":"'"$BUS"'","failover_pair_id":"'"$NIC"'"}}'
stamp plug
echo "DONE $(now_us)"

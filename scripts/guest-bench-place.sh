# Sourced by the nested guest's /init (scripts/guest-init.sh, scenario bench-place) after tools():
# the guest side of `make bench`'s 98-bench-guest-place. fio 4k randread QD1 on /dev/vdb0 (vd) in
# vd.place_rounds rounds (default 8) of vd.bench_secs each (default 5), one fio run (loading fio
# costs ~10 s under nested TCG: once), one job per round. The host switches vdd's placement
# between rounds, so no round may start before the host says so: each job's exec_prerun polls
# the disk (4 KiB at 60 MiB, past fio's 48 MiB, read with O_DIRECT so every poll reaches the
# host's image) until it holds "VDGO-NN" (NN = the round, two digits), written there by the host
# once the new mode is in place and checked. On the console, per round:
#   VDBENCH-READY NN   (polling for the go)   VDBENCH-START NN   ...   VDBENCH-END NN
# and at the end, from fio's terse output (as scripts/guest-bench.sh parses it; the requests from
# the KiB read, as a starved round can make fewer than 1 IOPS, which fio rounds to 0):
#   VDBENCH NN ios=<completed requests> iops=<n> p50=<clat us> p99=<clat us>
bench_secs=5; rounds=8
for a in $(cat /proc/cmdline); do
    case "$a" in
        vd.bench_secs=*) bench_secs=${a#vd.bench_secs=} ;;
        vd.place_rounds=*) rounds=${a#vd.place_rounds=} ;;
    esac
done
case "$rounds" in [1-9]|[1-9][0-9]) ;; *) die "vd.place_rounds=$rounds: 1..99" ;; esac
disk=/dev/vdb0; vd_disk
# Lay the file out once (a sequential write over the whole range) so reads hit written blocks.
fio --name=prefill --filename="$disk" --rw=write --bs=1m --direct=1 --ioengine=libaio --size=48m \
    --output-format=terse > /tmp/prefill.out 2>&1 || die "fio prefill on $disk: $(tail -3 /tmp/prefill.out)"
# exec_prerun/postrun run through system(), their output into <job>.prerun.txt: the markers go
# to the console directly. The go poll gives up after 300 s (the host failed or is gone).
printf '#!/bin/sh\necho "VDBENCH-$1 $2" > /dev/console\n' > /tmp/mark
cat > /tmp/waitgo <<EOF
#!/bin/sh
echo "VDBENCH-READY \$1" > /dev/console
n=0
until [ "\$(dd if=$disk bs=4096 skip=15360 count=1 iflag=direct 2>/dev/null | head -c 7)" = "VDGO-\$1" ]; do
    n=\$((n + 1))
    [ \$n -le 3000 ] || { echo "VDBENCH-NOGO \$1" > /dev/console; exit 1; }
    usleep 100000
done
echo "VDBENCH-START \$1" > /dev/console
EOF
chmod +x /tmp/mark /tmp/waitgo
printf '[global]\nfilename=%s\nioengine=libaio\ndirect=1\nsize=48m\nruntime=%s\ntime_based\nstonewall\n' \
    "$disk" "$bench_secs" > /tmp/place.fio
printf 'rw=randread\nbs=4k\niodepth=1\n' >> /tmp/place.fio
r=1
while [ $r -le "$rounds" ]; do
    nn=$(printf %02d $r)
    printf '[r%s]\nexec_prerun=/tmp/waitgo %s\nexec_postrun=/tmp/mark END %s\n' "$nn" "$nn" "$nn" >> /tmp/place.fio
    r=$((r + 1))
done
step "fio placement bench on $disk: $rounds rounds of ${bench_secs}s"
fio --output-format=terse /tmp/place.fio > /tmp/place.out 2>&1 || die "fio on $disk: $(tail -3 /tmp/place.out)"
r=1
while [ $r -le "$rounds" ]; do
    nn=$(printf %02d $r); r=$((r + 1))
    line=$(tr -d '\000' < /tmp/place.out | grep "^3;[^;]*;r$nn;" | tail -1)
    [ -n "$line" ] || die "fio round $nn: no terse line: $(tail -3 /tmp/place.out)"
    res=$(echo "$line" | awk -F';' '
        { lo = 6; hi = lo + 39
          if ($5 != 0) { print "error=" $5; exit }
          kb = $lo; iops = $(lo + 2); p50 = ""; p99 = ""
          for (i = lo; i <= hi; i++) {
              if ($i ~ /^50\.0*%=/) { p50 = $i; sub(/.*=/, "", p50) }
              if ($i ~ /^99\.0*%=/) { p99 = $i; sub(/.*=/, "", p99) }
          }
          printf "ios=%d iops=%d p50=%s p99=%s\n", kb / 4, iops, p50, p99 }')
    case "$res" in ios=*" p50="[0-9]*" p99="[0-9]*) ;; *) die "fio round $nn: cannot parse: $res / $line" ;; esac
    echo "VDBENCH $nn $res"
done
finish PASS "placement bench on $disk, $rounds rounds of ${bench_secs}s"

# Sourced by the nested guest's /init (scripts/guest-init.sh, scenario bench-blk) after tools():
# the fio cases of `make bench`'s 94-bench-guest-blk, in sequence on one disk, one boot.
# vd.disk=vd (default: /dev/vdb0 via vd_front) or vd.disk=virtio (the virtio-blk disk that is not
# the tools disk). vd.bench_secs=<fio runtime per case, default 5>.
# Per case, on the console:  VDBENCH-START <case>  ... VDBENCH-END <case>  (printed by fio's
# exec_prerun/exec_postrun; the test VM samples KVM's and its CPU counters at these lines), then
#   VDBENCH <case> ios=<completed requests> iops=<n> p50=<clat us> p99=<clat us>
# from fio's terse output (format 3: read fields 6-45, write fields 47-86; clat percentiles are
# `P%=usec` fields, found by name, not by position).
bench_secs=5
for a in $(cat /proc/cmdline); do case "$a" in vd.bench_secs=*) bench_secs=${a#vd.bench_secs=} ;; esac; done
case "${disk:-vd}" in
    vd) disk=/dev/vdb0; vd_disk ;;
    virtio) disk=$(virtio_disk "") || die "no virtio-blk disk besides the tools disk" ;;
esac
# Lay the file out once (a sequential write over the whole range) so reads hit written blocks.
fio --name=prefill --filename="$disk" --rw=write --bs=1m --direct=1 --ioengine=libaio --size=48m \
    --output-format=terse > /tmp/prefill.out 2>&1 || die "fio prefill on $disk: $(tail -3 /tmp/prefill.out)"
# One fio run for all cases (loading Debian's fio costs ~10 s under nested TCG: once, outside the
# measured windows); exec_prerun/exec_postrun print the markers from the job itself.
: > /tmp/bench.fio
# fio runs exec_prerun/postrun without a shell (output into <job>.prerun.txt): a marker script.
printf '#!/bin/sh\necho "VDBENCH-$1 $2" > /dev/console\n' > /tmp/mark; chmod +x /tmp/mark
printf '[global]\nfilename=%s\nioengine=libaio\ndirect=1\nsize=48m\nruntime=%s\ntime_based\nstonewall\n' \
    "$disk" "$bench_secs" >> /tmp/bench.fio
for c in randread-4k-qd1:randread:4k:1 randwrite-4k-qd1:randwrite:4k:1 randread-4k-qd16:randread:4k:16 \
         randwrite-4k-qd16:randwrite:4k:16 read-1m:read:1m:4 write-1m:write:1m:4; do
    IFS=: read name rw bs qd <<EOC
$c
EOC
    printf '[%s]\nrw=%s\nbs=%s\niodepth=%s\nexec_prerun=/tmp/mark START %s\nexec_postrun=/tmp/mark END %s\n' \
        "$name" "$rw" "$bs" "$qd" "$name" "$name" >> /tmp/bench.fio
done
step "fio bench on $disk"
fio --output-format=terse /tmp/bench.fio > /tmp/bench.out 2>&1 || die "fio on $disk: $(tail -3 /tmp/bench.out)"
for c in randread-4k-qd1:randread randwrite-4k-qd1:randwrite randread-4k-qd16:randread \
         randwrite-4k-qd16:randwrite read-1m:read write-1m:write; do
    name=${c%%:*}; rw=${c#*:}
    line=$(tr -d '\000' < /tmp/bench.out | grep "^3;[^;]*;$name;" | tail -1)
    [ -n "$line" ] || die "fio $name: no terse line: $(tail -3 /tmp/bench.out)"
    res=$(echo "$line" | awk -F';' -v rw="$rw" '
        { lo = (rw ~ /read/) ? 6 : 47; hi = lo + 39
          if ($5 != 0) { print "error=" $5; exit }
          iops = $(lo + 2); ms = $(lo + 3); p50 = ""; p99 = ""
          for (i = lo; i <= hi; i++) {
              if ($i ~ /^50\.0*%=/) { p50 = $i; sub(/.*=/, "", p50) }
              if ($i ~ /^99\.0*%=/) { p99 = $i; sub(/.*=/, "", p99) }
          }
          printf "ios=%d iops=%d p50=%s p99=%s\n", iops * ms / 1000, iops, p50, p99 }')
    case "$res" in ios=*" p50="[0-9]*" p99="[0-9]*) ;; *) die "fio $name: cannot parse: $res / $line" ;; esac
    echo "VDBENCH $name $res"
done
finish PASS "bench on $disk, ${bench_secs}s per case"

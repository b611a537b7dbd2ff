#!/bin/bash
# Session 19, call 1: the selftest, then the pinned input pool with its
# buffers made at model load (5fa0f0d) against ordinary memory: DISB A
# through gRPC (busy-poll 2), `reset`, 6 s runs, three interleaved rounds.
# Carry target/release/reef and devrun/pack.tgz.
source scripts/device/common.sh
step selftest 300 $R selftest --device cuda
tail -3 $OUT/selftest.log
for i in 1 2 3; do for p in 256 0; do
  $R bench disb --workload workloads/A.json --device cuda --duration 6 --warmup 1 --quiet --modes reset --via-grpc --busy-poll 2 --pinned-input-mib $p --out $OUT/p${p}_$i > /dev/null 2>&1
  echo "== pinned $p MiB, round $i"; grep -E "^\| (rt-alone|reset)|RT queued" $OUT/p${p}_$i/*.md | cut -d'|' -f2,3,4,6,10 | sed "s/(arrival[^)]*)//"
done; done
pack

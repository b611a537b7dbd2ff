#!/bin/bash
# Session 18, call 6: the pinned input pool (--pinned-input-mib, the server
# decodes FP32 inputs into page-locked buffers) against ordinary memory,
# DISB A through gRPC (busy-poll 2), `reset`, short runs, interleaved twice.
# Carry target/release/reef and devrun/pack.tgz.
source scripts/device/common.sh
for i in 1 2; do for p in 256 0; do
  $R bench disb --workload workloads/A.json --device cuda --duration 2 --warmup 0.5 --quiet --modes reset --via-grpc --busy-poll 2 --pinned-input-mib $p --out $OUT/p${p}_$i > /dev/null 2>&1
  echo "== pinned $p MiB, round $i"; grep -E "^\| (rt-alone|reset)|RT queued" $OUT/p${p}_$i/*.md | cut -d'|' -f2,3,6,10 | sed "s/(arrival[^)]*)//"
done; done
pack

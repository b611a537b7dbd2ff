#!/bin/bash
# Session 15's host changes (docs/PERF.md) beside the binary before them,
# interleaved on one card: `reef bench preempt` (flags raised before any
# driver query) and DISB A in `reset` mode in process and through gRPC
# (borrowed tensor bytes on the request path).
# Carry target/release/reef, devrun/bin/reef_old (9e4f8e1) and devrun/pack.tgz
# holding both binaries' kernels (`reef compile --arch 9.0` with each into one
# REEF_CACHE_DIR).
source scripts/device/common.sh
O=devrun/bin/reef_old
D="bench disb --workload workloads/A.json --device cuda --duration 3 --warmup 1 --modes reset --quiet"
for i in 1 2; do
  step preempt_new_$i 150 $R bench preempt --device cuda --modes reset,reef --requests 80 --max-gap-ms 6 --json $OUT/preempt_new_$i.json
  step preempt_old_$i 150 $O bench preempt --device cuda --modes reset,reef --requests 80 --max-gap-ms 6 --json $OUT/preempt_old_$i.json
done
for i in 1 2; do
  for b in new old; do
    bin=$R; [ $b = old ] && bin=$O
    step inproc_${b}_$i 60 $bin $D --out $OUT/inproc_${b}_$i
    step grpc_${b}_$i 60 $bin $D --via-grpc --out $OUT/grpc_${b}_$i
  done
done
for f in preempt_new_1 preempt_old_1 preempt_new_2 preempt_old_2; do
  echo "== $f"; grep -v "^\s*$" $OUT/$f.log | tail -9; done
for i in 1 2; do for b in new old; do for k in inproc grpc; do
  echo "== ${k}_${b}_$i"; cat $OUT/${k}_${b}_$i/*.md 2>/dev/null | grep "^| reset"; done; done; done
cat $OUT/summary.txt
pack

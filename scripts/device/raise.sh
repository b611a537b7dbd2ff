#!/bin/bash
# Session 23, call 3: the flags' driver call (REEF_RAISE: one
# cuStreamBatchMemOp for all flags, the default, against one
# cuMemsetD32Async per flag) with the told word off (the default after
# call 2) and on. `reef bench preempt` (RT resnet50, each DISB BE model,
# REEF's order with two and one BE kernel in flight, 200 RT requests)
# batch, memset, memset, batch; then DISB C (five BE lanes raised
# together) in REEF's order, batch and memset, told off. The gpu tests
# first. Carry target/release/reef, devrun/bin/gpu_tests, devrun/pack.tgz.
source scripts/device/common.sh
step gpu_tests 150 devrun/bin/gpu_tests --test-threads 1 --nocapture
P="bench preempt --device cuda --modes reset:drain,reset:drain:depth1 --requests 200 --max-gap-ms 6"
step pre_batch1 150 env REEF_BE_TOLD=0 REEF_RAISE=batch $R $P --json $OUT/pre_batch1.json
step pre_memset1 150 env REEF_BE_TOLD=0 REEF_RAISE=memset $R $P --json $OUT/pre_memset1.json
step pre_memset2 150 env REEF_BE_TOLD=0 REEF_RAISE=memset $R $P --json $OUT/pre_memset2.json
step pre_batch2 150 env REEF_BE_TOLD=0 REEF_RAISE=batch $R $P --json $OUT/pre_batch2.json
step pre_told_memset 150 env REEF_BE_TOLD=1 REEF_RAISE=memset $R $P --json $OUT/pre_told_memset.json
for r in batch memset; do
  step disb_C_$r 150 env REEF_BE_TOLD=0 REEF_RAISE=$r $R bench disb --workload workloads/C.json --device cuda \
    --duration 3 --warmup 1 --modes reset:drain --quiet --out $OUT/disb_C_$r
done
echo "== gpu_tests"; grep -E "test result|FAILED|panicked|drained after|drain flagged" $OUT/gpu_tests.log | tail -8
for f in pre_batch1 pre_memset1 pre_memset2 pre_batch2 pre_told_memset; do echo "== $f"; grep "^|" $OUT/$f.log | cut -d'|' -f2-9 | tail -n +3; done
for r in batch memset; do echo "== C $r"; cat $OUT/disb_C_$r/*.md 2>/dev/null | grep "^|" | cut -c1-200; done
cat $OUT/summary.txt
pack

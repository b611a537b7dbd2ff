#!/bin/bash
# Session 23, call 2: the told word (REEF_BE_TOLD, default on) against the
# stream query (REEF_BE_TOLD=0) where BE throughput counts: DISB A and C in
# process (reset, reset:drain, reef; 3 s after 1 s of warm-up), off, on;
# `reef bench preempt` again in the other order (on, off), then with the
# flags raised by one cuStreamWriteValue32 or cuMemsetD32Async instead of
# one cuStreamBatchMemOp (REEF_RAISE), then with the drains timed on the
# device (--time-drains); the gpu tests
# and the selftest with the told word on (every kernel and model against
# the CPU backend, BE killed at random points and resumed bit-exact).
# Carry target/release/reef, devrun/bin/gpu_tests, devrun/pack.tgz.
source scripts/device/common.sh
step gpu_tests 150 devrun/bin/gpu_tests --test-threads 1 --nocapture
for w in A C; do
  for t in 0 1; do
    step disb_${w}_told$t 150 env REEF_BE_TOLD=$t $R bench disb --workload workloads/$w.json --device cuda \
      --duration 3 --warmup 1 --modes reset,reset:drain,reef --quiet --out $OUT/disb_${w}_told$t
  done
done
P="bench preempt --device cuda --modes reset:drain,reset:drain:depth1 --requests 150 --max-gap-ms 6"
step preempt_on2 150 env REEF_BE_TOLD=1 $R $P --json $OUT/preempt_on2.json
step preempt_off2 150 env REEF_BE_TOLD=0 $R $P --json $OUT/preempt_off2.json
for r in write memset; do step preempt_$r 150 env REEF_RAISE=$r $R $P --json $OUT/preempt_$r.json; done
step preempt_timed 150 $R $P --time-drains --json $OUT/preempt_timed.json
step selftest 200 $R selftest --preemptions 2 --seed 2306
echo "== gpu_tests"; grep -E "test result|FAILED|panicked|drained after|drain flagged" $OUT/gpu_tests.log | tail -8
echo "== selftest"; grep -E "FAIL|passed" $OUT/selftest.log | tail -3
for w in A C; do for t in 0 1; do echo "== $w told=$t"; cat $OUT/disb_${w}_told$t/*.md 2>/dev/null | grep "^|" | cut -c1-200; done; done
for f in preempt_on2 preempt_off2 preempt_write preempt_memset preempt_timed; do echo "== $f"; grep "^|" $OUT/$f.log | cut -d'|' -f2-9; done
cat $OUT/summary.txt
pack

#!/bin/bash
# Session 23, call 4: the new defaults (flags raised by one cuMemsetD32Async
# each, told word off) checked: the gpu tests, `reef selftest` (every
# kernel and model against the CPU backend, BE killed at random points and
# resumed bit-exact), and `reef bench preempt` once. Carry
# target/release/reef, devrun/bin/gpu_tests, devrun/pack.tgz.
source scripts/device/common.sh
step gpu_tests 150 devrun/bin/gpu_tests --test-threads 1 --nocapture
step selftest 200 $R selftest --preemptions 2 --seed 2307
step preempt 150 $R bench preempt --device cuda --modes reset:drain,reset:drain:depth1 --requests 150 \
  --max-gap-ms 6 --json $OUT/preempt.json
echo "== gpu_tests"; grep -E "test result|FAILED|panicked|drained after|drain flagged" $OUT/gpu_tests.log | tail -8
echo "== selftest"; grep -E "FAIL|passed" $OUT/selftest.log | tail -3
echo "== preempt"; grep "^|" $OUT/preempt.log | cut -d'|' -f2-9 | tail -n +3
cat $OUT/summary.txt
pack

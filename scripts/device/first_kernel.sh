#!/bin/bash
# Session 20, call 4: the RT tasks' first kernel timed on the device
# (TaskStats::first_kernel): how long RT work waits for BE blocks to leave
# the SMs, RT first (`reset`) against the drain first (`reset:drain`),
# `wait` and `stream`, with each DISB BE model (`reef bench preempt`, RT
# resnet50); DISB A and C with the new report line. Checks first: the gpu
# tests (the lane timer's own test among them) and the selftest.
# Carry target/release/reef, devrun/bin/gpu_tests, devrun/pack.tgz.
source scripts/device/common.sh
step gpu_tests 120 devrun/bin/gpu_tests --test-threads 1
step selftest 200 $R selftest --preemptions 2 --seed 2006
step preempt 300 $R bench preempt --device cuda --modes reset,reset:drain,wait,stream \
  --requests 80 --max-gap-ms 6 --json $OUT/preempt.json
for w in A C; do
  step disb_$w 120 $R bench disb --workload workloads/$w.json --device cuda --duration 3 --warmup 1 \
    --modes stream,wait,reset,reset:drain,reef --quiet --out $OUT/disb_$w
done
echo "== gpu_tests"; grep -E "test result|FAILED|panicked|first kernel" $OUT/gpu_tests.log | tail -4
echo "== selftest"; grep -E "FAIL|passed" $OUT/selftest.log | tail -3
echo "== preempt"; grep "^|" $OUT/preempt.log
for w in A C; do echo "== $w"; grep -E "^\| (rt-alone|stream|wait|reset|reef)|first kernel" $OUT/disb_$w/*.md | cut -c1-250; done
cat $OUT/summary.txt
pack

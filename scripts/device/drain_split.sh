#!/bin/bash
# Session 21, call 2: the preemption's drain split into the device's part
# (the flag's write on the device to the last flagged lane's end,
# `--time-drains`) and the host's (the rest of RT noticed -> lanes idle:
# the flag write's submission, seeing the lanes idle), with each DISB BE
# model (`reef bench preempt`, RT resnet50): REEF's order (`reset:drain`)
# with two and with one BE kernel in flight, RT first (`reset`) and `wait`.
# Checks first: the gpu tests (the drain timer's own test among them) and
# the selftest. Carry target/release/reef, devrun/bin/gpu_tests,
# devrun/pack.tgz.
source scripts/device/common.sh
step gpu_tests 120 devrun/bin/gpu_tests --test-threads 1 --nocapture
step selftest 200 $R selftest --preemptions 2 --seed 2106
step preempt 300 $R bench preempt --device cuda --modes reset:drain,reset:drain:depth1,reset,wait \
  --time-drains --requests 80 --max-gap-ms 6 --json $OUT/preempt.json
echo "== gpu_tests"; grep -E "test result|FAILED|panicked|drain flagged" $OUT/gpu_tests.log | tail -4
echo "== selftest"; grep -E "FAIL|passed" $OUT/selftest.log | tail -3
echo "== preempt"; grep "^|" $OUT/preempt.log
cat $OUT/summary.txt
pack

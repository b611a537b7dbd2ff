#!/bin/bash
# Session 25, call 1 (written in session 24): the gpu tests and the
# selftest on HEAD, then which BE kernels the slowest preemptions waited on
# (`reef bench preempt` now lists each row's slowest drains), in REEF's
# drain-first order with two and one BE kernel in flight, with the
# defaults and with the relay and the told word; the gpu tests first.
# Carry target/release/reef, devrun/bin/gpu_tests, devrun/pack.tgz.
source scripts/device/common.sh
step gpu_tests 150 devrun/bin/gpu_tests --test-threads 1 --nocapture
step selftest 200 $R selftest --preemptions 2 --seed 2501
P="bench preempt --device cuda --modes reset:drain,reset:drain:depth1 --requests 150 --max-gap-ms 6"
step pre_default 150 $R $P --json $OUT/pre_default.json
step pre_relay_told 150 env REEF_RAISE=relay REEF_BE_TOLD=1 $R $P --json $OUT/pre_relay_told.json

echo "== gpu_tests"; grep -E "test result|FAILED|panicked|relay,|drained after" $OUT/gpu_tests.log | tail -8
echo "== selftest"; grep -E "FAIL|passed" $OUT/selftest.log | tail -6
for f in pre_default pre_relay_told; do echo "== $f"; grep "^|" $OUT/$f.log | cut -d'|' -f2-8 | tail -n +3; grep "^- " $OUT/$f.log | cut -c1-900; done
cat $OUT/summary.txt
pack

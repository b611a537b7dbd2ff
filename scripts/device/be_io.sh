#!/bin/bash
# Session 28, call 4: BE inputs and outputs copied on a thread of their own
# (`io`, now the GPU's default) against on the scheduling thread (`inline`):
# the selftest (now with RT and BE through the scheduler, every answer
# against the device alone's); `reef bench preempt` with both, in `reset`,
# `reef` and `reset:drain`; DISB C and E in `reset` and `reef` with both.
# The pack needs the default sets (`reef compile --arch 9.0 --all-sets`).
source scripts/device/common.sh
step selftest 200 $R selftest --preemptions 2 --seed 2806
step table 300 $R bench preempt --device cuda --max-gap-ms 6 --requests 150 --modes reset:inline,reset:io,reef:inline,reef:io,reset:drain:inline,reset:drain:io --json $OUT/table.json
for w in C E; do
  step disb_$w 200 $R bench disb --workload workloads/$w.json --device cuda --duration 3 --warmup 1 --modes reset:inline,reset:io,reef:inline,reef:io --quiet --out $OUT/disb_$w
done

grep -E "^scheduler|FAIL|passed" $OUT/selftest.log | tail -6
report_preempt table
for w in C E; do grep "^|" $OUT/disb_$w/disb-$w.md; done
cat $OUT/summary.txt
pack

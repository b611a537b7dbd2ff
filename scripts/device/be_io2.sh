#!/bin/bash
# Session 28, call 5: as call 4 (scripts/device/be_io.sh), with the I/O
# thread now polling for its next job as the scheduling thread does: the
# selftest (RT and BE through the scheduler, every answer against the
# device alone's); `reef bench preempt` with `io` and `inline` in `reset`
# and `reset:drain`; DISB C in `reset` and `reef` with both.
# The pack needs the default sets (`reef compile --arch 9.0 --all-sets`).
source scripts/device/common.sh
step selftest 200 $R selftest --preemptions 2 --seed 2807
step table 300 $R bench preempt --device cuda --max-gap-ms 6 --requests 150 --modes reset:inline,reset:io,reset:drain:inline,reset:drain:io --json $OUT/table.json
for w in C; do
  step disb_$w 200 $R bench disb --workload workloads/$w.json --device cuda --duration 3 --warmup 1 --modes reset:inline,reset:io,reef:inline,reef:io --quiet --out $OUT/disb_$w
done

grep -E "^scheduler|FAIL|passed" $OUT/selftest.log | tail -6
report_preempt table
for w in C; do grep "^|" $OUT/disb_$w/disb-$w.md; done
cat $OUT/summary.txt
pack

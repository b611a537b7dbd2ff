#!/bin/bash
# Session 23, call 2: the told word again, in the other order (on, off),
# with the device's part of each drain timed (`--time-drains`), and the
# selftest with the told word on (every kernel and model against the CPU
# backend, BE killed at random points and resumed bit-exact). Carry
# target/release/reef, devrun/pack.tgz.
source scripts/device/common.sh
P="bench preempt --device cuda --modes reset:drain,reset:drain:depth1 --requests 150 --max-gap-ms 6"
step preempt_on2 150 env REEF_BE_TOLD=1 $R $P --json $OUT/preempt_on2.json
step preempt_off2 150 env REEF_BE_TOLD=0 $R $P --json $OUT/preempt_off2.json
step preempt_on_timed 150 env REEF_BE_TOLD=1 $R $P --time-drains --json $OUT/preempt_on_timed.json
step selftest 200 $R selftest --preemptions 2 --seed 2306
echo "== selftest"; grep -E "FAIL|passed" $OUT/selftest.log | tail -3
for f in preempt_on2 preempt_off2 preempt_on_timed; do echo "== $f"; grep "^|" $OUT/$f.log | cut -d'|' -f2-9; done
cat $OUT/summary.txt
pack

#!/bin/bash
# Session 28, call 3: BE lanes made for quick drains (a told word each, the
# flags raised through the relay run once) wherever RT work waits for the
# drain (`reset:drain`, `reef:drain`, beside lanes), the defaults otherwise.
# The gpu tests; the selftest, also with every BE lane's told word and relay
# (REEF_BE_TOLD=1 REEF_RAISE=relay-once); issue 3's table (`wait`, `reset`,
# `reef`, `reset:drain` = quick, `reset:drain:plain`); the two drain-first
# setups again with twice the requests, the other way round; DISB C in
# `reset`, `reef`, `reset:drain` and `reset:drain:plain`.
# The pack needs the default sets (`reef compile --arch 9.0 --all-sets`).
source scripts/device/common.sh
P="--device cuda --max-gap-ms 6"
step gpu_tests 150 devrun/bin/gpu_tests --test-threads 1 --nocapture
step selftest 200 $R selftest --preemptions 2 --seed 2804
step selftest_quick 200 env REEF_BE_TOLD=1 REEF_RAISE=relay-once $R selftest --preemptions 2 --seed 2805
step table 300 $R bench preempt $P --requests 150 --modes wait,reset,reef,reset:drain,reset:drain:plain --json $OUT/table.json
step again 300 $R bench preempt $P --requests 300 --modes reset:drain:plain,reset:drain --json $OUT/again.json
step disb_c 200 $R bench disb --workload workloads/C.json --device cuda --duration 3 --warmup 1 --modes reset,reef,reset:drain,reset:drain:plain --quiet --out $OUT/disb_c

report_checks
grep -E "FAIL|passed" $OUT/selftest_quick.log | tail -2
report_preempt table again
grep "^|" $OUT/disb_c/disb-C.md
cat $OUT/summary.txt
pack

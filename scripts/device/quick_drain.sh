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
for f in table again; do
  echo "== $f (BE model, mode: preempt p50/p99/max, raise p50/p99, gap p99, RT vs alone, RT p99 vs alone, BE/s, RT queued p99 / alone us, BE in / out us)"
  python3 - "$OUT/$f.json" <<'EOF'
import json, sys
fl = lambda x: float("nan") if x is None else x
for r in json.load(open(sys.argv[1])):
    rt = (r["rt_mean_ms"] / r["rt_alone_mean_ms"] - 1) * 100
    rt99 = (r["rt_p99_ms"] / r["rt_alone_p99_ms"] - 1) * 100
    print("%-12s %-18s %6.1f %6.1f %6.1f | %4.1f %4.1f | %5.1f | %+5.1f%% %+5.1f%% | %6.1f | %5.0f / %5.0f | %4.0f / %4.0f" % (
        r["be_model"][:12], r["mode"], fl(r["preempt_p50_us"]), fl(r["preempt_p99_us"]), fl(r["preempt_max_us"]),
        fl(r["raise_p50_us"]), fl(r["raise_p99_us"]), fl(r["poll_gap_p99_us"]), rt, rt99, r["be_per_s"],
        fl(r["rt_queued_p99_us"]), fl(r["rt_queued_alone_p99_us"]), fl(r["be_input_mean_us"]), fl(r["be_output_mean_us"])))
EOF
done
grep "^|" $OUT/disb_c/disb-C.md
cat $OUT/summary.txt
pack

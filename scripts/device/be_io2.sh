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
echo "== table (BE model, mode: preempt p50/p99, RT vs alone, RT p99 vs alone, BE/s, RT queued p99 / alone us, BE in / out us)"
python3 - "$OUT/table.json" <<'PY'
import json, sys
fl = lambda x: float("nan") if x is None else x
for r in json.load(open(sys.argv[1])):
    rt = (r["rt_mean_ms"] / r["rt_alone_mean_ms"] - 1) * 100
    rt99 = (r["rt_p99_ms"] / r["rt_alone_p99_ms"] - 1) * 100
    print("%-12s %-18s %6.1f %6.1f | %+5.1f%% %+5.1f%% | %6.1f | %5.0f / %5.0f | %4.0f / %4.0f" % (
        r["be_model"][:12], r["mode"], fl(r["preempt_p50_us"]), fl(r["preempt_p99_us"]), rt, rt99, r["be_per_s"],
        fl(r["rt_queued_p99_us"]), fl(r["rt_queued_alone_p99_us"]), fl(r["be_input_mean_us"]), fl(r["be_output_mean_us"])))
PY
for w in C; do grep "^|" $OUT/disb_$w/disb-$w.md; done
cat $OUT/summary.txt
pack

#!/bin/bash
# Session 29, call 2 (needs the binary of f30e465: the option was taken
# out after this run, see docs/PERF.md): staged input uploads (`REEF_STAGED_INPUTS=1`: a
# context copies an input of 64 KiB or more into a page-locked buffer of
# its own in 128 KiB chunks, each chunk's DMA starting while the next is
# copied) against the driver's copy from pageable memory: the gpu tests
# and the selftest with it on, then DISB A in process (`reset`, 6 s after
# 1 s) off / on / on / off. Then DISB D with 10 s windows (three times the
# usual), `reset` and `reef` with BE I/O on its thread and inline, once (trimmed to
# the device time left),
# to see whether RT's mean within 2% of alone holds past the 3 s windows'
# run-to-run spread. Carry target/release/reef, devrun/pack.tgz and
# devrun/bin/gpu_tests.
source scripts/device/common.sh
step gpu_tests 120 env REEF_STAGED_INPUTS=1 devrun/bin/gpu_tests --test-threads 1
step selftest 200 env REEF_STAGED_INPUTS=1 $R selftest --preemptions 1 --seed 2905
A="--duration 6 --warmup 1 --quiet --modes reset --busy-poll 1 --device cuda --workload workloads/A.json"
for run in "off1 0" "on1 1" "on2 1" "off2 0"; do
  set -- $run
  step staged_$1 300 env REEF_STAGED_INPUTS=$2 $R bench disb $A --out $OUT/staged_$1
done
for run in D1; do
  step disb_$run 300 $R bench disb --workload workloads/D.json --device cuda --duration 10 --warmup 1 --quiet \
    --modes reset,reset:inline,reef,reef:inline --out $OUT/disb_$run
done
report_checks
for r in off1 on1 on2 off2; do
  python3 - $OUT/staged_$r <<'PY'
import json, glob, sys
j = json.load(open(glob.glob(sys.argv[1] + "/*.json")[0]))
for m in j["modes"]:
    g = lambda k: (m.get(k) or {}).get("mean_ms", 0)
    print("%-10s %-8s RT %.3f p99 %.3f input %.3f queued %.3f BE %.1f" % (sys.argv[1].split("/")[-1], m["mode"],
          m["rt"]["mean_ms"], m["rt"]["p99_ms"], g("rt_input"), g("rt_queued"), m["be_throughput_rps"]))
PY
done
for run in D1; do echo "== disb_$run"; grep -E "^\| " $OUT/disb_$run/*.md | head -7 | cut -c1-200; done
cat $OUT/summary.txt
pack

#!/bin/bash
# Session 18, call 5: is the host's CPU time capped (cgroup quota,
# throttling), and does the scheduling thread's idle polling change the
# benchmark dispatcher's lag? DISB C (rt-alone + reset) with --idle-spin-ms
# 20 and 0, interleaved twice, with the cgroup's cpu.stat around each run.
# Carry target/release/reef and devrun/pack.tgz.
source scripts/device/common.sh
echo "nproc $(nproc); cpu.max $(cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo none)"
grep -m1 "model name" /proc/cpuinfo
cstat() { grep -E "nr_periods|nr_throttled|throttled_usec|usage_usec" /sys/fs/cgroup/cpu.stat 2>/dev/null | tr '\n' ' '; echo; }
for i in 1 2; do for s in 20 0; do
  echo "-- spin $s round $i: before $(cstat)"
  $R bench disb --workload workloads/C.json --device cuda --duration 3 --warmup 1 --quiet --modes reset --idle-spin-ms $s --out $OUT/C_${s}_$i > /dev/null 2>&1
  echo "   after $(cstat)"
  python3 - $OUT/C_${s}_$i <<'PY'
import json, glob, sys
j = json.load(open(glob.glob(sys.argv[1] + "/*.json")[0]))
for m in j["modes"]:
    l = m["dispatch_lag_us"]
    print("   %-9s RT mean %.3f p99 %.3f  lag p99 %.0f max %.0f us  BE %.1f" % (m["mode"], m["rt"]["mean_ms"], m["rt"]["p99_ms"], l["p99_us"], l["max_us"], m["be_throughput_rps"]))
PY
done; done
pack

#!/bin/bash
# Session 20, call 5: what the RT first-kernel timer costs RT. DISB A (twice)
# and C in `reset` mode (4 s after 1 s of warm-up) with this binary and the
# one before the timer (devrun/reef_3af10e8, the same kernels), interleaved.
# Carry target/release/reef, devrun/reef_3af10e8 and devrun/pack.tgz.
source scripts/device/common.sh
OLD=devrun/reef_3af10e8
B="bench disb --device cuda --duration 4 --warmup 1 --modes reset --quiet"
RUNS=""
for run in "A 1" "C 1" "A 2"; do
  set -- $run
  for v in new old; do
    if [ $v = new ]; then X=$R; else X=$OLD; fi
    step ${v}_$1_$2 120 $X $B --workload workloads/$1.json --out $OUT/${v}_$1_$2
    RUNS="$RUNS ${v}_$1_$2"
  done
done
for d in $RUNS; do echo "== $d"; grep -E "^\| (rt-alone|reset) " $OUT/$d/*.md | cut -d'|' -f2-8,10; done
cat $OUT/summary.txt
pack

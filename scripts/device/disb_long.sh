#!/bin/bash
# Session 29, call 2: DISB D (twice) and E (once) with 10 s windows after
# 1 s of warm-up (three times the usual), `reset` and `reef` beside RT
# alone (D also with BE I/O inline, `reset:inline`, `reef:inline`), to see whether RT's mean within 2% of alone holds past the 3 s
# windows' run-to-run spread (call 1: RT alone 7.262 and 6.603 ms in two
# runs of D). Carry target/release/reef and devrun/pack.tgz.
source scripts/device/common.sh
for run in D1 D2 E1; do
  w=${run:0:1}; modes=reset,reef
  [ $w = D ] && modes=reset,reset:inline,reef,reef:inline
  step disb_$run 300 $R bench disb --workload workloads/$w.json --device cuda --duration 10 --warmup 1 --quiet \
    --modes $modes --out $OUT/disb_$run
done
for run in D1 D2 E1; do echo "== disb_$run"; grep -E "^\| " $OUT/disb_$run/*.md | head -7 | cut -c1-200; done
cat $OUT/summary.txt
pack

#!/bin/bash
# Session 17, call 3: the RT launch before the drain (`:early`) against the
# drain-first order on the five-lane workloads (C, E, trace), twice, and with
# the RT launch no longer waiting for the drain, deeper BE queues
# (--be-depth 4: more BE throughput, a longer drain that RT no longer waits
# for). One card. Carry target/release/reef and devrun/pack.tgz.
source scripts/device/common.sh
B="bench disb --device cuda --duration 3 --warmup 1 --quiet"
for i in 1 2; do for w in C E trace; do
  M=reset,reset:early,reef,reef:early; [ $i = 1 ] && M=stream,$M
  step ${w}_d2_$i 90 $R $B --workload workloads/$w.json --modes $M --out $OUT/${w}_d2_$i
  step ${w}_d4_$i 60 $R $B --workload workloads/$w.json --modes reset:early,reef:early --be-depth 4 --out $OUT/${w}_d4_$i
done; done
for i in 1 2; do for w in C E trace; do for d in d2 d4; do
  echo "== ${w}_${d}_$i"; cat $OUT/${w}_${d}_$i/*.md 2>/dev/null | grep -E "^\| (rt-alone|stream|reset|reef)" | cut -d'|' -f2,3,6,8,9,10,11,13,14
done; done; done
cat $OUT/summary.txt
pack

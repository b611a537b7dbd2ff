#!/bin/bash
# Session 17, call 1: the selftest and gpu tests (one-copy resume, 26a4e84,
# first run on a GPU), then RT launched before the BE drain (`:early`,
# SchedConfig::early_rt) against the drain-first order, DISB A, C, E and the
# trace in one process each; and C and E in devrun/bin/reef_head (the binary
# before the one-copy resume) for BE throughput. One card.
# Carry target/release/reef, devrun/bin/{reef_head,gpu_tests}, devrun/pack.tgz.
source scripts/device/common.sh
H=devrun/bin/reef_head
step selftest 150 $R selftest --preemptions 3 --seed 73
step gpu_tests 150 devrun/bin/gpu_tests --test-threads 1
M=reset,reset:early,reef,reef:early
for w in ${W:-C trace A E}; do
  step ${w}_new 90 $R bench disb --workload workloads/$w.json --device cuda --duration 3 --warmup 1 --modes $M --quiet --out $OUT/${w}_new
done
for w in C E; do
  step ${w}_head 60 $H bench disb --workload workloads/$w.json --device cuda --duration 3 --warmup 1 --modes reset,reef --quiet --out $OUT/${w}_head
done
echo "== selftest"; grep -E "FAIL|passed" $OUT/selftest.log | tail -5
echo "== gpu_tests"; grep -E "test result|FAILED|panicked" $OUT/gpu_tests.log | tail -5
for k in C_new C_head trace_new A_new E_new E_head; do
  echo "== $k"; cat $OUT/$k/*.md 2>/dev/null | grep -E "^\| (rt-alone|reset|reef)" | cut -d'|' -f2,3,6,8,9,10,13,14; grep "RT queued" $OUT/$k/*.md 2>/dev/null | sed "s/(arrival[^)]*)//"
done
cat $OUT/summary.txt
pack

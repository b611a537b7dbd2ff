#!/bin/bash
# One-copy resume (session 16): selftest and the gpu tests with it, then DISB
# C and E (five BE lanes, so five resumes per RT request) in `reset` and
# `reef` modes beside devrun/bin/reef_head (the binary before), twice,
# interleaved; then the front end alone (frontend_overhead, no GPU work).
# Carry target/release/reef, devrun/bin/{reef_head,gpu_tests,frontend_overhead}
# and devrun/pack.tgz. ITERS= rounds (2), FO= busy-poll counts for the front
# end ("0 2"), GPU_TESTS=1 adds the gpu tests.
source scripts/device/common.sh
H=devrun/bin/reef_head
ITERS=${ITERS:-2}
step selftest 120 $R selftest --preemptions 3 --seed 71
[ -n "${GPU_TESTS:-}" ] && step gpu_tests 200 devrun/bin/gpu_tests --test-threads 1
for i in $(seq $ITERS); do for w in C E; do
  step ${w}_new_$i 60 $R bench disb --workload workloads/$w.json --device cuda --duration 3 --warmup 1 --modes reset,reef --quiet --out $OUT/${w}_new_$i
  step ${w}_head_$i 60 $H bench disb --workload workloads/$w.json --device cuda --duration 3 --warmup 1 --modes reset,reef --quiet --out $OUT/${w}_head_$i
done; done
for b in ${FO:-0 2}; do step fo_bp$b 100 devrun/bin/frontend_overhead --requests 1000 --shm --stages --busy-poll $b; done
echo "== selftest"; grep -E "FAIL|passed" $OUT/selftest.log | tail -5
[ -f $OUT/gpu_tests.log ] && echo "== gpu_tests" && grep -E "test result|FAILED|panicked" $OUT/gpu_tests.log | tail -5
for i in $(seq $ITERS); do for w in C E; do for b in new head; do
  printf '%-10s\n' ${w}_${b}_$i; cat $OUT/${w}_${b}_$i/*.md 2>/dev/null | grep -E "^\| (reset|reef|rt-alone)" | cut -d'|' -f2-3,6,10-11; done; done; done
for b in ${FO:-0 2}; do echo "== fo_bp$b"; tail -22 $OUT/fo_bp$b.log; done
cat $OUT/summary.txt
pack

#!/bin/bash
# Session 25, call 2: the gpu tests and the selftest with the relay run once
# (`REEF_RAISE=relay-once`); the drain probe (kernels compiled with
# REEF_DRAIN_PROBE) in the drain-first modes with the relay and the told
# word; then the relay run once against the relay and the memset in
# `reef bench preempt` (drain first and RT first, alternating order;
# RAISES lists them) and, with DISB=1, in DISB C. Carry target/release/reef, devrun/bin/gpu_tests and a
# devrun/pack.tgz that holds both the default sets (--all-sets) and the
# probe's (REEF_NVRTC_DEFINES=REEF_DRAIN_PROBE reef compile).
source scripts/device/common.sh
step gpu_tests 150 devrun/bin/gpu_tests --test-threads 1 --nocapture
step selftest_once 200 env REEF_RAISE=relay-once $R selftest --preemptions 2 --seed 2502
P="bench preempt --device cuda --requests 150 --max-gap-ms 6"
step probe 200 env REEF_NVRTC_DEFINES=REEF_DRAIN_PROBE REEF_RAISE=relay REEF_BE_TOLD=1 \
  $R $P --modes reset:drain,reset:drain:depth1 --json $OUT/probe.json
i=0
for r in ${RAISES:-memset relay-once relay-once memset}; do
  i=$((i+1))
  step ab${i}_$r 150 env REEF_RAISE=$r $R $P --modes reset:drain,reset --json $OUT/ab${i}_$r.json
done
[ "${DISB:-0}" = 1 ] && for i in 1 2; do for r in relay-once memset; do
  step disb_C_${r}$i 150 env REEF_RAISE=$r $R bench disb --workload workloads/C.json --device cuda \
    --duration 3 --warmup 1 --modes reef,reset --quiet --out $OUT/disb_C_${r}$i
done; done

echo "== gpu_tests"; grep -E "test result|FAILED|panicked|Relay.*,|drained after" $OUT/gpu_tests.log | tail -8
echo "== selftest_once"; grep -E "FAIL|passed" $OUT/selftest_once.log | tail -4
echo "== probe"; grep "^|" $OUT/probe.log | cut -d'|' -f2-8 | tail -n +3
grep -A60 "^Device histograms" $OUT/probe.log | grep "^- " | cut -c1-200
grep -A20 "^Device counters" $OUT/probe.log | grep "^- "
for f in $(ls $OUT | grep -E "^ab[0-9]_.*\.log$" | sort); do echo "== $f"; grep "^|" $OUT/$f | cut -d'|' -f2-12 | tail -n +3; done
for i in 1 2; do for r in relay-once memset; do echo "== C $r $i"; cat $OUT/disb_C_${r}$i/*.md 2>/dev/null | grep "^|" | cut -c1-200 | tail -n +3; done; done
cat $OUT/summary.txt
pack

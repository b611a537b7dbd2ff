#!/bin/bash
# Session 27, call 2: the split-K sum's flag checks on by default. The gpu
# tests and the selftest with the defaults; the drain probe (relay and told
# word) with the ran-out blocks split by where their GEMM item was at the
# raise; `reef bench preempt` with the defaults, checks in / out / out / in;
# DISB C in reset mode, in / out / out / in. The pack needs the default sets,
# REEF_DRAIN_PROBE and REEF_REDUCE_CHECK=0 (`reef compile --arch 9.0` with
# each as REEF_NVRTC_DEFINES).
source scripts/device/common.sh
step gpu_tests 150 devrun/bin/gpu_tests --test-threads 1 --nocapture
step selftest 200 $R selftest --preemptions 2 --seed 2701
P="bench preempt --device cuda --requests 150 --max-gap-ms 6"
step probe 200 env REEF_RAISE=relay REEF_BE_TOLD=1 REEF_NVRTC_DEFINES=REEF_DRAIN_PROBE $R $P --modes reset:drain,reset:drain:depth1 --json $OUT/probe.json
i=0
for c in ${ABS-on off off on}; do
  i=$((i+1))
  if [ $c = on ]; then D=; else D=REEF_REDUCE_CHECK=0; fi
  step ab${i}_$c 150 env REEF_NVRTC_DEFINES=$D $R $P --modes reset:drain,reset:drain:depth1 --json $OUT/ab${i}_$c.json
done
i=0
for c in ${DISB-on off off on}; do
  i=$((i+1))
  if [ $c = on ]; then D=; else D=REEF_REDUCE_CHECK=0; fi
  step disb${i}_$c 120 env REEF_NVRTC_DEFINES=$D $R bench disb --workload workloads/C.json --device cuda --duration 3 --warmup 1 --modes reset --quiet --out $OUT/disb${i}_$c
done

report_checks
report_probes "drain:|ran out" probe
report_abs
for d in $(ls $OUT | grep -E "^disb[0-9]_" | sort); do echo "== $d"; grep "^|" $OUT/$d/*.md | head -6 | cut -c1-300; done
pack

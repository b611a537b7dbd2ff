#!/bin/bash
# Session 27, call 2: the split-K sum's flag checks on by default. The gpu
# tests and the selftest with the defaults; the drain probe (relay and told
# word) with the ran-out blocks split by where their GEMM item was at the
# raise, without and with the K loop's end check (REEF_END_CHECK=1); the
# defaults with the sum's checks out (REEF_REDUCE_CHECK=0), in, and in with
# the end check (`reef bench preempt`, ABS in order); DISB C in reset mode,
# in / out / out / in. The pack needs the default sets, REEF_DRAIN_PROBE,
# REEF_DRAIN_PROBE,REEF_END_CHECK=1, REEF_REDUCE_CHECK=0 and
# REEF_END_CHECK=1 (`reef compile --arch 9.0` with each as
# REEF_NVRTC_DEFINES). Ran on binary 94f830d; later binaries' defaults
# also hold the end and epilogue checks: to rerun it with them, add
# REEF_END_CHECK=0,REEF_EPI_CHECK=0 to every define set (the pack's too).
source scripts/device/common.sh
defines() { case $1 in on) echo "";; off) echo REEF_REDUCE_CHECK=0;; end) echo REEF_END_CHECK=1;; esac; }
step gpu_tests 150 devrun/bin/gpu_tests --test-threads 1 --nocapture
step selftest 200 $R selftest --preemptions 2 --seed 2701
step selftest_end 200 env REEF_NVRTC_DEFINES=REEF_END_CHECK=1 $R selftest --preemptions 2 --seed 2702
P="bench preempt --device cuda --requests 150 --max-gap-ms 6"
for c in on end; do
  D=REEF_DRAIN_PROBE; [ $c = end ] && D=REEF_DRAIN_PROBE,REEF_END_CHECK=1
  step probe_$c 200 env REEF_RAISE=relay REEF_BE_TOLD=1 REEF_NVRTC_DEFINES=$D $R $P --modes reset:drain,reset:drain:depth1 --json $OUT/probe_$c.json
done
i=0
for c in ${ABS-on off end end off on}; do
  i=$((i+1))
  step ab${i}_$c 150 env REEF_NVRTC_DEFINES=$(defines $c) $R $P --modes reset:drain,reset:drain:depth1 --json $OUT/ab${i}_$c.json
done
i=0
for c in ${DISB-on off off on}; do
  i=$((i+1))
  step disb${i}_$c 120 env REEF_NVRTC_DEFINES=$(defines $c) $R bench disb --workload workloads/C.json --device cuda --duration 3 --warmup 1 --modes reset --quiet --out $OUT/disb${i}_$c
done

report_checks
grep -E "FAIL|passed" $OUT/selftest_end.log | tail -2
report_probes "drain:|ran out" probe_on probe_end
report_abs
for d in $(ls $OUT | grep -E "^disb[0-9]_" | sort); do echo "== $d"; grep "^|" $OUT/$d/*.md | head -6 | cut -c1-300; done
pack

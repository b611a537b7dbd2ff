#!/bin/bash
# The split-K sum's flag checks (REEF_REDUCE_CHECK; Session 27, call 1,
# binary c8dfa34, where they were off by default; on by default since). The
# gpu tests and the selftest with the checks compiled in; the drain probe
# (relay and told word) with them out and in; then `reef bench preempt`
# with the other defaults, out / in / in / out. Both ways are named, so the
# runs mean the same with any binary; the pack needs the default sets and
# REEF_REDUCE_CHECK=0 and =1, each also with REEF_DRAIN_PROBE
# (`reef compile --arch 9.0` with each as REEF_NVRTC_DEFINES). PROBES
# (default "off on") and ABS (default "off on on off") pick the runs.
source scripts/device/common.sh
step gpu_tests 150 env REEF_NVRTC_DEFINES=REEF_REDUCE_CHECK=1 devrun/bin/gpu_tests --test-threads 1 --nocapture
step selftest 200 env REEF_NVRTC_DEFINES=REEF_REDUCE_CHECK=1 $R selftest --preemptions 2 --seed 2601
P="bench preempt --device cuda --requests 150 --max-gap-ms 6"
PR="REEF_RAISE=relay REEF_BE_TOLD=1"
for c in ${PROBES-off on}; do
  if [ $c = on ]; then D=REEF_DRAIN_PROBE,REEF_REDUCE_CHECK=1; else D=REEF_DRAIN_PROBE,REEF_REDUCE_CHECK=0; fi
  step probe_$c 200 env $PR REEF_NVRTC_DEFINES=$D $R $P --modes reset:drain,reset:drain:depth1 --json $OUT/probe_$c.json
done
i=0
for c in ${ABS-off on on off}; do
  i=$((i+1))
  if [ $c = on ]; then D="REEF_NVRTC_DEFINES=REEF_REDUCE_CHECK=1"; else D="REEF_NVRTC_DEFINES=REEF_REDUCE_CHECK=0"; fi
  step ab${i}_$c 150 env $D $R $P --modes reset:drain,reset:drain:depth1 --json $OUT/ab${i}_$c.json
done

report_checks
report_probes "drain:|ran out:|late start:" $(ls $OUT | grep -E "^probe_.*\.log$" | sed 's/\.log$//')
report_abs
pack

#!/bin/bash
# Session 25, call 3: the gpu tests and the selftest on the final kernel
# source; the drain probe (with its "ran out" series) with multi-wave BE
# kernels launched direct (the default) and as persistent grids
# (REEF_BE_DIRECT_ALL=0), relay and told word on; then the two launch
# kinds with the defaults in `reef bench preempt` (ALTS: the order; empty
# for none). CHECKS=0 leaves the tests out. Carry as
# probe.sh.
source scripts/device/common.sh
if [ "${CHECKS:-1}" = 1 ]; then
  step gpu_tests 150 devrun/bin/gpu_tests --test-threads 1 --nocapture
  step selftest 200 $R selftest --preemptions 2 --seed 2503
fi
P="bench preempt --device cuda --requests 150 --max-gap-ms 6"
PR="REEF_NVRTC_DEFINES=REEF_DRAIN_PROBE REEF_RAISE=relay REEF_BE_TOLD=1"
step probe_direct 200 env $PR $R $P --modes reset:drain,reset:drain:depth1 --json $OUT/probe_direct.json
step probe_claim 200 env $PR REEF_BE_DIRECT_ALL=0 $R $P --modes reset:drain,reset:drain:depth1 --json $OUT/probe_claim.json
i=0
for d in ${ALTS-1 0}; do
  i=$((i+1))
  step ab${i}_all$d 150 env REEF_BE_DIRECT_ALL=$d $R $P --modes reset:drain,reset --json $OUT/ab${i}_all$d.json
done

report_checks
report_probes "drain:|notice:|ran out:" probe_direct probe_claim
report_abs
pack

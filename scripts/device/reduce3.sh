#!/bin/bash
# Session 27, call 3: where the late leavers' time goes, and two more
# checks. The gpu tests and the selftest with the K loop's end check and
# the epilogue's check compiled in (REEF_END_CHECK=1,REEF_EPI_CHECK=2: every group); the
# drain probe (relay and told word) with the defaults (its new series: the
# split-K part's and the epilogue's durations with the flag down) and with
# both checks; `reef bench preempt` with the defaults and with both checks
# (ABS, in order: def / chk). The pack needs the default sets,
# REEF_DRAIN_PROBE, REEF_DRAIN_PROBE,REEF_END_CHECK=1,REEF_EPI_CHECK=2 and
# REEF_END_CHECK=1,REEF_EPI_CHECK=2. Ran on binary d79c5be; with later
# binaries, whose defaults hold both checks, "def" is the same as "chk"
# unless DEF=REEF_END_CHECK=0,REEF_EPI_CHECK=0 names them off (and the pack
# holds that set, with and without REEF_DRAIN_PROBE).
source scripts/device/common.sh
C=REEF_END_CHECK=1,REEF_EPI_CHECK=${EPI:-2}
step gpu_tests 150 env REEF_NVRTC_DEFINES=$C devrun/bin/gpu_tests --test-threads 1 --nocapture
step selftest 200 env REEF_NVRTC_DEFINES=$C $R selftest --preemptions 2 --seed 2703
P="bench preempt --device cuda --requests 150 --max-gap-ms 6"
for c in def chk; do
  D=REEF_DRAIN_PROBE${DEF:+,$DEF}; [ $c = chk ] && D=REEF_DRAIN_PROBE,$C
  step probe_$c 200 env REEF_RAISE=relay REEF_BE_TOLD=1 REEF_NVRTC_DEFINES=$D $R $P --modes reset:drain,reset:drain:depth1 --json $OUT/probe_$c.json
done
i=0
for c in ${ABS-def chk chk def}; do
  i=$((i+1))
  D=${DEF:-}; [ $c = chk ] && D=$C
  step ab${i}_$c 150 env REEF_NVRTC_DEFINES=$D $R $P --modes reset:drain,reset:drain:depth1 --json $OUT/ab${i}_$c.json
done

report_checks
report_probes "drain:|ran out|split-K part|epilogue and out" probe_def probe_chk
report_abs
pack

#!/bin/bash
# The epilogue's bias loads hoisted out of its groups (REEF_EPI_HOIST=1,
# written in Session 27, not yet run): the selftest with it compiled in;
# `reef bench models` (RT and BE latency at batch 1) off / on / on / off;
# the drain probe's epilogue durations (relay and told word) off and on.
# The pack needs the default sets, REEF_EPI_HOIST=1, REEF_DRAIN_PROBE and
# REEF_DRAIN_PROBE,REEF_EPI_HOIST=1 (`reef compile --arch 9.0` with each
# as REEF_NVRTC_DEFINES). M picks the models, RUNS the order.
source scripts/device/common.sh
M=${M:-vgg19,resnet50,resnet152,densenet201,inception_v3}
step selftest 200 env REEF_NVRTC_DEFINES=REEF_EPI_HOIST=1 $R selftest --preemptions 2 --seed 2801
i=0
for c in ${RUNS-off on on off}; do
  i=$((i+1))
  D=; [ $c = on ] && D=REEF_EPI_HOIST=1
  step models${i}_$c 200 env REEF_NVRTC_DEFINES=$D $R bench models --models $M --batches 1 --iters 30 --json $OUT/models${i}_$c.json
done
for c in off on; do
  D=REEF_DRAIN_PROBE; [ $c = on ] && D=REEF_DRAIN_PROBE,REEF_EPI_HOIST=1
  step probe_$c 200 env REEF_RAISE=relay REEF_BE_TOLD=1 REEF_NVRTC_DEFINES=$D $R bench preempt --device cuda --requests 150 --max-gap-ms 6 --modes reset:drain --json $OUT/probe_$c.json
done

grep -E "FAIL|passed" $OUT/selftest.log | tail -2
for f in $(ls $OUT | grep -E "^models[0-9]_.*\.log$" | sort); do echo "== $f"; grep "^|" $OUT/$f | tail -n +3; done
report_probes "drain:|epilogue and out|split-K part" probe_off probe_on
cat $OUT/summary.txt
pack

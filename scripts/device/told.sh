#!/bin/bash
# Session 23, call 1: the told word (the last block of each direct BE launch
# writes the launch's number to a host-mapped word of its lane; a drain ends
# when the scheduler reads it, `REEF_BE_TOLD`, default on) against asking
# the stream (`REEF_BE_TOLD=0`, the kernels skip the count), same binary,
# same pack. The gpu tests first (the told word's own test among them);
# then the BE models' latency both ways (what the count costs the
# kernels); then `reef bench preempt` (RT resnet50, each DISB BE model) in
# REEF's order with two and with one BE kernel in flight, off, on, off, on.
# Carry target/release/reef, devrun/bin/gpu_tests, devrun/pack.tgz.
source scripts/device/common.sh
M=resnet152,densenet201,vgg19,inception_v3,bert_base
step gpu_tests 150 devrun/bin/gpu_tests --test-threads 1 --nocapture
step models_off 120 env REEF_BE_TOLD=0 $R bench models --device cuda --models $M --batches 1 --iters 20
step models_on 120 env REEF_BE_TOLD=1 $R bench models --device cuda --models $M --batches 1 --iters 20
P="bench preempt --device cuda --modes reset:drain,reset:drain:depth1 --requests 150 --max-gap-ms 6"
step preempt_off1 150 env REEF_BE_TOLD=0 $R $P --json $OUT/preempt_off1.json
step preempt_on1 150 env REEF_BE_TOLD=1 $R $P --json $OUT/preempt_on1.json
echo "== gpu_tests"; grep -E "test result|FAILED|panicked|drained after|drain flagged" $OUT/gpu_tests.log | tail -8
echo "== models off"; grep -E "^\|" $OUT/models_off.log | head -12
echo "== models on"; grep -E "^\|" $OUT/models_on.log | head -12
for f in preempt_off1 preempt_on1; do echo "== $f"; grep "^|" $OUT/$f.log | cut -d'|' -f2-9; done
cat $OUT/summary.txt
pack

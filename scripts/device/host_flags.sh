#!/bin/bash
# Session 22, call 1: preemption flags in host-mapped memory (REEF_HOST_FLAGS=1)
# against flags in device memory (issue 3's host part).
#  1. mapped_flag.cu on its own (outside reef): a mapped read's latency, a
#     host/device ping-pong, what entry checks cost, raise -> idle;
#  2. the gpu tests (one lane preempted and resumed with each kind of flag);
#  3. `reef bench preempt` (RT resnet50, each DISB BE model) with device
#     flags, then host flags, then device flags again;
#  4. BE-variant model latency with each kind (what the PCIe reads cost);
#  5. DISB A in `reset` and `reset:drain`, each kind of flag;
#  6. the selftest with host flags on three models.
# Carry target/release/reef, devrun/bin/gpu_tests, devrun/pack.tgz.
# Ran once, on binary 810b469 (REEF_HOST_FLAGS, removed after this call:
# BE 36-228x slower with mapped flags; docs/PERF.md, Session 22).
source scripts/device/common.sh
step nvcc 120 nvcc -O2 -arch=sm_90 -o /tmp/mapped_flag scripts/device/mapped_flag.cu -lcuda
step mapped_flag 90 /tmp/mapped_flag
step gpu_tests 150 devrun/bin/gpu_tests --test-threads 1 --nocapture
P="bench preempt --device cuda --modes reset:drain,reset:drain:depth1,reset --requests 40 --max-gap-ms 6"
step preempt_dev1 200 $R $P --json $OUT/preempt_dev1.json
step preempt_host 200 env REEF_HOST_FLAGS=1 RUST_LOG=warn,reef_cuda=info $R $P --json $OUT/preempt_host.json
M="bench models --device cuda --models resnet152,densenet201,vgg19,inception_v3,bert_base --batches 1 --iters 20"
step models_dev 150 $R $M
step models_host 150 env REEF_HOST_FLAGS=1 $R $M
step selftest_host 200 env REEF_HOST_FLAGS=1 $R selftest --models resnet50,vgg19,bert_base --preemptions 2 --seed 2206
D="bench disb --workload workloads/A.json --device cuda --duration 3 --warmup 1 --modes reset,reset:drain"
step disb_dev 120 $R $D --out $OUT/disb_dev
step disb_host 120 env REEF_HOST_FLAGS=1 $R $D --out $OUT/disb_host
step preempt_dev2 200 $R $P --json $OUT/preempt_dev2.json
echo "== mapped_flag"; cat $OUT/mapped_flag.log | tail -15
echo "== gpu_tests"; grep -E "test result|FAILED|panicked" $OUT/gpu_tests.log | tail -4
for f in preempt_dev1 preempt_host preempt_dev2; do echo "== $f"; grep "^|" $OUT/$f.log; done
grep -m1 -o "host_flags=[a-z]*" $OUT/preempt_host.log
for f in models_dev models_host; do echo "== $f"; grep -A6 "^model" $OUT/$f.log; done
for f in disb_dev disb_host; do echo "== $f"; grep "^|" $OUT/$f.log | head -8; done
echo "== selftest"; grep -E "FAIL|passed" $OUT/selftest_host.log | tail -3
cat $OUT/summary.txt
pack

#!/bin/bash
# Correctness of everything (the wgmma tiles included), then the wgmma tiles
# against the default kernels and PyTorch (docs/PERF.md, Session 12, call 1).
source scripts/device/common.sh
step layout 60 bash -c "nvcc -gencode arch=compute_90a,code=sm_90a -O2 -o /tmp/wlc scripts/wgmma_layout_check.cu && /tmp/wlc"
step selftest 200 $R selftest --preemptions 3 --seed 23
step gpu_tests 90 devrun/bin/gpu_tests --test-threads 1
REEF_WGMMA=1 step selftest_wg 120 $R selftest --models resnet_tiny,bert_base --preemptions 2 --seed 31
step bench_def 90 env REEF_TACTICS=rules $R bench models --models bert_base,vgg19,resnet50 --batches 1,8 --iters 20 --json $OUT/bench_def.json
REEF_WGMMA=1 step bench_wg 120 env REEF_TACTICS=rules $R bench models --models bert_base,vgg19,resnet50 --batches 1,8 --iters 20 --kernels 6 --json $OUT/bench_wg.json
step torch 100 python3 scripts/torch_bench_models.py --models bert_base,vgg19,resnet50 --batches 1,8 --iters 20 --json $OUT/torch.json
echo; for f in layout selftest gpu_tests selftest_wg; do echo "== $f"; tail -6 $OUT/$f.log; done
for f in bench_def bench_wg torch; do echo "== $f"; grep -v "^\s*$" $OUT/$f.log | tail -14; done
cat $OUT/summary.txt
pack

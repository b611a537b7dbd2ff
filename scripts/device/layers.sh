#!/bin/bash
# Where reef's kernels trail cuDNN's and cuBLAS's (issue 5: reef must beat
# PyTorch with CUDA graphs on absolute RT latency and BE throughput): each
# DISB model at batch 1, every reef kernel timed alone (RT variant) against
# the PyTorch module it fuses (eager, profiler, TF32 as PyTorch's default
# for cuDNN convolutions), as tables by op and by largest loss.
# About three minutes. Carry target/release/reef and devrun/pack.tgz.
source scripts/device/common.sh
M=${MODELS:-vgg19,bert_base,resnet152,densenet201,inception_v3}
step reef_layers 300 $R bench models --device cuda --models $M --batches 1 --iters 20 --kernels 8 --json $OUT/reef_layers.json
step torch_layers 300 python3 scripts/torch_bench_models.py --models $M --batches 1 --iters 20 --layers --json $OUT/torch_layers.json
python3 scripts/layer_compare.py $OUT/reef_layers.json $OUT/torch_layers.json --top 10 > $OUT/layers.md 2>&1
grep -E "^(model|vgg19|bert_base|resnet152|densenet201|inception_v3) " $OUT/reef_layers.log $OUT/torch_layers.log
cat $OUT/layers.md | head -150
cat $OUT/summary.txt

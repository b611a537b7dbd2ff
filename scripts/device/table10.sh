#!/bin/bash
# Session 30, call 2 (issue 5): every mode with each RT mean's 95%
# half-width. D, E and the trace with 10 s windows (the 3 s ones of call 1
# left D at +-7%), A, B and C with 3 s (call 1: +-0.4-0.7%); rt-alone,
# BE alone, seq, stream, wait, reset and reef; then PyTorch's CUDA-graph
# baselines (seq, stream; 3 s). Carry target/release/reef, devrun/pack.tgz.
source scripts/device/common.sh
MODES=seq,stream,wait,reset,reef
for w in D E trace; do
  step disb_$w 150 $R bench disb --workload workloads/$w.json --device cuda --duration 10 --warmup 1 \
    --modes $MODES --be-alone --quiet --out $OUT/disb_$w
done
for w in A B C; do
  step disb_$w 100 $R bench disb --workload workloads/$w.json --device cuda --duration 3 --warmup 1 \
    --modes $MODES --be-alone --quiet --out $OUT/disb_$w
done
for w in D E trace A B C; do
  step torch_$w 60 python3 scripts/torch_disb.py workloads/$w.json --policies seq,stream --variants graph \
    --duration 3 --warmup 1 --out $OUT/torch_$w.json --markdown $OUT/torch_$w.md
done
for w in A B C D E trace; do echo "== $w"; grep -E "^\|" $OUT/disb_$w/*.md | tail -n +3 | cut -c1-160; grep "^|" $OUT/torch_$w.md | tail -n +3 | cut -c1-120; done
cat $OUT/summary.txt
pack

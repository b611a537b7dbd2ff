#!/bin/bash
# DISB with the fused attention off and on (docs/RESULTS.md, Session 14): the
# workloads with BERT (W=, default C D), reef's modes, one binary
# (REEF_FUSE_ATTENTION=0 lowers attention as before), PyTorch's CUDA-graph
# baselines beside, after a selftest.
source scripts/device/common.sh
W=${W:-C D}
step selftest 150 $R selftest --preemptions 2 --seed 59
for w in $W; do
  for f in 0 1; do
    step disb_${w}_fuse$f 150 env REEF_FUSE_ATTENTION=$f $R bench disb --workload workloads/$w.json --device cuda --duration 3 --warmup 1 --modes ${MODES:-stream,reset,reef} --quiet --out $OUT/disb_${w}_fuse$f
  done
done
for w in $W; do
  step torch_$w 120 python3 scripts/torch_disb.py workloads/$w.json --policies seq,stream --variants graph --duration 3 --warmup 1 --out $OUT/torch_$w.json --markdown $OUT/torch_$w.md
done
tail -3 $OUT/selftest.log
for w in $W; do for f in 0 1; do echo "== $w fuse=$f"; cat $OUT/disb_${w}_fuse$f/*.md 2>/dev/null | grep "^|"; done; echo "== $w torch"; cat $OUT/torch_$w.md 2>/dev/null | grep "^|"; done
cat $OUT/summary.txt
pack

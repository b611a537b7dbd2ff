#!/bin/bash
# The fused attention's BE variant stops between key chunks (docs/PERF.md,
# Session 14): selftest (random preemptions resumed bit for bit), preemption
# latency with BERT as the BE model with the fusion off and on, and BERT's
# latency under fixed tactics, off and on, interleaved; PROF=1 adds the
# per-family kernel profile with the fusion on.
source scripts/device/common.sh
step selftest 150 $R selftest --preemptions 3 --seed 61
for f in 0 1; do
  step preempt_fuse$f 150 env REEF_FUSE_ATTENTION=$f $R bench preempt --device cuda --be bert_base --modes wait,reset,reef --json $OUT/preempt_fuse$f.json
done
for i in 1 2; do
  for f in 0 1; do
    step bert_fuse${f}_$i 120 env REEF_TACTICS=rules REEF_FUSE_ATTENTION=$f $R bench models --models bert_base,bert_tiny --batches 1,8 --iters 30 --json $OUT/bert_fuse${f}_$i.json
  done
done
[ -n "${PROF:-}" ] && step prof_on 100 env REEF_TACTICS=rules $R bench models --models bert_base --batches 1,8 --iters 20 --kernels 6
grep -E "FAIL|attention|bert|passed" $OUT/selftest.log | tail -14
[ -n "${PROF:-}" ] && grep -E "kernels alone|^    [a-z_ -]+ +[0-9]+ kernels  RT" $OUT/prof_on.log | head -12
for f in 0 1; do echo "== preempt fuse=$f"; grep -v "^\s*$" $OUT/preempt_fuse$f.log | tail -8; done
for i in 1 2; do for f in 0 1; do echo "== bert fuse=$f run $i"; grep -E "^bert" $OUT/bert_fuse${f}_$i.log; done; done
cat $OUT/summary.txt
pack

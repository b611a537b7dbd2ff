#!/bin/bash
# DISB A-E and the trace in reef's modes and PyTorch's CUDA-graph baselines,
# one card (docs/RESULTS.md, Session 12). W= workloads, MODES= reef modes,
# ENVS= environment for reef, EXTRA= more `bench disb` arguments (e.g.
# --be-alone), SELFTEST=1 adds a selftest first, TORCH=0 leaves PyTorch out,
# REEF=0 leaves reef out (PyTorch only), DURATION= seconds per mode (3; 10
# resolves RT's mean better, see each table's 95% half-widths).
source scripts/device/common.sh
[ -f devrun/tactics.tgz ] && tar xzf devrun/tactics.tgz -C /tmp/p/cache
W=${W:-A B C D E trace}
[ -n "${SELFTEST:-}" ] && step selftest 150 $R selftest --preemptions 2 --seed 41
[ "${REEF:-1}" = 1 ] && for w in $W; do
  step disb_$w $((60 + 30 * ${DURATION:-3})) env ${ENVS:-} $R bench disb --workload workloads/$w.json --device cuda --duration ${DURATION:-3} --warmup 1 --modes ${MODES:-stream,reset,reef} ${EXTRA:-} --quiet --out $OUT/disb_$w
done
[ "${TORCH:-1}" = 1 ] && for w in $W; do
  step torch_$w 120 python3 scripts/torch_disb.py workloads/$w.json --policies seq,stream --variants graph --duration 3 --warmup 1 --out $OUT/torch_$w.json --markdown $OUT/torch_$w.md
done
[ -f $OUT/selftest.log ] && tail -3 $OUT/selftest.log
for w in $W; do echo "== $w"; cat $OUT/disb_$w/*.md 2>/dev/null | grep -E "^\||Exclusive-RT" | cut -c1-400; cat $OUT/torch_$w.md 2>/dev/null | grep "^|"; done
cat $OUT/summary.txt
pack

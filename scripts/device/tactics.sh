#!/bin/bash
# Rules against tuned tactics, with and without the wgmma tiles, PyTorch
# beside (docs/PERF.md, Session 12, call 2). M= picks the models, NOWG=1 skips wgmma.
source scripts/device/common.sh
M=${M:-bert_base,vgg19,resnet50,resnet152}
step bench_rules 120 env REEF_TACTICS=rules $R bench models --models $M --batches 1,8 --iters 20 --json $OUT/bench_rules.json
step tune 200 $R tune --models $M --batches 1,8
step bench_tune 120 env REEF_TACTICS=tune $R bench models --models $M --batches 1,8 --iters 20 --json $OUT/bench_tune.json
if [ -z "${NOWG:-}" ]; then
REEF_WGMMA=1 step tune_wg 200 $R tune --models $M --batches 1,8
REEF_WGMMA=1 step bench_tune_wg 120 env REEF_TACTICS=tune $R bench models --models $M --batches 1,8 --iters 20 --json $OUT/bench_tune_wg.json
fi
step torch 150 python3 scripts/torch_bench_models.py --models $M --batches 1,8 --iters 20 --json $OUT/torch.json
tar czf $OUT/tactics.tgz -C /tmp/p/cache tactics
for f in tune tune_wg; do echo "== $f"; tail -12 $OUT/$f.log 2>/dev/null; done
for f in bench_rules bench_tune bench_tune_wg torch; do echo "== $f"; grep -v "^\s*$" $OUT/$f.log 2>/dev/null | tail -12; done
cat $OUT/summary.txt
pack

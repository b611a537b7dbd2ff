#!/bin/bash
# The GEMM loaders and the wgmma matmul (docs/PERF.md, Session 13):
# correctness, model latency against the binary before (OLD=path, carried
# with its kernels in the same pack), the wgmma tiles under the rules and
# the tuner, an Nsight Compute pass over the wgmma matmul, PyTorch beside.
# M= picks the benchmarked models, MWG= those run with the wgmma tiles on;
# NCU=0 skips the profiles, NOWG=1 the wgmma steps, NOTORCH=1 PyTorch.
source scripts/device/common.sh
M=${M:-bert_base,vgg19,resnet50}
OLD=${OLD:-devrun/bin/reef_old}
B="bench models --models $M --batches 1,8 --iters 20"
step selftest 300 $R selftest --preemptions 2 --seed 47
[ -z "${NOWG:-}" ] && step selftest_wg 200 env REEF_WGMMA=1 REEF_TACTICS=rules $R selftest --models bert_tiny,bert_base,resnet_tiny --preemptions 2 --seed 43
[ -x "$OLD" ] && step bench_old 200 $OLD $B --json $OUT/bench_old.json
step bench_new 200 $R $B --json $OUT/bench_new.json
[ -x "$OLD" ] && step bert_old 100 $OLD bench models --models bert_base --batches 1 --iters 20 --kernels 4
step bert_new 100 $R bench models --models bert_base --batches 1 --iters 20 --kernels 4
[ -z "${NOWG:-}" ] && step bench_wg_rules 150 env REEF_WGMMA=1 REEF_TACTICS=rules $R bench models --models bert_base --batches 1,8 --iters 20 --kernels 6
[ -z "${NOWG:-}" ] && step bench_wg_tune 200 env REEF_WGMMA=1 $R bench models --models ${MWG:-bert_base,vgg19,resnet50} --batches 1,8 --iters 20 --json $OUT/bench_wg_tune.json
if [ "${NCU:-1}" != 0 ]; then
step ncu 300 env REEF_WGMMA=1 REEF_TACTICS=rules ncu --kernel-name regex:matmul_wg --launch-count 2 \
  --section SpeedOfLight --section WarpStateStats --section MemoryWorkloadAnalysis_Tables \
  --section Occupancy --section SchedulerStats \
  --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\\.ratio \
  $R bench models --models bert_base --batches 8 --iters 1
step ncu_attn 300 env REEF_TACTICS=rules ncu --kernel-name regex:'^matmul_tc_rt' --launch-count 2 \
  --section SpeedOfLight --section WarpStateStats --section LaunchStats --section SchedulerStats \
  --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\\.ratio \
  $R bench models --models bert_base --batches 1 --iters 1
fi
[ -z "${NOTORCH:-}" ] && step torch 200 python3 scripts/torch_bench_models.py --models $M --batches 1,8 --iters 20 --json $OUT/torch.json
for f in selftest selftest_wg; do echo "== $f"; grep -E "FAIL|passed" $OUT/$f.log | tail -5; done
for f in bench_old bench_new bench_wg_tune torch; do echo "== $f"; grep -E "^(bert|vgg|resnet|dense|incep|mobile|model)" $OUT/$f.log 2>/dev/null | head -14; done
for f in bert_old bert_new; do echo "== $f"; grep -E "^    [a-z_]+ .*kernels  RT" $OUT/$f.log | head -6; done
echo "== bench_wg_rules"; grep -E "matmul" $OUT/bench_wg_rules.log | head -8
for f in ncu ncu_attn; do echo "== $f"; grep -E "^  [a-z_]+ \(|Duration|Compute \(SM\)|Bank|bank|No Eligible|Registers Per|Grid Size|Achieved Occ|stalled.*ratio +[0-9.]*[1-9]" $OUT/$f.log 2>/dev/null | head -40; done
cat $OUT/summary.txt
pack

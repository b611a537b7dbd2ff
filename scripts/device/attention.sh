#!/bin/bash
# Fused attention (docs/PERF.md, Session 14): correctness, then BERT with the
# fusion off and on (REEF_FUSE_ATTENTION=0 lowers attention as before; one
# binary, fixed tactics, runs interleaved), per-family kernel profiles, and
# an Nsight Compute pass over the attention kernel. M= picks the models;
# NCU=0 skips the profile; GEMM=1 also profiles bert_base's first weight
# matmuls.
source scripts/device/common.sh
M=${M:-bert_base}
B="bench models --models $M --batches 1,8 --iters 30"
step selftest 300 $R selftest --preemptions 2 --seed 53
for i in 1 2; do
  step off_$i 150 env REEF_TACTICS=rules REEF_FUSE_ATTENTION=0 $R $B --json $OUT/off_$i.json
  step on_$i 150 env REEF_TACTICS=rules $R $B --json $OUT/on_$i.json
done
step prof_off 100 env REEF_TACTICS=rules REEF_FUSE_ATTENTION=0 $R bench models --models bert_base --batches 1,8 --iters 20 --kernels 6
step prof_on 100 env REEF_TACTICS=rules $R bench models --models bert_base --batches 1,8 --iters 20 --kernels 6
if [ "${NCU:-1}" != 0 ]; then
step ncu 200 env REEF_TACTICS=rules ncu --kernel-name regex:'^attention_rt' --launch-count 1 \
  --section SpeedOfLight --section WarpStateStats --section LaunchStats --section SchedulerStats \
  --section MemoryWorkloadAnalysis_Tables --section Occupancy \
  --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\\.ratio \
  $R bench models --models bert_base --batches 1 --iters 1
fi
if [ -n "${GEMM:-}" ]; then
step ncu_gemm 200 env REEF_TACTICS=rules ncu --kernel-name regex:'^matmul_tc_w_rt' --launch-count 4 \
  --section SpeedOfLight --section WarpStateStats --section LaunchStats --section SchedulerStats \
  --section MemoryWorkloadAnalysis_Tables --section Occupancy \
  --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\\.ratio \
  $R bench models --models bert_base --batches 1 --iters 1
fi
echo "== selftest"; grep -E "FAIL|attention|passed" $OUT/selftest.log | tail -12
for f in off_1 on_1 off_2 on_2; do echo "== $f"; grep -E "^(bert|vgg|resnet|dense|incep|mobile)" $OUT/$f.log | head -8; done
for f in prof_off prof_on; do echo "== $f"; grep -E "kernels alone|^    [a-z_ -]+ +[0-9]+ kernels  RT" $OUT/$f.log | head -20; done
echo "== ncu"; grep -E "^  [a-z_]+ \(|Duration|Compute \(SM\)|Bank|bank|No Eligible|Registers Per|Grid Size|Achieved Occ|Block Limit|stalled.*ratio +[0-9.]*[1-9]" $OUT/ncu.log 2>/dev/null | head -40
echo "== ncu_gemm"; grep -E "^  [a-z_]+ \(|Duration|Compute \(SM\)|Memory Throughput|No Eligible|Registers Per|Grid Size|Achieved Occ|Issued Warp|stalled.*ratio +[0-9.]*[1-9]" $OUT/ncu_gemm.log 2>/dev/null | head -80
cat $OUT/summary.txt
pack

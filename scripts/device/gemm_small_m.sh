#!/bin/bash
# Small-M GEMM experiments (docs/PERF.md, Session 15): the binary as built
# beside
#   - devrun/bin/reef_ms4, reef_ms2: built with geometry::MIN_SPLIT_STEPS = 4
#     and 2 (finer K splits: more blocks per SM for bert_base's batch-1
#     weight matmuls; only that constant differs);
#   - REEF_NVRTC_DEFINES=REEF_LDMATRIX=1 (ldmatrix fragment loads) and
#     REEF_GEMM_STAGES=4 (a fourth cp.async stage), each alone and together.
# Fixed tactics, runs interleaved. Pack every variant's kernels first:
#   for d in "" REEF_LDMATRIX=1 REEF_GEMM_STAGES=4 REEF_LDMATRIX=1,REEF_GEMM_STAGES=4; do
#     REEF_NVRTC_DEFINES=$d REEF_CACHE_DIR=/tmp/pack/cache reef compile --arch 9.0; done
# PART=1: selftest with every change at once, then bert_base (batch 1 and 8).
# PART=2: the DISB CNNs at batch 1, and Nsight Compute on bert_base's first
# four weight matmuls (bytes through L2 and DRAM).
source scripts/device/common.sh
PART=${PART:-1}
L=REEF_LDMATRIX=1; S=REEF_GEMM_STAGES=4
run() {  # run NAME BINARY DEFINES ARGS...
  local name=$1 bin=$2 defs=$3; shift 3
  step $name 200 env REEF_TACTICS=rules REEF_NVRTC_DEFINES=$defs $bin "$@" --json $OUT/$name.json
}
if [ $PART = 1 ]; then
  step selftest 300 env REEF_NVRTC_DEFINES=$L,$S devrun/bin/reef_ms2 selftest --preemptions 2 --seed 61
  B="bench models --models bert_base --batches 1,8 --iters 20"
  for i in 1 2; do
    run base_$i $R "" $B
    run ms4_$i devrun/bin/reef_ms4 "" $B
    run ms2_$i devrun/bin/reef_ms2 "" $B
    run ldsm_$i $R $L $B
    run st4_$i $R $S $B
    run both_$i $R $L,$S $B
  done
  echo "== selftest"; grep -E "FAIL|passed" $OUT/selftest.log | tail -6
  for v in base ms4 ms2 ldsm st4 both; do for i in 1 2; do
    echo "== ${v}_$i"; grep -E "^bert" $OUT/${v}_$i.log | head -4; done; done
else
  B="bench models --models vgg19,resnet152,densenet201,inception_v3 --batches 1 --iters 20"
  for i in 1 2; do
    run base_$i $R "" $B
    run ms4_$i devrun/bin/reef_ms4 "" $B
    run both_$i $R $L,$S $B
  done
  N="ncu --kernel-name regex:^matmul_tc_w_rt --launch-count 4 --metrics \
gpu__time_duration.sum,lts__t_bytes.sum,dram__bytes.sum,launch__grid_size,sm__warps_active.avg.pct_of_peak_sustained_active,smsp__issue_active.avg.per_cycle_active"
  step ncu_base 150 env REEF_TACTICS=rules $N $R bench models --models bert_base --batches 1 --iters 1
  step ncu_ms4 150 env REEF_TACTICS=rules $N devrun/bin/reef_ms4 bench models --models bert_base --batches 1 --iters 1
  step ncu_both 150 env REEF_TACTICS=rules REEF_NVRTC_DEFINES=$L,$S $N $R bench models --models bert_base --batches 1 --iters 1
  for v in base ms4 both; do for i in 1 2; do
    echo "== ${v}_$i"; grep -E "^(vgg|resnet|dense|incep)" $OUT/${v}_$i.log | head -4; done; done
  for f in ncu_base ncu_ms4 ncu_both; do echo "== $f"; grep -E "matmul_tc_w_rt|duration|bytes|grid_size|warps_active|issue_active" $OUT/$f.log | head -40; done
fi
cat $OUT/summary.txt
pack

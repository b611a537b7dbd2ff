#!/bin/bash
# Session 19, calls 2 and 3: Triton CUDA shared memory (issue 4). The
# selftest on this binary (SELFTEST=0 skips it); a CUDA-shm correctness
# check from PyTorch (HTTP, and stock tritonclient gRPC from the carried
# wheels) against `reef serve` in another process; then DISB $WL (`reset`,
# 6 s) in process against the same workload driven into that server over
# gRPC, for each transport of $KINDS (grpc: tensors in the messages;
# cudashm; sysshm: system shared memory), $ROUNDS rounds.
#   call 2: bash scripts/device/cuda_shm.sh                 (DISB A)
#   call 3: SELFTEST=0 WL=C ROUNDS=2 KINDS="cudashm grpc" \
#           MODELS=vgg19,resnet152,densenet201,inception_v3,bert_base bash scripts/device/cuda_shm.sh
# Carry target/release/reef, devrun/pack.tgz and .whl.
source scripts/device/common.sh
WL=${WL:-A}; ROUNDS=${ROUNDS:-2}; KINDS=${KINDS:-grpc cudashm sysshm}
MODELS=${MODELS:-vgg19,resnet152,bert_base}; CHECK=${CHECK:-vgg19 bert_base}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > $OUT/pip.log 2>&1 && export PYTHONPATH=/tmp/site
if [ "${SELFTEST:-1}" = 1 ]; then step selftest 300 $R selftest --device cuda; tail -1 $OUT/selftest.log; fi
A="--workload workloads/$WL.json --duration 6 --warmup 1 --quiet --modes reset --busy-poll 2"
step inproc_1 300 $R bench disb $A --device cuda --out $OUT/inproc_1
serve_up $MODELS --mode reset --allow-client-shm --busy-poll 2
step check 120 python3 scripts/device/cuda_shm_check.py $CHECK
grep -E "^(FAIL|SKIP|ALL|FAILED)" $OUT/check.log
S="--server http://127.0.0.1:8001"
declare -A FLAG=([grpc]="" [cudashm]="--cuda-shm" [sysshm]="--shm")
RUNS="inproc_1"
for i in $(seq 1 $ROUNDS); do for k in $KINDS; do
  step ${k}_$i 300 $R bench disb $A $S ${FLAG[$k]} --out $OUT/${k}_$i; RUNS="$RUNS ${k}_$i"
done; done
kill -TERM $SERVE; wait $SERVE
step inproc_2 300 $R bench disb $A --device cuda --out $OUT/inproc_2
for d in $RUNS inproc_2; do
  echo "== $d"; grep -E "^\| (rt-alone|reset)|RT queued|outside the server" $OUT/$d/*.md | cut -c1-200
done
pack

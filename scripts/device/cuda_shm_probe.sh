#!/bin/bash
# Session 19, calls 4 and 5: why DISB C through CUDA shared memory collapsed
# in call 3 (RT alone queued 74 ms in the server). Call 5: with the region
# pairs registered before the run and at most 32 of them (waits instead of
# registering under a backlog), and in-process baselines at the end. One server with C's models;
# CUDA-shm runs of A and C (4 s) before and after the PyTorch check
# (which maps memory of another, exiting process), with the pool's
# best-fit reuse (no re-registration on a request's path); nvidia-smi
# during one run. Carry target/release/reef, devrun/pack.tgz and .whl.
source scripts/device/common.sh
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl > $OUT/pip.log 2>&1 && export PYTHONPATH=/tmp/site
MODELS=vgg19,resnet152,densenet201,inception_v3,bert_base
serve_up $MODELS --mode reset --allow-client-shm --busy-poll 2
S="--server http://127.0.0.1:8001 --duration 4 --warmup 1 --quiet --modes reset --busy-poll 2"
RUNS=""
run() { step $1 120 $R bench disb --workload workloads/$2.json $S $3 --out $OUT/$1; RUNS="$RUNS $1"; }
run a_cuda_1 A --cuda-shm
(sleep 6; nvidia-smi --query-compute-apps=pid,used_memory --format=csv > $OUT/apps.txt; nvidia-smi -q -d PERFORMANCE,UTILIZATION > $OUT/smi.txt) &
run c_cuda_1 C --cuda-shm
run c_grpc_1 C ""
step check 120 python3 scripts/device/cuda_shm_check.py vgg19 bert_base
grep -E "^(FAIL|SKIP|ALL|FAILED)" $OUT/check.log
run a_cuda_2 A --cuda-shm
run c_cuda_2 C --cuda-shm
kill -TERM $SERVE; wait $SERVE
I="--duration 4 --warmup 1 --quiet --modes reset --busy-poll 2 --device cuda"
step a_inproc 120 $R bench disb --workload workloads/A.json $I --out $OUT/a_inproc; RUNS="$RUNS a_inproc"
step c_inproc 120 $R bench disb --workload workloads/C.json $I --out $OUT/c_inproc; RUNS="$RUNS c_inproc"
grep -h registered $OUT/*_cuda_*.log
for d in $RUNS; do
  echo "== $d"; grep -E "^\| (rt-alone|reset)|RT queued|outside the server" $OUT/$d/*.md | cut -c1-160
done
cat $OUT/apps.txt
pack

#!/bin/bash
# Session 29, call 1: DISB A and C (`reset`, 6 s after 1 s) driven into
# `reef serve` in another process over HTTP on its Unix socket, one
# busy-polling worker on each side, inputs through CUDA shared memory and
# the outputs either through CUDA shared memory too (`--cuda-shm`) or
# through system shared memory (`--cuda-shm --host-outputs`), interleaved;
# gRPC with host outputs once; in process before and after. DISB D in
# `reset` and `reef` with BE I/O on its thread and inline, twice. Issue
# 3's drain-first row again (`reset:drain`, 200 requests). Then the
# selftest with the default kernels and with the FP32, 3xTF32 and wgmma
# sets. Carry target/release/reef and devrun/pack.tgz.
source scripts/device/common.sh
A="--duration 6 --warmup 1 --quiet --modes reset"
M=vgg19,resnet152,densenet201,inception_v3,bert_base
G="unix:/tmp/reef-grpc.sock --protocol grpc"; H="unix:/tmp/reef-http.sock --protocol http"
step inproc_A1 300 $R bench disb $A --workload workloads/A.json --busy-poll 1 --device cuda --out $OUT/inproc_A1
RUNS=inproc_A1
serve_up $M --mode reset --allow-client-shm --busy-poll 1 --grpc-uds /tmp/reef-grpc.sock --http-uds /tmp/reef-http.sock
for run in "cuda_A1 A $H" "host_A1 A $H --host-outputs" "host_A2 A $H --host-outputs" "cuda_A2 A $H" \
           "grpchost_A1 A $G --host-outputs" "cuda_C1 C $H" "host_C1 C $H --host-outputs"; do
  set -- $run; name=$1 w=$2; shift 2
  step $name 300 $R bench disb $A --workload workloads/$w.json --busy-poll 1 --cuda-shm --server "$@" --out $OUT/$name
  RUNS="$RUNS $name"
done
kill -TERM $SERVE; wait $SERVE
step inproc_A2 300 $R bench disb $A --workload workloads/A.json --busy-poll 1 --device cuda --out $OUT/inproc_A2
step inproc_C1 300 $R bench disb $A --workload workloads/C.json --busy-poll 1 --device cuda --out $OUT/inproc_C1
for i in 1 2; do
  step disb_D$i 300 $R bench disb --workload workloads/D.json --device cuda --duration 3 --warmup 1 --quiet \
    --modes reset,reset:inline,reef,reef:inline --out $OUT/disb_D$i
done
step drain 200 $R bench preempt --device cuda --max-gap-ms 6 --requests 200 --modes reset:drain --json $OUT/drain.json
step selftest 200 $R selftest --preemptions 2 --seed 2901
step selftest_f32 200 env REEF_PRECISION=f32 $R selftest --preemptions 1 --seed 2902
step selftest_tf32x3 200 env REEF_PRECISION=tf32x3 $R selftest --preemptions 1 --seed 2903
step selftest_wgmma 200 env REEF_WGMMA=1 $R selftest --preemptions 1 --seed 2904
for d in $RUNS inproc_A2 inproc_C1; do
  echo "== $d"; grep -E "^\| (rt-alone|reset) |outside the server, means" $OUT/$d/*.md | cut -c1-330
done
for i in 1 2; do echo "== disb_D$i"; grep -E "^\| " $OUT/disb_D$i/*.md | head -8 | cut -c1-200; done
report_preempt drain
for f in selftest selftest_f32 selftest_tf32x3 selftest_wgmma; do
  echo "== $f"; grep -E "^scheduler|FAIL|passed" $OUT/$f.log | tail -4
done
cat $OUT/summary.txt
pack

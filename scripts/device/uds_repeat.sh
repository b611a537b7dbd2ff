#!/bin/bash
# Session 20, call 3: the best transport of call 2 (gRPC over the Unix
# socket, one busy-polling worker on each side, CUDA shared memory) on
# another host, beside TCP with two workers (session 19's setup) and the
# tensors in the messages over both; DISB A and C (`reset`, 6 s); in process
# before and after. Carry target/release/reef and devrun/pack.tgz.
source scripts/device/common.sh
A="--duration 6 --warmup 1 --quiet --modes reset"
M=vgg19,resnet152,densenet201,inception_v3,bert_base
U=unix:/tmp/reef-grpc.sock; T=http://127.0.0.1:8001
step inproc_A1 300 $R bench disb $A --workload workloads/A.json --busy-poll 1 --device cuda --out $OUT/inproc_A1
RUNS=inproc_A1
serve_up $M --mode reset --allow-client-shm --busy-poll 1 --grpc-uds /tmp/reef-grpc.sock
for run in "uds_cuda_A1 A $U --cuda-shm" "tcp_cuda_A1 A $T --cuda-shm" "uds_raw_A1 A $U" "tcp_raw_A1 A $T" \
           "uds_cuda_A2 A $U --cuda-shm" "uds_cuda_C1 C $U --cuda-shm"; do
  set -- $run; name=$1 w=$2; shift 2
  step $name 300 $R bench disb $A --workload workloads/$w.json --busy-poll 1 --server "$@" --out $OUT/$name
  RUNS="$RUNS $name"
done
kill -TERM $SERVE; wait $SERVE
serve_up $M --mode reset --allow-client-shm --busy-poll 2
step tcp2_cuda_A1 300 $R bench disb $A --workload workloads/A.json --busy-poll 2 --server $T --cuda-shm --out $OUT/tcp2_cuda_A1
kill -TERM $SERVE; wait $SERVE
step inproc_A2 300 $R bench disb $A --workload workloads/A.json --busy-poll 1 --device cuda --out $OUT/inproc_A2
step inproc_C1 300 $R bench disb $A --workload workloads/C.json --busy-poll 1 --device cuda --out $OUT/inproc_C1
for d in $RUNS tcp2_cuda_A1 inproc_A2 inproc_C1; do
  echo "== $d"; grep -E "^\| (rt-alone|reset) |outside the server, means" $OUT/$d/*.md | cut -c1-220
done
cat $OUT/summary.txt
pack

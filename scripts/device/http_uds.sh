#!/bin/bash
# Session 21, call 1: DISB A and C (`reset`, 6 s) driven into `reef serve`
# in another process through CUDA shared memory, over HTTP/1.1 (KServe
# REST) against gRPC, both on the server's Unix sockets, one busy-polling
# worker on each side, interleaved; HTTP over TCP once; in process before
# and after. Carry target/release/reef and devrun/pack.tgz.
source scripts/device/common.sh
A="--duration 6 --warmup 1 --quiet --modes reset"
M=vgg19,resnet152,densenet201,inception_v3,bert_base
G="unix:/tmp/reef-grpc.sock --protocol grpc"; H="unix:/tmp/reef-http.sock --protocol http"
HT="http://127.0.0.1:8000 --protocol http"
step inproc_A1 300 $R bench disb $A --workload workloads/A.json --busy-poll 1 --device cuda --out $OUT/inproc_A1
RUNS=inproc_A1
serve_up $M --mode reset --allow-client-shm --busy-poll 1 --grpc-uds /tmp/reef-grpc.sock --http-uds /tmp/reef-http.sock
for run in "grpc_A1 A $G" "http_A1 A $H" "grpc_A2 A $G" "http_A2 A $H" "httptcp_A1 A $HT" \
           "http_C1 C $H" "grpc_C1 C $G"; do
  set -- $run; name=$1 w=$2; shift 2
  step $name 300 $R bench disb $A --workload workloads/$w.json --busy-poll 1 --cuda-shm --server "$@" --out $OUT/$name
  RUNS="$RUNS $name"
done
kill -TERM $SERVE; wait $SERVE
step inproc_A2 300 $R bench disb $A --workload workloads/A.json --busy-poll 1 --device cuda --out $OUT/inproc_A2
step inproc_C1 300 $R bench disb $A --workload workloads/C.json --busy-poll 1 --device cuda --out $OUT/inproc_C1
for d in $RUNS inproc_A2 inproc_C1; do
  echo "== $d"; grep -E "^\| (rt-alone|reset) |outside the server, means" $OUT/$d/*.md | cut -c1-220
done
cat $OUT/summary.txt
pack

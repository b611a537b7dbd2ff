#!/bin/bash
# Session 21, call 2 (after drain_split.sh, call2.sh): HTTP against gRPC
# on the server's Unix sockets again, on another host: DISB A (`reset`,
# 6 s after 1 s of warm-up) driven into `reef serve` in another process through CUDA shared memory, two pairs
# interleaved, one busy-polling worker on each side; in process before and
# after. Carry target/release/reef and devrun/pack.tgz.
source scripts/device/common.sh
A="--duration 6 --warmup 1 --quiet --modes reset"
M=vgg19,resnet152
G="unix:/tmp/reef-grpc.sock --protocol grpc"; H="unix:/tmp/reef-http.sock --protocol http"
step inproc_A1 300 $R bench disb $A --workload workloads/A.json --busy-poll 1 --device cuda --out $OUT/inproc_A1
RUNS=inproc_A1
serve_up $M --mode reset --allow-client-shm --busy-poll 1 --grpc-uds /tmp/reef-grpc.sock --http-uds /tmp/reef-http.sock
for run in "http_A1 $H" "grpc_A1 $G" "grpc_A2 $G" "http_A2 $H"; do
  set -- $run; name=$1; shift
  step $name 300 $R bench disb $A --workload workloads/A.json --busy-poll 1 --cuda-shm --server "$@" --out $OUT/$name
  RUNS="$RUNS $name"
done
kill -TERM $SERVE; wait $SERVE
step inproc_A2 300 $R bench disb $A --workload workloads/A.json --busy-poll 1 --device cuda --out $OUT/inproc_A2
for d in $RUNS inproc_A2; do
  echo "== $d"; grep -hE "^\| (rt-alone|reset) |outside the server, means|inside the service" $OUT/$d/*.md | cut -c1-200
done
cat $OUT/summary.txt
pack

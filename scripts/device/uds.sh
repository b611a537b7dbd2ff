#!/bin/bash
# Session 20, call 2: gRPC over a Unix domain socket against loopback TCP
# (issue 4). frontend_overhead (an instantly answering service, system shared
# memory) over TCP and over the socket with 2 and 1 busy-polling workers;
# then DISB A (`reset`, 6 s) through CUDA shared memory into `reef serve` in
# another process, over TCP and over the socket, interleaved, twice, with 2
# and then 1 busy-polling workers on both sides; in process before and after.
# Carry target/release/reef, target/release/examples/frontend_overhead and
# devrun/pack.tgz.
source scripts/device/common.sh
F=./target/release/examples/frontend_overhead
for bp in 2 1; do for t in tcp uds; do
  step fo_${t}_bp$bp 120 $F --requests 2000 --shm --be-clients 0 --busy-poll $bp --only grpc $([ $t = uds ] && echo --uds)
done; done
A="--workload workloads/A.json --duration 6 --warmup 1 --quiet --modes reset"
step inproc_1 300 $R bench disb $A --busy-poll 2 --device cuda --out $OUT/inproc_1
RUNS=inproc_1
for bp in 2 1; do
  serve_up vgg19,resnet152 --mode reset --allow-client-shm --busy-poll $bp --grpc-uds /tmp/reef-grpc.sock
  for i in 1 2; do for t in tcp uds; do
    if [ $t = tcp ]; then S=http://127.0.0.1:8001; else S=unix:/tmp/reef-grpc.sock; fi
    step ${t}_bp${bp}_$i 300 $R bench disb $A --busy-poll $bp --server $S --cuda-shm --out $OUT/${t}_bp${bp}_$i
    RUNS="$RUNS ${t}_bp${bp}_$i"
  done; done
  kill -TERM $SERVE; wait $SERVE
done
step inproc_2 300 $R bench disb $A --busy-poll 2 --device cuda --out $OUT/inproc_2
for f in $OUT/fo_*.log; do echo "== $(basename $f)"; grep -E "^gRPC" $f; done
for d in $RUNS inproc_2; do
  echo "== $d"; grep -E "^\| (rt-alone|reset)|RT queued|outside the server" $OUT/$d/*.md | cut -c1-220
done
cat $OUT/summary.txt
pack

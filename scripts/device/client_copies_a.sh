#!/bin/bash
# Session 20, call 7: call 6's client comparison repeated on DISB A alone
# (new / old client interleaved, twice), and A in process.
# Carry target/release/reef, devrun/reef_3af10e8 and devrun/pack.tgz.
source scripts/device/common.sh
OLD=devrun/reef_3af10e8
A="--duration 6 --warmup 1 --quiet --modes reset --busy-poll 1 --workload workloads/A.json"
serve_up vgg19,resnet152 --mode reset --allow-client-shm --busy-poll 1 --grpc-uds /tmp/reef-grpc.sock
RUNS=""
for run in "new 1" "old 1" "new 2" "old 2"; do
  set -- $run
  if [ $1 = new ]; then X=$R; else X=$OLD; fi
  step $1_A_$2 60 $X bench disb $A --server unix:/tmp/reef-grpc.sock --cuda-shm --out $OUT/$1_A_$2
  RUNS="$RUNS $1_A_$2"
done
kill -TERM $SERVE; wait $SERVE
step inproc_A 60 $R bench disb $A --device cuda --out $OUT/inproc_A
for d in $RUNS inproc_A; do
  echo "== $d"; grep -E "^\| (rt-alone|reset) |outside the server, means" $OUT/$d/*.md | cut -c1-200
done
pack

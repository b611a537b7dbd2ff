#!/bin/bash
# Session 20, call 6: the bench client's CUDA shared memory copies, each
# buffer on a stream of its own and a BE request's copies on the blocking
# pool, against the client before (devrun/reef_3af10e8: every copy on the
# legacy default stream, on the runtime's worker). DISB C and A (`reset`,
# 6 s) through the Unix socket into one `reef serve` (this binary, one
# busy-polling worker), interleaved; C in process after.
# Carry target/release/reef, devrun/reef_3af10e8 and devrun/pack.tgz.
source scripts/device/common.sh
OLD=devrun/reef_3af10e8
A="--duration 6 --warmup 1 --quiet --modes reset --busy-poll 1"
M=vgg19,resnet152,densenet201,inception_v3,bert_base
S="--server unix:/tmp/reef-grpc.sock --cuda-shm"
serve_up $M --mode reset --allow-client-shm --busy-poll 1 --grpc-uds /tmp/reef-grpc.sock
RUNS=""
for run in "new C 1" "old C 1" "new C 2" "old C 2" "new A 1" "old A 1"; do
  set -- $run
  if [ $1 = new ]; then X=$R; else X=$OLD; fi
  step $1_$2_$3 120 $X bench disb $A --workload workloads/$2.json $S --out $OUT/$1_$2_$3
  RUNS="$RUNS $1_$2_$3"
done
kill -TERM $SERVE; wait $SERVE
step inproc_C 120 $R bench disb $A --workload workloads/C.json --device cuda --out $OUT/inproc_C
step inproc_A 120 $R bench disb $A --workload workloads/A.json --device cuda --out $OUT/inproc_A
for d in $RUNS inproc_C inproc_A; do
  echo "== $d"; grep -E "^\| (rt-alone|reset) |outside the server, means" $OUT/$d/*.md | cut -c1-200
done
cat $OUT/summary.txt
pack

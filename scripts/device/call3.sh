#!/bin/bash
# Session 21, call 3: the gpu tests (the drain timer's test, fixed); what
# timing the drains costs the preemption (`reef bench preempt --modes
# reset:drain` without and with --time-drains, interleaved by BE model);
# HTTP against gRPC on DISB C (two pairs on the server's Unix sockets,
# CUDA shared memory, one busy-polling worker each side; in process first).
# Carry target/release/reef, devrun/pack.tgz and devrun/bin/gpu_tests.
source scripts/device/common.sh
step gpu_tests 120 devrun/bin/gpu_tests --test-threads 1 --nocapture
for be in resnet152 densenet201 vgg19 inception_v3 bert_base; do
  for t in plain timed; do
    extra=; [ $t = timed ] && extra=--time-drains
    step preempt_${be}_$t 120 $R bench preempt --device cuda --be $be --modes reset:drain \
      --requests 80 --max-gap-ms 6 $extra
  done
done
A="--duration 6 --warmup 1 --quiet --modes reset"
M=vgg19,resnet152,densenet201,inception_v3,bert_base
G="unix:/tmp/reef-grpc.sock --protocol grpc"; H="unix:/tmp/reef-http.sock --protocol http"
step inproc_C1 300 $R bench disb $A --workload workloads/C.json --busy-poll 1 --device cuda --out $OUT/inproc_C1
RUNS=inproc_C1
serve_up $M --mode reset --allow-client-shm --busy-poll 1 --grpc-uds /tmp/reef-grpc.sock --http-uds /tmp/reef-http.sock
for run in "grpc_C1 $G" "http_C1 $H" "http_C2 $H" "grpc_C2 $G"; do
  set -- $run; name=$1; shift
  step $name 300 $R bench disb $A --workload workloads/C.json --busy-poll 1 --cuda-shm --server "$@" --out $OUT/$name
  RUNS="$RUNS $name"
done
kill -TERM $SERVE; wait $SERVE
echo "== gpu_tests"; grep -E "test result|FAILED|panicked|drain flagged" $OUT/gpu_tests.log | tail -4
echo "== preempt"; for f in $OUT/preempt_*.log; do echo "$(basename $f .log): $(grep '^| [a-z]' $f | grep -v 'BE model')"; done
for d in $RUNS; do
  echo "== $d"; grep -hE "^\| (rt-alone|reset) |outside the server, means|inside the service" $OUT/$d/*.md | cut -c1-200
done
cat $OUT/summary.txt
pack

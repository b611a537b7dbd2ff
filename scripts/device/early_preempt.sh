#!/bin/bash
# Session 17, call 2: RT launched before the BE drain (`:early`) against the
# drain-first order with each DISB BE model alone (RT resnet50, closed-loop
# BE; preemption latency and RT mean against RT alone), then where the gRPC
# RT cost goes (scripts/device/grpc_split.sh's runs: DISB A in process,
# through gRPC and gRPC + shm, every front-end worker polling, reef_timing).
# One card. Carry target/release/reef and devrun/pack.tgz.
source scripts/device/common.sh
step preempt 200 $R bench preempt --device cuda --modes reset,reset:early,reef,reef:early --requests 80 --max-gap-ms 6 --json $OUT/preempt.json
D="bench disb --workload workloads/A.json --device cuda --duration 3 --warmup 1 --modes reset,reset:early --quiet"
for i in 1 2; do
  step inproc_$i 60 $R $D --out $OUT/inproc_$i
  step grpc_bp2_$i 60 $R $D --via-grpc --busy-poll 2 --out $OUT/grpc_bp2_$i
  step shm_bp2_$i 60 $R $D --via-grpc --shm --busy-poll 2 --out $OUT/shm_bp2_$i
done
echo "== preempt"; cat $OUT/preempt.log | grep -E "^\|" | cut -c1-220
for i in 1 2; do for k in inproc grpc_bp2 shm_bp2; do
  echo "== ${k}_$i"; cat $OUT/${k}_$i/*.md 2>/dev/null | grep -E "^\| (rt-alone|reset)|inside the service|RT queued" | cut -d'|' -f2,3,6,8,10,13,14 | cut -c1-200; done; done
cat $OUT/summary.txt
pack

#!/bin/bash
# Issue 4: where the gRPC RT cost goes. DISB A in `reset` and `reef` modes in
# process, through gRPC and through gRPC with shared memory (every front-end
# worker busy-polling, --busy-poll 2); the clients ask for reef_timing, so
# the report splits each RT mean into inside the service and outside it.
# Interleaved, one card. Carry target/release/reef and devrun/pack.tgz.
source scripts/device/common.sh
D="bench disb --workload workloads/A.json --device cuda --duration 3 --warmup 1 --modes reset,reef --quiet"
for i in 1 2; do
  step inproc_$i 60 $R $D --out $OUT/inproc_$i
  step grpc_bp2_$i 60 $R $D --via-grpc --busy-poll 2 --out $OUT/grpc_bp2_$i
  step shm_bp2_$i 60 $R $D --via-grpc --shm --busy-poll 2 --out $OUT/shm_bp2_$i
done
for i in 1 2; do for k in inproc grpc_bp2 shm_bp2; do
  echo "== ${k}_$i"; cat $OUT/${k}_$i/*.md 2>/dev/null | grep -E "^\| (reset|reef) |inside the service" | cut -c1-200; done; done
cat $OUT/summary.txt
pack

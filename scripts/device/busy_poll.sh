#!/bin/bash
# Issue 4: RT latency through gRPC against in process, DISB A in `reset`
# mode, with the busy-polling front end as built (every worker busy-polls:
# `--busy-poll N` = N workers) beside devrun/bin/reef_head (N busy pollers
# beside one sleeping worker per core). Interleaved, one card.
# Carry target/release/reef, devrun/bin/reef_head and devrun/pack.tgz.
source scripts/device/common.sh
H=devrun/bin/reef_head
D="bench disb --workload workloads/A.json --device cuda --duration 3 --warmup 1 --modes reset --quiet"
for i in 1 2; do
  step inproc_$i 60 $R $D --out $OUT/inproc_$i
  step grpc_bp0_$i 60 $R $D --via-grpc --out $OUT/grpc_bp0_$i
  step grpc_head_bp2_$i 60 $H $D --via-grpc --busy-poll 2 --out $OUT/grpc_head_bp2_$i
  step grpc_bp2_$i 60 $R $D --via-grpc --busy-poll 2 --out $OUT/grpc_bp2_$i
  step grpc_bp4_$i 60 $R $D --via-grpc --busy-poll 4 --out $OUT/grpc_bp4_$i
  step shm_head_bp2_$i 60 $H $D --via-grpc --shm --busy-poll 2 --out $OUT/shm_head_bp2_$i
  step shm_bp2_$i 60 $R $D --via-grpc --shm --busy-poll 2 --out $OUT/shm_bp2_$i
  step shm_bp4_$i 60 $R $D --via-grpc --shm --busy-poll 4 --out $OUT/shm_bp4_$i
done
for i in 1 2; do for k in inproc grpc_bp0 grpc_head_bp2 grpc_bp2 grpc_bp4 shm_head_bp2 shm_bp2 shm_bp4; do
  printf '%-18s ' ${k}_$i; cat $OUT/${k}_$i/*.md 2>/dev/null | grep "^| reset" | cut -d'|' -f3-7,10-11; done; done
cat $OUT/summary.txt
pack

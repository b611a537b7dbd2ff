#!/bin/bash
# Issue 4's server overhead and issue 3's preemption latency with the
# current kernels (docs/PERF.md, Session 13): DISB A in `reset` mode in
# process, through gRPC, and through gRPC with system shared memory and
# busy polling; then `reef bench preempt` over the five DISB BE models.
source scripts/device/common.sh
D="bench disb --workload workloads/A.json --device cuda --duration 3 --warmup 1 --modes reset --quiet"
step inproc 120 $R $D --out $OUT/inproc
step grpc 120 $R $D --via-grpc --out $OUT/grpc
step grpc_shm 120 $R $D --via-grpc --shm --busy-poll 2 --out $OUT/grpc_shm
step preempt 240 $R bench preempt --device cuda --json $OUT/preempt.json
for f in inproc grpc grpc_shm; do echo "== $f"; cat $OUT/$f/*.md 2>/dev/null | grep "^|" | grep -v -- "---"; done
echo "== preempt"; grep -v "^\s*$" $OUT/preempt.log | tail -25
cat $OUT/summary.txt
pack

#!/bin/bash
# Session 18, call 1: the selftest's folded preemption checks (cut_at_random,
# first GPU run) and the gpu tests; the RT input upload three ways
# (upload_bench.py); then BE depth settled by interleaved repeats: DISB C and
# E with `reset` (RT first, depth 2), `reset:depth4` and `reset:drain`, one
# process each, rounds interleaved; and DISB A through gRPC (with and
# without system shared memory) with the RT time outside the server split
# into client, request and response legs. One card.
# Carry target/release/reef, devrun/bin/gpu_tests, devrun/pack.tgz.
source scripts/device/common.sh
step selftest 200 $R selftest --preemptions 3 --seed 181
step gpu_tests 120 devrun/bin/gpu_tests --test-threads 1
step upload 60 python3 scripts/device/upload_bench.py
B="bench disb --device cuda --duration 3 --warmup 1 --quiet"
for i in ${ROUNDS:-1 2}; do for w in C E; do for m in reset reset:depth4 reset:drain; do
  n=${w}_${m/:/_}_$i
  step $n 60 $R $B --workload workloads/$w.json --modes $m --out $OUT/$n
done; done; done
D="bench disb --workload workloads/A.json --device cuda --duration 3 --warmup 1 --modes reset --quiet --via-grpc --busy-poll 2"
step grpc 60 $R $D --out $OUT/grpc
step grpc_shm 60 $R $D --shm --out $OUT/grpc_shm
echo "== selftest"; grep -E "FAIL|passed" $OUT/selftest.log | tail -5
echo "== gpu_tests"; grep -E "test result|FAILED|panicked" $OUT/gpu_tests.log | tail -3
echo "== upload"; cat $OUT/upload.log
for i in ${ROUNDS:-1 2}; do for w in C E; do for m in reset reset:depth4 reset:drain; do
  n=${w}_${m/:/_}_$i
  echo "== $n"; cat $OUT/$n/*.md 2>/dev/null | grep -E "^\| (rt-alone|reset)" | cut -d'|' -f2,3,6,8,9,10,11
done; done; done
for k in grpc grpc_shm; do
  echo "== $k"; cat $OUT/$k/*.md 2>/dev/null | grep -E "^\| (rt-alone|reset)|inside the service|outside the server|RT queued" | cut -d'|' -f2,3,6,8,10 | cut -c1-260
done
cat $OUT/summary.txt
pack

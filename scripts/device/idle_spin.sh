#!/bin/bash
# Session 18, call 2: the scheduling thread's polling after its work
# (SchedConfig::idle_spin, 20 ms on a GPU by default) against sleeping at
# once (--idle-spin-ms 0): DISB A and C in process, and A through gRPC
# (busy-poll 2) with the RT time outside the server split in legs; one
# process per run, the two settings interleaved, twice. One card.
# Carry target/release/reef and devrun/pack.tgz.
source scripts/device/common.sh
B="bench disb --device cuda --duration 3 --warmup 1 --quiet --modes reset"
for i in 1 2; do
  for w in A C; do for s in 20 0; do
    step ${w}_spin${s}_$i 60 $R $B --workload workloads/$w.json --idle-spin-ms $s --out $OUT/${w}_spin${s}_$i
  done; done
  for s in 20 0; do
    step grpc_spin${s}_$i 60 $R $B --workload workloads/A.json --via-grpc --busy-poll 2 --idle-spin-ms $s --out $OUT/grpc_spin${s}_$i
  done
done
for i in 1 2; do for k in A C grpc; do for s in 20 0; do
  n=${k}_spin${s}_$i
  echo "== $n"; cat $OUT/$n/*.md 2>/dev/null | grep -E "^\| (rt-alone|reset)|inside the service|outside the server|RT queued" | cut -d'|' -f2,3,6,8,10,11 | cut -c1-240
done; done; done
cat $OUT/summary.txt
pack

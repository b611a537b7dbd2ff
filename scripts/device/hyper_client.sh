#!/bin/bash
# Session 30, call 1 (issue 4, then issue 5). The floor of an HTTP round
# trip on this host (examples/http_round_trip: reqwest, hyper's connection
# API, a raw spinning socket). DISB A (`reset`, 6 s after 1 s) driven into
# `reef serve` (HTTP on its Unix socket, inputs through CUDA shared memory,
# outputs through system shared memory, one busy-polling worker on each
# side): server and client of c2ce1a3 (devrun/bin/reef_base: reqwest; the
# shared input copy waited for) and of this binary (hyper; the copy queued
# on the device), crossed: server base (base, new), server new (new, base,
# new), server base (base). In process before and after. CUDA shared memory
# checked against JSON answers (cuda_shm_check.py), the selftest, then DISB
# A-E and the trace with each RT mean's 95% half-width (stream, reset,
# reef, BE alone; 3 s per mode). Carry target/release/reef and devrun/
# (pack.tgz, bin/reef_base, bin/http_round_trip).
source scripts/device/common.sh
A="--duration 6 --warmup 1 --quiet --modes reset --busy-poll 1"
H="--server unix:/tmp/reef-http.sock --protocol http --cuda-shm --host-outputs"
B=devrun/bin/reef_base
step round_trip 120 devrun/bin/http_round_trip --requests 1000 --rounds 3
step inproc_A1 120 $R bench disb $A --workload workloads/A.json --device cuda --out $OUT/inproc_A1
RUNS=inproc_A1
phase() { # SERVER_BINARY TAG CLIENT_RUNS...
  local server=$1 tag=$2; shift 2
  R=$server serve_up vgg19,resnet152 --mode reset --allow-client-shm --busy-poll 1 --http-uds /tmp/reef-http.sock
  local c
  for c in "$@"; do
    local bin=$R name=s${tag}_c$c
    [ "${c%%[0-9]*}" = base ] && bin=$B
    step $name 120 $bin bench disb $A --workload workloads/A.json $H --out $OUT/$name
    RUNS="$RUNS $name"
  done
  [ $tag = new2 ] && step shm_check 120 python3 scripts/device/cuda_shm_check.py vgg19 resnet152
  kill -TERM $SERVE; wait $SERVE
}
phase $B base1 base1 new1
phase $R new2 new2 base2 new3
phase $B base3 base3
step inproc_A2 120 $R bench disb $A --workload workloads/A.json --device cuda --out $OUT/inproc_A2
RUNS="$RUNS inproc_A2"
step selftest 200 $R selftest --preemptions 2 --seed 3001
for w in A B C D E trace; do
  step disb_$w 150 $R bench disb --workload workloads/$w.json --device cuda --duration 3 --warmup 1 \
    --modes stream,reset,reef --be-alone --quiet --out $OUT/disb_$w
done
cat $OUT/round_trip.log
for d in $RUNS; do
  echo "== $d"; grep -E "^\| reset |outside the server, means|RT queued" $OUT/$d/*.md | grep -v rt-alone | cut -c1-330
done
grep -E "PASS|FAIL" $OUT/shm_check.log | tail -8
grep -E "FAIL|passed" $OUT/selftest.log | tail -3
for w in A B C D E trace; do echo "== $w"; grep -E "^\|" $OUT/disb_$w/*.md | cut -c1-200; done
cat $OUT/summary.txt
pack

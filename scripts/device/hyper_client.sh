#!/bin/bash
# Session 30, call 1 (issue 4, then issue 5): the floor of an HTTP round
# trip on this host (examples/http_round_trip: reqwest, hyper's connection
# API, a raw spinning socket), then DISB A (`reset`, 6 s after 1 s) driven
# into one `reef serve` (HTTP on its Unix socket, inputs through CUDA
# shared memory, outputs through system shared memory, one busy-polling
# worker on each side) by the client of c2ce1a3 (reqwest, devrun/bin/reef_base)
# and this binary's (hyper), interleaved; in process before and after.
# Then DISB A-E and the trace with each RT mean's 95% half-width
# (stream, reset, reef, BE alone; 3 s per mode).
# Carry target/release/reef, devrun/ (pack.tgz, bin/reef_base,
# bin/http_round_trip).
source scripts/device/common.sh
A="--duration 6 --warmup 1 --quiet --modes reset --busy-poll 1"
H="--server unix:/tmp/reef-http.sock --protocol http --cuda-shm --host-outputs"
step round_trip 120 devrun/bin/http_round_trip --requests 1000 --rounds 3
step inproc_A1 120 $R bench disb $A --workload workloads/A.json --device cuda --out $OUT/inproc_A1
serve_up vgg19,resnet152 --mode reset --allow-client-shm --busy-poll 1 --http-uds /tmp/reef-http.sock
RUNS=inproc_A1
for run in "base_A1 devrun/bin/reef_base" "hyper_A1 $R" "hyper_A2 $R" "base_A2 devrun/bin/reef_base" \
           "base_A3 devrun/bin/reef_base" "hyper_A3 $R"; do
  set -- $run
  step $1 120 $2 bench disb $A --workload workloads/A.json $H --out $OUT/$1
  RUNS="$RUNS $1"
done
kill -TERM $SERVE; wait $SERVE
step inproc_A2 120 $R bench disb $A --workload workloads/A.json --device cuda --out $OUT/inproc_A2
RUNS="$RUNS inproc_A2"
for w in A B C D E trace; do
  step disb_$w 150 $R bench disb --workload workloads/$w.json --device cuda --duration 3 --warmup 1 \
    --modes stream,reset,reef --be-alone --quiet --out $OUT/disb_$w
done
cat $OUT/round_trip.log
for d in $RUNS; do
  echo "== $d"; grep -E "^\| reset |outside the server, means" $OUT/$d/*.md | cut -c1-330
done
for w in A B C D E trace; do echo "== $w"; grep -E "^\|" $OUT/disb_$w/*.md | cut -c1-200; done
cat $OUT/summary.txt
pack

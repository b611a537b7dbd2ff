#!/bin/bash
# Session 24, call 1: the preemption relay (REEF_RAISE=relay: a polling
# kernel turns a host store into the flag writes) against the default
# (one cuMemsetD32Async per flag). The gpu tests and `reef selftest` with
# the relay; `reef bench preempt` (RT resnet50, each DISB BE model, REEF's
# drain-first order with two and one BE kernel in flight, and the default
# RT-first reset and reef) memset, relay, relay, memset; DISB A and C in
# reset and reef, memset and relay. Carry target/release/reef,
# devrun/bin/gpu_tests, devrun/pack.tgz.
source scripts/device/common.sh
export RUST_LOG=warn,reef_cuda::relay=info
step gpu_tests 150 devrun/bin/gpu_tests --test-threads 1 --nocapture
step selftest 200 env REEF_RAISE=relay $R selftest --preemptions 2 --seed 2401
P="bench preempt --device cuda --modes reset:drain,reset:drain:depth1,reset,reef --requests 150 --max-gap-ms 6"
step pre_memset1 150 env REEF_RAISE=memset $R $P --json $OUT/pre_memset1.json
step pre_relay1 150 env REEF_RAISE=relay $R $P --json $OUT/pre_relay1.json
step pre_relay2 150 env REEF_RAISE=relay $R $P --json $OUT/pre_relay2.json
step pre_memset2 150 env REEF_RAISE=memset $R $P --json $OUT/pre_memset2.json
for w in A C; do for r in memset relay; do
  step disb_${w}_$r 150 env REEF_RAISE=$r $R bench disb --workload workloads/$w.json --device cuda \
    --duration 3 --warmup 1 --modes reset,reef --quiet --out $OUT/disb_${w}_$r
done; done
echo "== gpu_tests"; grep -E "test result|FAILED|panicked|relay," $OUT/gpu_tests.log | tail -8
echo "== selftest"; grep -E "FAIL|passed|relay" $OUT/selftest.log | tail -3
for f in pre_memset1 pre_relay1 pre_relay2 pre_memset2; do echo "== $f"; grep "^|" $OUT/$f.log | cut -d'|' -f2-9 | tail -n +3; grep -o "counts=.*" $OUT/$f.log | tail -1; done
for w in A C; do for r in memset relay; do echo "== $w $r"; cat $OUT/disb_${w}_$r/*.md 2>/dev/null | grep "^|" | cut -c1-200; grep -o "counts=.*" $OUT/disb_${w}_$r.log | tail -1; done; done
cat $OUT/summary.txt
pack

#!/bin/bash
# Session 24, call 2 (the same warm H100 as call 1): DISB C in reef and
# reset, memset and relay alternating, twice each (call 1's C reef row read
# RT +5.9% with the relay); then the relay with the told word in
# `reef bench preempt`. Carry as relay.sh.
source scripts/device/common.sh
export RUST_LOG=warn,reef_cuda::relay=info
for i in 1 2; do for r in relay memset; do
  step disb_C_${r}$i 150 env REEF_RAISE=$r $R bench disb --workload workloads/C.json --device cuda \
    --duration 3 --warmup 1 --modes reef,reset --quiet --out $OUT/disb_C_${r}$i
done; done
step pre_relay_told 150 env REEF_RAISE=relay REEF_BE_TOLD=1 $R bench preempt --device cuda \
  --modes reset:drain,reset:drain:depth1 --requests 150 --max-gap-ms 6 --json $OUT/pre_relay_told.json
for i in 1 2; do for r in relay memset; do echo "== C $r $i"; cat $OUT/disb_C_${r}$i/*.md 2>/dev/null | grep "^|" | cut -c1-200 | tail -n +3; grep -o "counts=.*" $OUT/disb_C_${r}$i.log | tail -1; done; done
echo "== pre_relay_told"; grep "^|" $OUT/pre_relay_told.log | cut -d'|' -f2-9 | tail -n +3
cat $OUT/summary.txt
pack

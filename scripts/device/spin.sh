#!/bin/bash
# Session 30, call 3 (issue 5): the open-loop clients' dispatch lag with a
# 200 us spin before each arrival (the old default) and 2 ms (the new),
# DISB D (`reset` and RT alone, 3 s after 1 s), interleaved twice.
# Carry target/release/reef, devrun/pack.tgz.
source scripts/device/common.sh
for run in "s200_1 200" "s2000_1 2000" "s2000_2 2000" "s200_2 200"; do
  set -- $run
  step $1 40 $R bench disb --workload workloads/D.json --device cuda --duration 3 --warmup 1 --modes reset \
    --dispatch-spin-us $2 --quiet --out $OUT/$1
done
for d in s200_1 s2000_1 s2000_2 s200_2; do
  echo "== $d"; grep -E "^\| (rt-alone|reset) |Dispatch lag" $OUT/$d/*.md | cut -c1-200
  python3 -c "import json,glob; j=json.load(open(glob.glob('$OUT/$d/*.json')[0])); print([(m['mode'], m['dispatch_lag_us']) for m in j['modes']])"
done
cat $OUT/summary.txt

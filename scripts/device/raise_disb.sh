#!/bin/bash
# Session 23, call 5: the raise's driver call in the default modes, where
# RT launches right after the raise (reset, reef): DISB A (one BE lane) and
# C (five) in process, 3 s after 1 s of warm-up, REEF_RAISE=memset (the
# default) and batch, alternated. Carry target/release/reef, devrun/pack.tgz.
source scripts/device/common.sh
for w in A C; do
  for r in memset batch; do
    step disb_${w}_$r 100 env REEF_RAISE=$r $R bench disb --workload workloads/$w.json --device cuda \
      --duration 3 --warmup 1 --modes reset,reef --quiet --out $OUT/disb_${w}_$r
  done
done
for w in A C; do for r in memset batch; do echo "== $w $r"; cat $OUT/disb_${w}_$r/*.md 2>/dev/null | grep "^|" | tail -3 | cut -c1-220; done; done
cat $OUT/summary.txt
pack

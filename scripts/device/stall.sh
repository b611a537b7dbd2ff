#!/bin/bash
# Session 31, call 1: checks; the scheduling loop's slowest passes in E
# (Session 30's one-off 28-32 ms RT stall under `reef`), `reset` and `reef`
# twice with 10 s windows; then the open-loop clients' dispatch spin, 200
# against 2000 us, on D (`reset`, 3 s), interleaved (Session 30's spin.sh).
# Carry target/release/reef, devrun/pack.tgz.
source scripts/device/common.sh
step selftest 120 $R selftest --preemptions 2 --seed 3101
for i in 1 2; do
  step stall_E$i 120 $R bench disb --workload workloads/E.json --device cuda --duration 10 --warmup 1 \
    --modes reset,reef --quiet --out $OUT/stall_E$i
done
for run in "s200_1 200" "s2000_1 2000" "s2000_2 2000" "s200_2 200"; do
  set -- $run
  step $1 40 $R bench disb --workload workloads/D.json --device cuda --duration 3 --warmup 1 --modes reset \
    --dispatch-spin-us $2 --quiet --out $OUT/$1
done
echo "== selftest"; grep -E "FAIL|passed" $OUT/selftest.log | tail -3
for d in stall_E1 stall_E2 s200_1 s2000_1 s2000_2 s200_2; do
  echo "== $d"; grep -E "^\| (rt-alone|reset|reef) " $OUT/$d/*.md | cut -c1-150
  grep -E "scheduling thread" $OUT/$d/*.md | cut -c1-600
  python3 - $OUT/$d <<'PY'
import json, glob, sys
j = json.load(open(glob.glob(sys.argv[1] + '/*.json')[0]))
for m in j['modes']:
    s = m.get('sched') or {}
    steps = [(round(t['us']), round(t['at_ms']), t['rt_queued'], t['rt_running'],
              [(p, round(u)) for p, u in t['phases'] if u >= 50]) for t in s.get('slowest_steps', [])[:3]]
    print(m['mode'], 'lag', m['dispatch_lag_us'], 'rt max', round(m['rt']['max_ms'], 2),
          'queued max', round((m.get('rt_queued') or {}).get('max_ms', 0), 2), 'contexts', s.get('contexts_made'), steps)
PY
done
cat $OUT/summary.txt

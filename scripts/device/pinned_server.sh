#!/bin/bash
# Session 32's call (not run: no device could be had; for the next one):
# the self-test; then issue 4 with the benchmark's inputs in pinned memory
# (`--pinned-inputs`) against ordinary memory, in process and through one
# `reef serve` (HTTP on its Unix socket, inputs by CUDA shared memory,
# outputs by system shared memory, one busy-polling worker a side),
# `reset`, A (twice), D and E, 3 s after 1 s; through the server the RT
# requests go through the runtime's HTTP client and through the polling
# client (`--rt-client poll`). Each mode's SM clock (NVML, every 5 ms)
# is in its JSON (`sm_clock`) and in the table below. Also A's BE task
# alone in `stream`, `reset`, `reset:depth4` and `reef` (the cost of the
# BE lanes' depth with no RT work).
# Carry target/release/reef, devrun/pack.tgz and devrun/bin/gpu_tests
# (`cargo test --release -p reef-cuda --test gpu --no-run`, copied).
# Two calls, each within the device's 10 minutes: `pinned_server.sh local`
# (checks, in process, late raise, BE alone) and `pinned_server.sh server`.
source scripts/device/common.sh
st() { step "$@"; }
PART=${1:-local}
if [ $PART = local ]; then
st gpu_tests 180 devrun/bin/gpu_tests --test-threads 1 --nocapture
st selftest 120 $R selftest --preemptions 2 --seed 3201
A="--duration 3 --warmup 1 --quiet --modes reset --busy-poll 1"
H="--server unix:/tmp/reef-http.sock --protocol http --cuda-shm --host-outputs"
for w in A D E; do
  for p in plain pinned; do
    f=""; [ $p = pinned ] && f=--pinned-inputs
    n=in_${p}_$w; [ -d $OUT/$n ] && n=${n}2
    st $n 90 $R bench disb $A --workload workloads/$w.json --device cuda $f --out $OUT/$n
  done
done
# BE alone in each mode (A's resnet152 without the RT task): what the BE
# lanes' depth of two kernels costs with no preemption at all.
python3 -c "
import json; w = json.load(open('workloads/A.json'))
w['name'] = 'A-be'; w['tasks'] = [t for t in w['tasks'] if t['priority'] == 'be']
json.dump(w, open('/tmp/A-be.json', 'w'))"
st be_only_A 90 $R bench disb --duration 3 --warmup 1 --quiet --busy-poll 1 --workload /tmp/A-be.json \
  --device cuda --modes stream,reset,reset:depth4,reef --out $OUT/be_only_A
# The BE flags raised after the RT inputs (`:late`) against at once, A and B;
# with `stream` and one BE lane beside RT work (last measured in Session 12,
# 92.6% of `stream` on A, with slower kernels).
for w in A B; do
  st late_$w 120 $R bench disb --duration 3 --warmup 1 --quiet --busy-poll 1 --workload workloads/$w.json \
    --device cuda --modes stream,reset,reset:late,reef,reef:late,reef:beside1,reef:beside1:tile20 --out $OUT/late_$w
done
fi
if [ $PART = server ]; then
st serve_start 1 true
serve_up vgg19,resnet152,densenet201,inception_v3,bert_base --mode reset --allow-client-shm --busy-poll 1 \
  --http-uds /tmp/reef-http.sock
for run in "A runtime" "A poll" "D runtime" "D poll" "E runtime" "E poll" "A poll" "A runtime"; do
  set -- $run
  for p in pinned plain; do
    f=""; [ $p = pinned ] && f=--pinned-inputs
    n=srv_${2}_${p}_$1; [ -d $OUT/$n ] && n=${n}2
    st $n 60 $R bench disb $A --workload workloads/$1.json $H --rt-client $2 $f --out $OUT/$n
  done
done
kill -TERM $SERVE; wait $SERVE
fi
python3 - $OUT <<'PY'
import json, glob, sys, os
out = sys.argv[1]
def load(d):
    f = glob.glob(out + '/' + d + '/*.json')
    if not f:
        return None
    j = json.load(open(f[0]))
    r = {m['mode']: m for m in j['modes']}
    r['cmp'] = {c['mode']: c for c in j['comparison']}
    return r
g = lambda m, k: m[k]['mean_ms'] if m.get(k) else float('nan')
print('run | RT alone ms | reset RT ms | vs alone (95%) | client / request / response (readback) | queued | input | BE/s | contexts made | SM MHz alone / reset (mean, min)')
for d in sorted(os.listdir(out)):
    r = load(d) if os.path.isdir(out + '/' + d) else None
    if not r:
        continue
    a, m = r.get('rt-alone'), r['reset']
    c = r['cmp'].get('reset') or {}
    s = m.get('sched') or {}
    clk = lambda x: '%.0f, %.0f' % (x['sm_clock']['mean_mhz'], x['sm_clock']['min_mhz']) if x and x.get('sm_clock') else '-'
    print('%-18s | %.3f | %.3f | %s | %.3f / %.3f / %.3f (%.3f) | %.3f | %.3f | %.1f | %s | %s / %s' % (
        d, a['rt']['mean_ms'] if a else float('nan'), m['rt']['mean_ms'],
        '%+.1f%% ±%.1f' % (c.get('rt_mean_increase_pct') or float('nan'), c.get('rt_mean_increase_ci95_pct') or float('nan')),
        g(m, 'rt_client'), g(m, 'rt_request'), g(m, 'rt_response'), g(m, 'rt_readback'),
        g(m, 'rt_queued'), g(m, 'rt_input'), m['be_throughput_rps'], s.get('contexts_made'), clk(a), clk(m)))
PY
[ $PART = local ] && for w in A B; do echo "== late raise, $w"; grep "^|" $OUT/late_$w.log; done
[ $PART = local ] && echo "== BE alone (A's resnet152), req/s by mode" && grep "^|" $OUT/be_only_A.log | cut -d'|' -f2,10 | tail -n +3
[ $PART = local ] && report_checks
cat $OUT/summary.txt
pack

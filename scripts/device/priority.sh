#!/bin/bash
# Session 33's call, one call of at most ten minutes when machines are short:
# the self-test; issue 5 on A and B (`stream`, `reset`, the late raise,
# `reef`, one beside lane); issue 4 on A in process and through
# `reef serve` (HTTP on its Unix socket, CUDA shared memory inputs, system
# shared memory outputs), pinned and pageable inputs, the runtime's RT
# client and the polling one; A's BE task alone at depth 2 and 4.
# The longer version of the same is pinned_server.sh (two calls).
# Carry target/release/reef and devrun/pack.tgz (and devrun/bin/gpu_tests
# for the weight-sharing test).
source scripts/device/common.sh
st() { step "$@"; }
st selftest 150 $R selftest --preemptions 2 --seed 3301
# Session 34: one device copy of the weights across batch sizes (carry
# devrun/bin/gpu_tests, rebuilt after fa9f682, to run it).
[ -x devrun/bin/gpu_tests ] && st gpu_share 30 devrun/bin/gpu_tests batch_sizes_share --test-threads 1 --nocapture
for w in A B; do
  st late_$w 75 $R bench disb --duration 3 --warmup 1 --quiet --busy-poll 1 --workload workloads/$w.json \
    --device cuda --modes stream,reset,reset:late,reef,reef:beside1 --out $OUT/late_$w
done
A="--duration 3 --warmup 1 --quiet --modes reset --busy-poll 1 --workload workloads/A.json"
H="--server unix:/tmp/reef-http.sock --protocol http --cuda-shm --host-outputs"
st in_plain_A 45 $R bench disb $A --device cuda --out $OUT/in_plain_A
st in_pinned_A 45 $R bench disb $A --device cuda --pinned-inputs --out $OUT/in_pinned_A
st serve_start 1 true
serve_up vgg19,resnet152 --mode reset --allow-client-shm --busy-poll 1 --http-uds /tmp/reef-http.sock
for c in runtime poll; do
  for p in pinned plain; do
    f=""; [ $p = pinned ] && f=--pinned-inputs
    st srv_${c}_${p}_A 40 $R bench disb $A $H --rt-client $c $f --out $OUT/srv_${c}_${p}_A
  done
done
kill -TERM $SERVE; wait $SERVE
python3 -c "
import json; w = json.load(open('workloads/A.json'))
w['name'] = 'A-be'; w['tasks'] = [t for t in w['tasks'] if t['priority'] == 'be']
json.dump(w, open('/tmp/A-be.json', 'w'))"
st be_only_A 45 $R bench disb --duration 3 --warmup 1 --quiet --busy-poll 1 --workload /tmp/A-be.json \
  --device cuda --modes stream,reset,reset:depth4 --out $OUT/be_only_A
python3 - $OUT <<'PY'
import json, glob, sys, os
out = sys.argv[1]
g = lambda m, k: m[k]['mean_ms'] if m.get(k) else float('nan')
print('run | RT alone ms | reset RT ms | vs alone (95%) | client / request / response (readback) | queued | input | BE/s | SM MHz alone / reset (mean, min)')
for d in sorted(os.listdir(out)):
    f = glob.glob(out + '/' + d + '/*.json') if os.path.isdir(out + '/' + d) else []
    if not f or not (d.startswith('in_') or d.startswith('srv_')):
        continue
    j = json.load(open(f[0]))
    r = {m['mode']: m for m in j['modes']}
    c = {x['mode']: x for x in j['comparison']}.get('reset') or {}
    a, m = r.get('rt-alone'), r['reset']
    clk = lambda x: '%.0f, %.0f' % (x['sm_clock']['mean_mhz'], x['sm_clock']['min_mhz']) if x and x.get('sm_clock') else '-'
    print('%-18s | %.3f | %.3f | %s | %.3f / %.3f / %.3f (%.3f) | %.3f | %.3f | %.1f | %s / %s' % (
        d, a['rt']['mean_ms'] if a else float('nan'), m['rt']['mean_ms'],
        '%+.1f%% ±%.1f' % (c.get('rt_mean_increase_pct') or float('nan'), c.get('rt_mean_increase_ci95_pct') or float('nan')),
        g(m, 'rt_client'), g(m, 'rt_request'), g(m, 'rt_response'), g(m, 'rt_readback'),
        g(m, 'rt_queued'), g(m, 'rt_input'), m['be_throughput_rps'], clk(a), clk(m)))
PY
for w in A B; do echo "== $w"; grep "^|" $OUT/late_$w.log; grep -i "sm clock" $OUT/late_$w.log; done
echo "== BE alone (A's resnet152)"; grep "^|" $OUT/be_only_A.log | cut -d'|' -f2,10
echo "== selftest"; grep -E "FAIL|passed" $OUT/selftest.log | tail -4
[ -f $OUT/gpu_share.log ] && { echo "== gpu test: weights shared across batch sizes"; grep -E "test result|FAILED|panicked|SKIP" $OUT/gpu_share.log | tail -3; }
cat $OUT/summary.txt
pack

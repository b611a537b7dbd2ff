#!/bin/bash
# Session 31, call 3 (issue 4): RT requests through the server sent by the
# direct client (the open-loop thread writes each on a kept-alive HTTP
# connection, a reader thread spins for the answers) against the runtime's
# path (call 2's), on every workload; in process before and after. `reef
# serve` in another process (HTTP on its Unix socket, inputs through CUDA
# shared memory, outputs through system shared memory, one busy-polling
# worker on each side), `reset`, 3 s after 1 s.
# Carry target/release/reef, devrun/pack.tgz.
source scripts/device/common.sh
A="--duration 3 --warmup 1 --quiet --modes reset --busy-poll 1"
H="--server unix:/tmp/reef-http.sock --protocol http --cuda-shm --host-outputs"
for w in A D E; do
  step in_$w 60 $R bench disb $A --workload workloads/$w.json --device cuda --out $OUT/in_$w
done
serve_up vgg19,resnet152,densenet201,inception_v3,bert_base --mode reset --allow-client-shm --busy-poll 1 \
  --http-uds /tmp/reef-http.sock
for w in A D E; do
  step direct_$w 60 $R bench disb $A --workload workloads/$w.json $H --rt-client direct --out $OUT/direct_$w
  step runtime_$w 60 $R bench disb $A --workload workloads/$w.json $H --rt-client runtime --out $OUT/runtime_$w
done
for w in B C trace; do
  step direct_$w 60 $R bench disb $A --workload workloads/$w.json $H --rt-client direct --out $OUT/direct_$w
done
kill -TERM $SERVE; wait $SERVE
for w in A D E B C trace; do
  step in2_$w 60 $R bench disb $A --workload workloads/$w.json --device cuda --out $OUT/in2_$w
done
python3 - $OUT <<'PY'
import json, glob, os, sys
out = sys.argv[1]
def load(d):
    f = glob.glob(out + '/' + d + '/*.json')
    return {m['mode']: m for m in json.load(open(f[0]))['modes']} if f else None
g = lambda m, k: m[k]['mean_ms'] if m.get(k) else float('nan')
print('run | reset RT ms (alone) | vs in process (mean of both) | client / request / response (readback) | inside | BE req/s')
for w in ['A', 'B', 'C', 'D', 'E', 'trace']:
    ins = [load(p + w) for p in ('in_', 'in2_')]
    ins = [i['reset']['rt']['mean_ms'] for i in ins if i]
    base = sum(ins) / len(ins)
    print('%s in process: %s ms' % (w, ' / '.join('%.3f' % v for v in ins)))
    for c in ('direct', 'runtime'):
        h = load('%s_%s' % (c, w))
        if not h:
            continue
        r = h['reset']
        print('%s %s | %.3f (%.3f) | %+.1f%% | %.3f / %.3f / %.3f (%.3f) | %.3f | %.1f' % (
            w, c, r['rt']['mean_ms'], h['rt-alone']['rt']['mean_ms'], 100 * (r['rt']['mean_ms'] / base - 1),
            g(r, 'rt_client'), g(r, 'rt_request'), g(r, 'rt_response'), g(r, 'rt_readback'), g(r, 'rt_service'),
            r['be_throughput_rps']))
PY
grep -c "" $OUT/serve.log; grep -iE "error|panic" $OUT/serve.log | head -3
cat $OUT/summary.txt
pack

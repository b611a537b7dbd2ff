#!/bin/bash
# Session 31, call 2 (issue 4): the server's share of an HTTP inference on
# this host (examples/http_round_trip: GET /v2/health/live against an
# inference on a 16-element echo model answered from a spinning thread),
# then every DISB workload in process and driven into `reef serve` in
# another process (HTTP on its Unix socket, inputs through CUDA shared
# memory, outputs through system shared memory, one busy-polling worker on
# each side), `reset`, 3 s after 1 s; A in process again at the end.
# Carry target/release/reef, target/release/examples/http_round_trip,
# devrun/pack.tgz.
source scripts/device/common.sh
A="--duration 3 --warmup 1 --quiet --modes reset --busy-poll 1"
H="--server unix:/tmp/reef-http.sock --protocol http --cuda-shm --host-outputs"
step round_trip 60 target/release/examples/http_round_trip --requests 1000 --rounds 3
for w in A B C D E trace; do
  step in_$w 60 $R bench disb $A --workload workloads/$w.json --device cuda --out $OUT/in_$w
done
serve_up vgg19,resnet152,densenet201,inception_v3,bert_base --mode reset --allow-client-shm --busy-poll 1 \
  --http-uds /tmp/reef-http.sock
for w in A B C D E trace; do
  step http_$w 60 $R bench disb $A --workload workloads/$w.json $H --out $OUT/http_$w
done
kill -TERM $SERVE; wait $SERVE
step in_A2 60 $R bench disb $A --workload workloads/A.json --device cuda --out $OUT/in_A2
cat $OUT/round_trip.log
python3 - $OUT <<'PY'
import json, glob, sys
out = sys.argv[1]
def load(d):
    return {m['mode']: m for m in json.load(open(glob.glob(out + '/' + d + '/*.json')[0]))['modes']}
g = lambda m, k: m[k]['mean_ms'] if m.get(k) else float('nan')
print('workload | in-process reset RT ms (alone) | server reset RT ms (alone) | over in process | client / request / response (readback) | inside | in-proc input | BE in / server')
for w in ['A', 'B', 'C', 'D', 'E', 'trace']:
    i, h = load('in_' + w), load('http_' + w)
    ir, hr = i['reset'], h['reset']
    print('%s | %.3f (%.3f) | %.3f (%.3f) | %+.1f%% | %.3f / %.3f / %.3f (%.3f) | %.3f | %.3f | %.1f / %.1f' % (
        w, ir['rt']['mean_ms'], i['rt-alone']['rt']['mean_ms'], hr['rt']['mean_ms'], h['rt-alone']['rt']['mean_ms'],
        100 * (hr['rt']['mean_ms'] / ir['rt']['mean_ms'] - 1), g(hr, 'rt_client'), g(hr, 'rt_request'),
        g(hr, 'rt_response'), g(hr, 'rt_readback'), g(hr, 'rt_service'), g(ir, 'rt_input'),
        ir['be_throughput_rps'], hr['be_throughput_rps']))
a2 = load('in_A2')['reset']
print('A in process again: %.3f ms' % a2['rt']['mean_ms'])
PY
cat $OUT/summary.txt
pack

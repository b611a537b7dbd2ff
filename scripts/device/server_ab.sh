#!/bin/bash
# Session 31, call 4 (issue 4): the direct RT client against the runtime's
# path, interleaved and repeated (A twice, B and D once), into
# one `reef serve` (HTTP on its Unix socket, inputs through CUDA shared
# memory, outputs through system shared memory, one busy-polling worker
# on each side), `reset`, 3 s after 1 s; in process before and after. Carry target/release/reef, devrun/pack.tgz.
source scripts/device/common.sh
A="--duration 3 --warmup 1 --quiet --modes reset --busy-poll 1"
H="--server unix:/tmp/reef-http.sock --protocol http --cuda-shm --host-outputs"
for w in A B; do
  step in_$w 60 $R bench disb $A --workload workloads/$w.json --device cuda --out $OUT/in_$w
done
serve_up vgg19,resnet152,densenet201,inception_v3,bert_base --mode reset --allow-client-shm --busy-poll 1 \
  --http-uds /tmp/reef-http.sock
for run in "A 1 direct runtime" "B 1 runtime direct" "D 1 direct runtime" "A 2 runtime direct"; do
  set -- $run
  for c in $3 $4; do
    step ${c}_$1$2 60 $R bench disb $A --workload workloads/$1.json $H --rt-client $c --out $OUT/${c}_$1$2
  done
done
kill -TERM $SERVE; wait $SERVE
for w in A; do
  step in2_$w 60 $R bench disb $A --workload workloads/$w.json --device cuda --out $OUT/in2_$w
done
python3 - $OUT <<'PY'
import json, glob, sys
out = sys.argv[1]
def load(d):
    f = glob.glob(out + '/' + d + '/*.json')
    return {m['mode']: m for m in json.load(open(f[0]))['modes']} if f else None
g = lambda m, k: m[k]['mean_ms'] if m.get(k) else float('nan')
for w, n in [('A', 2), ('B', 1), ('D', 1)]:
    ins = [load(p + w)['reset']['rt']['mean_ms'] for p in ('in_', 'in2_') if load(p + w)]
    if not ins:
        ins = [float('nan')]
    base = sum(ins) / len(ins)
    print('%s in process: %s ms' % (w, ' / '.join('%.3f' % v for v in ins)))
    for c in ('direct', 'runtime'):
        for i in range(1, n + 1):
            r = load('%s_%s%d' % (c, w, i))['reset']
            print('%s %-7s %d | %.3f | %+.1f%% | %.3f / %.3f / %.3f (%.3f) | %.3f | %.1f' % (
                w, c, i, r['rt']['mean_ms'], 100 * (r['rt']['mean_ms'] / base - 1), g(r, 'rt_client'),
                g(r, 'rt_request'), g(r, 'rt_response'), g(r, 'rt_readback'), g(r, 'rt_service'),
                r['be_throughput_rps']))
PY
cat $OUT/summary.txt
pack

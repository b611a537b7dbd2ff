#!/bin/bash
# Session 28, call 2: the gpu tests and the selftest with the epilogue's
# bias hoist on by default (convolutions' row biases, now also matmuls'
# column biases); `reef bench models` with it off (REEF_EPI_HOIST=0) / on /
# on / off, bert_base included; then which host tools the drain-first order
# needs: `reef bench preempt --modes reset:drain,reset` with the defaults
# (memset raise, stream query), the told word (REEF_BE_TOLD=1), the relay run
# once with the told word, and the relay with it, in the order
# def told once relay relay once told def (CONFIGS overrides).
# The pack needs the default sets (`reef compile --arch 9.0 --all-sets`) and
# REEF_EPI_HOIST=0.
source scripts/device/common.sh
P="--device cuda --requests 150 --max-gap-ms 6"
step gpu_tests 150 devrun/bin/gpu_tests --test-threads 1 --nocapture
step selftest 200 $R selftest --preemptions 2 --seed 2803
M=vgg19,resnet50,resnet152,densenet201,inception_v3,bert_base
i=0
for c in off on on off; do
  i=$((i+1))
  D=; [ $c = off ] && D=REEF_EPI_HOIST=0
  step models${i}_$c 200 env REEF_NVRTC_DEFINES=$D $R bench models --models $M --batches 1 --iters 30 --json $OUT/models${i}_$c.json
done
i=0
for c in ${CONFIGS:-def told once relay relay once told def}; do
  i=$((i+1))
  case $c in
    def) E= ;;
    told) E="REEF_BE_TOLD=1" ;;
    once) E="REEF_RAISE=relay-once REEF_BE_TOLD=1" ;;
    relay) E="REEF_RAISE=relay REEF_BE_TOLD=1" ;;
  esac
  step ab${i}_$c 200 env $E $R bench preempt $P --modes reset:drain,reset --json $OUT/ab${i}_$c.json
done

report_checks
python3 - "$OUT" <<'EOF'
import json, os, sys
out = sys.argv[1]
runs = sorted(f[:-5] for f in os.listdir(out) if f.startswith("models") and f.endswith(".json"))
D = {f: {r["model"]: r for r in json.load(open(f"{out}/{f}.json"))} for f in runs}
print("== bench models, RT ms per run (" + " ".join(runs) + "), on against off")
for m in D[runs[0]]:
    v = [D[f][m]["rt_ms"] for f in runs]
    on = [x for f, x in zip(runs, v) if f.endswith("_on")]
    off = [x for f, x in zip(runs, v) if f.endswith("_off")]
    print("%-13s %s  %+.1f%%" % (m, " ".join("%.3f" % x for x in v), (sum(on) / len(on) / (sum(off) / len(off)) - 1) * 100))
f = lambda x: float("nan") if x is None else x
print("== bench preempt (run, BE model, mode: preempt p50/p99/max, raise p50/p99, gap p99, RT vs alone, BE/s)")
for name in sorted((f[:-5] for f in os.listdir(out) if f.startswith("ab") and f.endswith(".json")), key=lambda s: int(s[2:].split("_")[0])):
    for r in json.load(open(f"{out}/{name}.json")):
        rt = (r["rt_mean_ms"] / r["rt_alone_mean_ms"] - 1) * 100
        print("%-9s %-12s %-12s %5.1f %5.1f %5.1f | %4.1f %4.1f | %4.1f | %+5.1f%% | %6.1f" % (
            name, r["be_model"][:12], r["mode"], f(r["preempt_p50_us"]), f(r["preempt_p99_us"]), f(r["preempt_max_us"]),
            f(r["raise_p50_us"]), f(r["raise_p99_us"]), f(r["poll_gap_p99_us"]), rt, r["be_per_s"]))
EOF
cat $OUT/summary.txt
pack

#!/bin/bash
# Session 28: the scheduling thread's pause between polls (`yield`, the
# old way, against `spin`, now the GPU's default) with the defaults
# (memset raise, no told word) and with the relay and the told word, drain
# first at depth 2 and 1, each pair interleaved in one run; then issue 3's
# table with the defaults (`wait`, `reset`, `reef`, `reset:drain`); then
# `reef bench models` with the epilogue's bias loads hoisted
# (REEF_EPI_HOIST=1) off / on / on / off and the selftest with them.
# The pack needs the default sets (`reef compile --arch 9.0 --all-sets`) and
# REEF_EPI_HOIST=1 (`reef compile --arch 9.0` with it as REEF_NVRTC_DEFINES).
source scripts/device/common.sh
P="--device cuda --requests 150 --max-gap-ms 6"
AB=reset:drain:yield,reset:drain:spin,reset:drain:depth1:yield,reset:drain:depth1:spin
step gpu_tests 150 devrun/bin/gpu_tests --test-threads 1 --nocapture
step selftest 200 $R selftest --preemptions 2 --seed 2801
step ab1_def 300 $R bench preempt $P --modes $AB --json $OUT/ab1_def.json
step ab2_relay 300 env REEF_RAISE=relay REEF_BE_TOLD=1 $R bench preempt $P --modes $AB --json $OUT/ab2_relay.json
step full 300 $R bench preempt $P --modes wait,reset,reef,reset:drain --json $OUT/full.json
if [ "${HOIST:-1}" = 1 ]; then
  M=vgg19,resnet50,resnet152,densenet201,inception_v3
  step selftest_hoist 200 env REEF_NVRTC_DEFINES=REEF_EPI_HOIST=1 $R selftest --preemptions 2 --seed 2802
  i=0
  for c in off on on off; do
    i=$((i+1))
    D=; [ $c = on ] && D=REEF_EPI_HOIST=1
    step models${i}_$c 200 env REEF_NVRTC_DEFINES=$D $R bench models --models $M --batches 1 --iters 30 --json $OUT/models${i}_$c.json
  done
fi

report_checks
grep -E "FAIL|passed" $OUT/selftest_hoist.log 2>/dev/null | tail -2
for f in ab1_def ab2_relay full; do
  echo "== $f (mode, preempt p50/p99/max, raise p50/p99, poll gap p50/p99, RT vs alone, BE/s)"
  python3 - "$OUT/$f.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
rows = d if isinstance(d, list) else d.get("rows", d)
f = lambda x: float("nan") if x is None else x
for r in rows:
    rt = (r["rt_mean_ms"] / r["rt_alone_mean_ms"] - 1) * 100
    print("%-12s %-24s %5.1f %5.1f %5.1f | %4.1f %4.1f | %4.1f %4.1f | %+5.1f%% | %6.1f" % (
        r["be_model"][:12], r["mode"], f(r["preempt_p50_us"]), f(r["preempt_p99_us"]), f(r["preempt_max_us"]),
        f(r["raise_p50_us"]), f(r["raise_p99_us"]), f(r["poll_gap_p50_us"]), f(r["poll_gap_p99_us"]), rt, r["be_per_s"]))
EOF
done
for f in $(ls $OUT | grep -E "^models[0-9]_.*\.log$" | sort); do echo "== $f"; grep "^|" $OUT/$f | tail -n +3; done
cat $OUT/summary.txt
pack

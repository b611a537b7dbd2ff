# Shared by the device scripts (run from the repository root on the GPU host,
# e.g. through the `device` tool with $OUT set to a folder that comes back):
# unpack the precompiled kernels, `step` and `pack`.
#
# Built on the CI box first (no GPU needed) and carried with the call:
#   cargo build --release                                   # target/release/reef
#   REEF_CACHE_DIR=/tmp/pack/cache reef compile --arch 9.0 --all-sets
#   tar czf devrun/pack.tgz -C /tmp/pack cache              # every kernel set for sm_90
#   cargo test --release -p reef-cuda --test gpu --no-run   # copy to devrun/bin/gpu_tests
# (devrun/ is gitignored.)
set -u
mkdir -p /tmp/p && tar xzf devrun/pack.tgz -C /tmp/p && export REEF_CACHE_DIR=/tmp/p/cache
export RUST_LOG=${RUST_LOG:-warn}
R=./target/release/reef
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader | tee $OUT/gpu.txt
# step NAME TIMEOUT CMD...: run CMD with a timeout, log to $OUT/NAME.log, record rc and seconds.
step() {
  local name=$1 t=$2; shift 2
  local s=$(date +%s%N)
  timeout $t "$@" > $OUT/$name.log 2>&1; local rc=$?
  local e=$(date +%s%N)
  printf '%-28s rc=%-4s %6.1fs\n' "$name" "$rc" "$(awk "BEGIN{print ($e-$s)/1e9}")" | tee -a $OUT/summary.txt
  return 0
}
# report_checks: the gpu tests' and the selftest's verdicts from their logs.
report_checks() {
  echo "== gpu_tests"; grep -E "test result|FAILED|panicked" $OUT/gpu_tests.log | tail -4
  echo "== selftest"; grep -E "FAIL|passed" $OUT/selftest.log | tail -4
}
# report_probes SERIES NAMES...: each `reef bench preempt` probe log's table
# and the device histograms whose names match the regex SERIES.
report_probes() {
  local series=$1 f; shift
  for f in "$@"; do
    echo "== $f"; grep "^|" $OUT/$f.log | cut -d'|' -f2-8,13 | tail -n +3
    grep -A80 "^Device histograms" $OUT/$f.log | grep "^- " | grep -E "$series" | cut -c1-160
  done
}
# report_abs: the tables of the abN_*.log runs, then the steps' times.
report_abs() {
  local f
  for f in $(ls $OUT | grep -E "^ab[0-9]_.*\.log$" | sort); do
    echo "== $f"; grep "^|" $OUT/$f | cut -d'|' -f2-8,10,13 | tail -n +3
  done
  cat $OUT/summary.txt
}
# pack: at the end, everything under $OUT into one archive (few files come back).
pack() { (cd $OUT && tar czf /tmp/all.tgz . && rm -rf ./* && mv /tmp/all.tgz all.tgz); }
# serve_up MODELS [FLAGS...]: `reef serve` on 127.0.0.1:8000 / :8001 in the
# background (SERVE holds its pid; log $OUT/serve.log), waiting until every
# model of the comma-separated MODELS is ready.
serve_up() {
  local models=$1; shift
  $R serve --device cuda --models $models --http 127.0.0.1:8000 --grpc 127.0.0.1:8001 "$@" > $OUT/serve.log 2>&1 &
  SERVE=$!
  local i
  for i in $(seq 1 180); do
    python3 -c "import urllib.request as u; [u.urlopen('http://127.0.0.1:8000/v2/models/%s/ready' % m, timeout=2) for m in '$models'.split(',')]" 2>/dev/null && break
    sleep 1
  done
  echo "server ready after ${i}s"
}
# report_preempt NAME...: each `reef bench preempt --json $OUT/NAME.json` row in
# one line: BE model, mode, preemption p50 / p99 / max, raise p50 / p99 and the
# longest poll gap's p99 (us); RT mean and p99 against alone; BE req/s; RT
# queued p99 loaded / alone (us); the scheduling thread's BE input / output
# time per task (us).
report_preempt() {
  local f
  for f in "$@"; do
    echo "== $f (BE model, mode: preempt p50/p99/max, raise p50/p99, gap p99, RT vs alone, RT p99 vs alone, BE/s, RT queued p99 / alone us, BE in / out us)"
    python3 - "$OUT/$f.json" <<'PY'
import json, sys
fl = lambda x: float("nan") if x is None else x
for r in json.load(open(sys.argv[1])):
    rt = (r["rt_mean_ms"] / r["rt_alone_mean_ms"] - 1) * 100
    rt99 = (r["rt_p99_ms"] / r["rt_alone_p99_ms"] - 1) * 100
    print("%-12s %-18s %6.1f %6.1f %6.1f | %4.1f %4.1f | %5.1f | %+5.1f%% %+5.1f%% | %6.1f | %5.0f / %5.0f | %4.0f / %4.0f" % (
        r["be_model"][:12], r["mode"], fl(r["preempt_p50_us"]), fl(r["preempt_p99_us"]), fl(r["preempt_max_us"]),
        fl(r["raise_p50_us"]), fl(r["raise_p99_us"]), fl(r.get("poll_gap_p99_us")), rt, rt99, r["be_per_s"],
        fl(r.get("rt_queued_p99_us")), fl(r.get("rt_queued_alone_p99_us")), fl(r.get("be_input_mean_us")), fl(r.get("be_output_mean_us"))))
PY
  done
}

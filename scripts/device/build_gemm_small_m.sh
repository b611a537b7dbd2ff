#!/bin/bash
# Builds what scripts/device/gemm_small_m.sh carries, on the CI box (no GPU):
# target/release/reef as committed, devrun/bin/reef_ms4 and reef_ms2 (the
# same source with geometry::MIN_SPLIT_STEPS = 4 and 2), and devrun/pack.tgz
# with every kernel set of each NVRTC define variant for sm_90.
#   LD_LIBRARY_PATH=<NVRTC 13 lib dir> scripts/device/build_gemm_small_m.sh
# then: run `bash scripts/device/gemm_small_m.sh` (PART=1, then PART=2) with
#   carry target/release/reef devrun/pack.tgz devrun/bin/reef_ms4 devrun/bin/reef_ms2
set -eu
cd "$(dirname "$0")/../.."
G=crates/reef-cuda/src/geometry.rs
grep -q "^pub const MIN_SPLIT_STEPS: u64 = 8;" $G || { echo "$G: MIN_SPLIT_STEPS is not 8"; exit 1; }
mkdir -p devrun/bin
trap 'sed -i "s/^pub const MIN_SPLIT_STEPS: u64 = .*;/pub const MIN_SPLIT_STEPS: u64 = 8;/" $G' EXIT
for v in 4 2; do
  sed -i "s/^pub const MIN_SPLIT_STEPS: u64 = .*;/pub const MIN_SPLIT_STEPS: u64 = $v;/" $G
  cargo build --release
  cp target/release/reef devrun/bin/reef_ms$v
done
sed -i "s/^pub const MIN_SPLIT_STEPS: u64 = .*;/pub const MIN_SPLIT_STEPS: u64 = 8;/" $G
cargo build --release
rm -rf /tmp/pack_gsm
for d in "" REEF_LDMATRIX=1 REEF_GEMM_STAGES=4 REEF_LDMATRIX=1,REEF_GEMM_STAGES=4; do
  REEF_NVRTC_DEFINES=$d REEF_CACHE_DIR=/tmp/pack_gsm/cache ./target/release/reef compile --arch 9.0
done
tar czf devrun/pack.tgz -C /tmp/pack_gsm cache
ls -la target/release/reef devrun/bin/reef_ms4 devrun/bin/reef_ms2 devrun/pack.tgz

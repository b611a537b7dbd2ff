#!/bin/bash
# Session 21: drain_split.sh, then http_repeat.sh, on one machine (each
# with its own output folder under $OUT). Carry target/release/reef,
# devrun/pack.tgz and devrun/bin/gpu_tests.
TOP=$OUT
mkdir -p $TOP/drain $TOP/http
OUT=$TOP/drain bash scripts/device/drain_split.sh
OUT=$TOP/http bash scripts/device/http_repeat.sh

#!/bin/bash
# Session 21: drain_split.sh, then (when the call has time left)
# http_repeat.sh, on one machine, each with its own output folder under
# $OUT. Carry target/release/reef, devrun/pack.tgz and devrun/bin/gpu_tests.
TOP=$OUT
mkdir -p $TOP/drain $TOP/http
OUT=$TOP/drain bash scripts/device/drain_split.sh
if [ $SECONDS -lt ${HTTP_BEFORE:-280} ]; then
  OUT=$TOP/http bash scripts/device/http_repeat.sh
else
  echo "no time left for http_repeat.sh after ${SECONDS}s"
fi

#!/bin/bash
# Session 20, call 2: scripts/device/uds.sh, then every DISB workload with
# the BE tasks alone (the exclusive-RT ceiling) in stream, reset, reef and
# reset:depth4 (disb_all.sh). Carry target/release/reef,
# target/release/examples/frontend_overhead and devrun/pack.tgz.
OUT0=$OUT
mkdir -p $OUT0/uds $OUT0/disb
OUT=$OUT0/uds bash -c 'source scripts/device/uds.sh' > $OUT0/uds.txt 2>&1
OUT=$OUT0/disb W="A B C D E trace" MODES=stream,reset,reef,reset:depth4 EXTRA=--be-alone TORCH=0 \
  bash scripts/device/disb_all.sh > $OUT0/disb.txt 2>&1
grep -v "^|" $OUT0/uds.txt | grep -E "^(==|gRPC|.*rc=)" ; grep -E "^\| (rt-alone|reset) " $OUT0/uds.txt | cut -c1-120
grep -E "Exclusive|^== |^\| (stream|reset|reef|reset:depth4|be-alone|rt-alone) " $OUT0/disb.txt | cut -c1-330

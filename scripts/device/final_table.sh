#!/bin/bash
# Session 28, call 7: issue 3's table with this session's defaults (the
# epilogue's bias hoist, spinning between looks, BE I/O on its own thread,
# quick drains where RT waits for the drain): `reef bench preempt` in
# `wait`, `reset`, `reef` and `reset:drain`, 200 RT requests per row.
# The pack needs the default sets (`reef compile --arch 9.0 --all-sets`).
source scripts/device/common.sh
step table 240 $R bench preempt --device cuda --max-gap-ms 6 --requests 200 --modes wait,reset,reef,reset:drain --json $OUT/table.json
report_preempt table
cat $OUT/summary.txt
pack

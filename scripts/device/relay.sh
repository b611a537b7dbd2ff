#!/bin/bash
# Session 22, call 2: raising a device-memory preemption flag without the
# host's driver call at the raise (mapped_flag.cu's test 4): a stream write
# at the raise against a front-end relay (a stream wait on a host-mapped
# word, armed beforehand) and a relay kernel (one warp polling the word);
# what a pending relay costs other kernels; and (call 4) the last BE block
# telling the host through a mapped word. No reef binary needed.
set -u
nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader | tee $OUT/gpu.txt
nvcc -O2 -arch=sm_90 -o /tmp/mapped_flag scripts/device/mapped_flag.cu -lcuda 2>&1 | tee $OUT/nvcc.log
timeout 120 /tmp/mapped_flag 2>&1 | tee $OUT/mapped_flag.log

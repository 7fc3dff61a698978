#!/usr/bin/env bash
# One device session: GPU tests, then the paper-size training-step and sampling benchmarks.
# Each benchmark prints one JSON line; all of them are collected in $OUT/bench.jsonl.
#   OUT=results bash benchmarks/gpu_suite.sh
set -u
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
timeout 150 python3 -m pytest -p no:cacheprovider -m gpu tests/test_gpu.py -q 2>&1 | tail -20 | tee "$OUT/gpu_tests.txt"
run() { timeout "$1" python3 "${@:2}" 2> >(tail -5 >&2) | tee -a "$OUT/bench.jsonl"; }
run 200 benchmarks/train_step.py --stage joint --batch 1 --steps 3 --warmup 1
run 240 benchmarks/train_step.py --stage joint --batch 1 --steps 3 --warmup 2 --compile --ac-every 2
run 90 benchmarks/train_step.py --stage t2m --batch 64 --steps 5 --warmup 2
run 150 benchmarks/sample_speed.py --steps 50
# Issue #16 item 3, the optimizer-state lever: 8-bit AdamW moments (torchao) free ~35 GB, enough to
# drop activation checkpointing; three repeats (the compiled update's graphs are cached after the first).
for _ in 1 2 3; do
  run 300 benchmarks/train_step.py --stage joint --batch 1 --steps 4 --warmup 3 --compile --no-ac --optimizer adamw8bit
done

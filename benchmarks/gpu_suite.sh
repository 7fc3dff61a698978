#!/usr/bin/env bash
# One device session: GPU tests, then the paper-size training-step and sampling benchmarks.
# Each benchmark prints one JSON line; all of them are collected in $OUT/bench.jsonl.
#   OUT=results bash benchmarks/gpu_suite.sh [PART ...]
# PARTs (default: all, ~30 min: several 10-minute device calls): tests, basics (the
# uncompiled / compiled joint step, t2m, sampling), levers (issue #16 item 3: the baseline, bf16
# moments without recompute, the optimizers' per-tensor cost; <= 10 min), levers8bit, float8.
set -u
OUT=${OUT:-benchmarks/results}
PARTS=${*:-tests basics levers levers8bit float8}
has() { [[ " $PARTS " == *" $1 "* ]]; }
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
run() { timeout "$1" python3 "${@:2}" 2> >(tail -5 >&2) | tee -a "$OUT/bench.jsonl"; }
has tests && timeout 150 python3 -m pytest -p no:cacheprovider -m gpu tests/test_gpu.py -q 2>&1 | tail -20 | tee "$OUT/gpu_tests.txt"
if has basics; then
  run 200 benchmarks/train_step.py --stage joint --batch 1 --steps 3 --warmup 1
  run 240 benchmarks/train_step.py --stage joint --batch 1 --steps 3 --warmup 2 --compile --ac-every 2
  run 90 benchmarks/train_step.py --stage t2m --batch 64 --steps 5 --warmup 2
  run 150 benchmarks/sample_speed.py --steps 50
fi
# Issue #16 item 3, one process per lever, the masked and unmasked step timed 3 times alternating
# (--repeats 3: the model and its compiled graphs built once); each line reports the
# forward+backward and optimizer-update halves and the allocator's retries. Baseline (fp32 fused
# AdamW, AC every 3rd block); bf16 moments (multi-tensor update) with the memory they free spent on
# dropping recompute; the optimizers' per-tensor cost alone; 8-bit moments at the baseline's AC
# (without AC, measured 2026-12-02: 2.04 s, slower than the baseline); torchao float8 GEMMs (a
# separate, labelled option; measured 2026-12-02: 1.32 s, the baseline's step, in < 5 min with
# compiling; 270 s was not enough).
L="--stage joint --batch 1 --steps 3 --warmup 2 --repeats 3 --compile"
if has levers; then
  run 240 benchmarks/train_step.py $L --ac-every 3
  run 240 benchmarks/train_step.py $L --no-ac --optimizer adamw_bf16
  run 110 benchmarks/optimizer_overhead.py --device cuda
fi
has levers8bit && run 300 benchmarks/train_step.py $L --ac-every 3 --optimizer adamw8bit
has float8 && run 480 benchmarks/train_step.py $L --ac-every 3 --float8 tensorwise

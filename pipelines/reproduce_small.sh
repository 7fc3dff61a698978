#!/usr/bin/env bash
# Small-scale reproduction of the paper's Tables 1 and 2 on synthetic data (issue #15).
#
#   bash pipelines/reproduce_small.sh CHUNK
#
# CPU host (where the project is installed, `make install`):
#   data      synthetic Nymeria-format world (SEQUENCES, default 76, x 66 s: ~730 clips, >= 700 as #15
#             asks: 724 clips measured 2026-12-02 (563 train, 79 val, 82 test); 76 subjects, 39 locations)
#             -> build-dataset (480 px clips) -> the 128 px training pack (pipelines/small_pack.py)
#   wheels    the Python wheels a bare GPU host lacks (PyAV, diffusers, roma, tomli-w) -> .whl/ (45 MB:
#             with the 18 MB pack and the 3.5 MB tree, just under the 64 MiB a device call carries), and
#             torchao for `--optimizer adamw8bit` / `--float8` (paper size, not needed here) -> .whl-train8bit/
#   evaluators  the benchmark's hand classifier and GRU text/motion evaluators, trained on the
#             same synthetic train split (run it while the GPU trains)
# GPU host (one H200):
#   gpu       the whole GPU pipeline, in order, within CHUNK_SECONDS (default 540): unpack; video
#             VAE; precompute (T5 + VAE latents, both representations); motion VAEs (head-centric,
#             root-centric); t2m of EgoTwin (= w/o IM's), w/o AD, w/o MR, VidMLD; then per row
#             joint + T2VM samples + condition probes (EgoTwin also TM2V/TV2M, VidMLD TV2M).
#             Finished steps are skipped and a step cut by the budget resumes from its checkpoint,
#             so `gpu` is rerun until it prints "every step done" (3-4 calls of < 10 min on an H200).
# CPU host again:
#   weights   (GPU host, after gpu) WEIGHTS_RUNS="egotwin" (default): bring back a runnable copy of those
#             runs' final small weights (joint DiT in bf16 shards of 15 MiB; 76 MB a run: two calls,
#             WEIGHTS_PART=rest, then WEIGHTS_PART=joint)
#   evaluate  FILES="dir1 dir2 dir3" (where the GPU chunks' files came back): unpack them (weights
#             into $REPRO/weights/RUN: `egotwin-model sample --run` / coupling probes on the CPU), restore
#             the condition modality of TM2V/TV2M from the full-size dataset, add the ground-truth
#             and motion-shuffled references, `evaluate` every submission ->
#             $REPRO/results/leaderboard.{csv,md}; then the report (docs/reproduction/)
#
# Paths (environment): REPRO (CPU-host work folder, default repro_small), PACK (the training
# pack; default .repro/pack, carried to the GPU host), RUNS (GPU-host runs, default runs/small),
# OUT (where a GPU chunk leaves what comes back: meta.tar.gz with logs, probes and timings, and
# the chunk's new submissions as submissions.tgz.part-* of < 16 MiB; default $RUNS/out). Budgets: STEPS_VIDEO_VAE,
# STEPS_VAE, STEPS_T2M, STEPS_JOINT (same for every variant: same data, budget and seeds).
set -euo pipefail
CHUNK=${1:?usage: reproduce_small.sh data|wheels|evaluators|gpu|collect|weights|evaluate}
REPRO=${REPRO:-repro_small}
PACK=${PACK:-.repro/pack}
RUNS=${RUNS:-runs/small}
OUT=${OUT:-$RUNS/out}
PY=${PY:-python3}
STEPS_VIDEO_VAE=${STEPS_VIDEO_VAE:-1200}
STEPS_VAE=${STEPS_VAE:-1500}
STEPS_T2M=${STEPS_T2M:-800}
STEPS_JOINT=${STEPS_JOINT:-2000}
SAMPLE_STEPS=${SAMPLE_STEPS:-50}
PROBE_DRAWS=${PROBE_DRAWS:-8}  # noise/timestep draws a clip's probe averages (2026-12-02 GPU run: 1)
SAMPLE_VIDEO_SIZE=${SAMPLE_VIDEO_SIZE:-128}  # drafts at the model's size; `evaluate` runs small_pack.py finish
DEVICE=${DEVICE:-cuda}
CONFIG=${CONFIG:-small}  # tiny: a CPU check of this script
VARIANTS=(egotwin wo_im wo_ad wo_mr vidmld)

CHUNK_START=$(date +%s)
CHUNK_SECONDS=${CHUNK_SECONDS:-540}  # a GPU chunk starts no step after this and stops one at it
timed() {  # timed NAME CMD...: run within the chunk's budget; append {"step", "seconds", "rc",
  # "gpu_mib_after"} to $RUNS/timings.jsonl. A step cut by the budget keeps its checkpoints and
  # resumes in the next chunk (rc 124); the chunk goes on to `collect` either way.
  local name=$1; shift
  local left=$(( CHUNK_SECONDS - ($(date +%s) - CHUNK_START) ))
  if [ "$left" -lt 45 ]; then echo "skip $name: chunk budget spent" >&2; return 0; fi
  local t0 rc=0; t0=$(date +%s%N)
  timeout "$left" "$@" || rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 )) mem=""
  command -v nvidia-smi >/dev/null && mem=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
  printf '{"step": "%s", "seconds": %d.%03d, "rc": %d, "gpu_mib_after": "%s"}\n' "$name" $((ms / 1000)) $((ms % 1000)) \
    "$rc" "$mem" | tee -a "$RUNS/timings.jsonl"
}
MODEL=($PY -m egotwin_model.cli)

# ------------------------------------------------------------------------------- CPU host
if [ "$CHUNK" = data ]; then
  BIN=${BIN:-.venv/bin}
  mkdir -p "$REPRO"
  [ -f "$REPRO/nymeria/.complete" ] || {
    "$BIN/egotwin-bench" make-synthetic --out "$REPRO/nymeria" --sequences "${SEQUENCES:-76}" --seconds 66 --resolution 320 \
      --seed 15 --workers "${WORKERS:-2}"
    touch "$REPRO/nymeria/.complete"; }
  "$BIN/egotwin-bench" build-dataset --nymeria-root "$REPRO/nymeria" --out "$REPRO/dataset" --workers "${WORKERS:-2}"
  [ -f "$PACK/pack.json" ] || "$BIN/python" pipelines/small_pack.py pack --dataset "$REPRO/dataset" --out "$PACK" --size 128
  du -sh "$PACK"
  exit 0
fi
if [ "$CHUNK" = evaluators ]; then  # while the GPU trains: the benchmark's own networks on the same data
  BIN=${BIN:-.venv/bin}
  [ -f "$REPRO/hand_classifier/config.json" ] || "$BIN/egotwin-bench" train-hand-classifier --dataset "$REPRO/dataset" \
    --out "$REPRO/hand_classifier" --arch tiny --random-init --epochs 4 --batch-size 64 --lr 1e-3 --frame-stride 2
  # lr 1e-4 (the original's): at 1e-3-2e-3 the full-width evaluator collapses (docs/metrics.md, "Collapse")
  [ -f "$REPRO/evaluators/evaluators.json" ] || "$BIN/egotwin-bench" train-evaluators --dataset "$REPRO/dataset" \
    --out "$REPRO/evaluators" --random-word-vectors --steps 300 --validate-every 50 --batch-size 32 --lr 1e-4
  exit 0
fi
if [ "$CHUNK" = evaluate ]; then  # FILES: the folders the GPU chunks' files came back to
  BIN=${BIN:-.venv/bin}
  SUBS=$REPRO/submissions
  mkdir -p "$SUBS" "$REPRO/meta"
  for dir in ${FILES:?set FILES to the folders holding meta.tar.gz / submissions.tgz.part-*}; do
    if ls "$dir"/submissions.tgz.part-* >/dev/null 2>&1; then cat "$dir"/submissions.tgz.part-* | tar -C "$SUBS" -xzf -; fi
    if ls "$dir"/weights.tgz.part-* >/dev/null 2>&1; then
      mkdir -p "$REPRO/weights"; cat "$dir"/weights.tgz.part-* | tar -C "$REPRO/weights" -xzf -; fi
    [ -f "$dir/meta.tar.gz" ] && tar -C "$REPRO" -xzf "$dir/meta.tar.gz"
  done
  for sub in "$SUBS"/*-t2vm "$SUBS"/*-tm2v "$SUBS"/*-tv2m; do  # 128 px drafts -> 480 px, conditions restored
    [ -d "$sub" ] && "$BIN/python" pipelines/small_pack.py finish --submission "$sub" --reference "$REPRO/dataset"
  done
  [ -d "$SUBS/ground_truth" ] || "$BIN/egotwin-bench" make-submission --from-reference "$REPRO/dataset" --out "$SUBS/ground_truth"
  [ -d "$SUBS/shuffled_motion" ] || "$BIN/egotwin-bench" make-submission --from-reference "$REPRO/dataset" \
    --shuffle-motion --out "$SUBS/shuffled_motion"
  "$BIN/egotwin-bench" evaluate "$SUBS" --reference "$REPRO/dataset" --out "$REPRO/results" \
    --estimator "${ESTIMATOR:-colmap}" --colmap-preset "${COLMAP_PRESET:-fast}" --hand-classifier "$REPRO/hand_classifier" --evaluator-dir "$REPRO/evaluators" \
    --workers "${WORKERS:-2}"
  "$BIN/python" pipelines/reproduce_small_report.py --repro "$REPRO" --out docs/reproduction
  exit 0
fi
if [ "$CHUNK" = wheels ]; then
  mkdir -p .whl .whl-train8bit
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl av==19.0.2 diffusers==0.42.1 roma==1.8.0 tomli-w==1.2.0
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 -d .whl-train8bit torchao==0.18.0
  du -sh .whl .whl-train8bit
  exit 0
fi

# ------------------------------------------------------------------------------- GPU host
mkdir -p "$OUT" "$RUNS/submissions" "$RUNS/probes"
DATA=$RUNS/dataset128
SUBS=$RUNS/submissions
touch "$RUNS/.chunk-start"
export PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}  # up to 8 processes share the host's CPU cores
if ! $PY -c "import av, diffusers, roma" 2>/dev/null; then
  [ -d /tmp/site ] || $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
[ -f "$DATA/splits.json" ] || timed unpack $PY pipelines/small_pack.py unpack --pack "$PACK" --out "$DATA"

base=$RUNS/egotwin
# A variant's run folder shares what its row has in common with another: the encoders and the
# cache always; the motion VAE with the run of the same representation; w/o IM's t2m is
# EgoTwin's (the interaction mask only acts on video tokens, which stage t2m does not have).
link() { mkdir -p "$RUNS/$1"; [ -e "$RUNS/$1/$2" ] || [ -L "$RUNS/$1/$2" ] || ln -s "../$3/$2" "$RUNS/$1/$2"; }
stage() {  # stage RUN NAME STEPS [extra]: train unless the stage's weights exist
  local run=$1 name=$2 steps=$3; shift 3
  local done_file=$RUNS/$run/$name/model.safetensors  # or the sharded layout's model.safetensors.index.json
  [ "$name" = video-vae ] && done_file=$RUNS/$run/encoders/vae/config.json
  [ -f "$done_file" ] || [ -f "$done_file.index.json" ] || timed "$run/$name" "${MODEL[@]}" train --stage "$name" --config "$CONFIG" --variant "$run" \
    --dataset "$DATA" --out "$RUNS/$run" --max-steps "$steps" --device "$DEVICE" --log-every 50 --checkpoint-every 100 "$@"
}
sample() {  # sample RUN TASK
  [ -f "$SUBS/$1-$2/submission.json" ] || timed "$1/sample-$2" "${MODEL[@]}" sample --task "$2" \
    --run "$RUNS/$1" --dataset "$DATA" --out "$SUBS/$1-$2" --steps "$SAMPLE_STEPS" --batch-size 24 --device "$DEVICE" \
    --video-size "$SAMPLE_VIDEO_SIZE"
}
probe() {  # probe RUN: held-out condition losses (egotwin_model/coupling.py)
  [ -s "$RUNS/probes/$1.json" ] || timed "$1/probe" $PY -m egotwin_model.coupling --run "$RUNS/$1" --split test \
    --draws "$PROBE_DRAWS" --device "$DEVICE" --out "$RUNS/probes/$1.json"
}

gpu() {  # the whole GPU pipeline in dependency order; independent steps run side by side on the one
  # GPU (each small run leaves most of an H200 idle); finished steps are skipped, the budget cuts the rest
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no GPU"; } >"$RUNS/device.txt" 2>/dev/null
  local smi=""  # GPU utilisation and memory every 5 s, for the record (gpu_util.csv)
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 5 >>"$RUNS/gpu_util.csv" & smi=$!; disown "$smi"  # not one of the jobs `wait` waits for
  fi
  stage egotwin video-vae "$STEPS_VIDEO_VAE"
  [ -f "$base/cache/manifest.json" ] || timed precompute "${MODEL[@]}" precompute --dataset "$DATA" --out "$base" --device "$DEVICE" --batch-size 16
  for v in wo_im wo_ad wo_mr vidmld; do link "$v" encoders egotwin; link "$v" cache egotwin; done
  stage egotwin vae "$STEPS_VAE" & stage wo_mr vae "$STEPS_VAE" & wait
  for v in wo_im wo_ad; do link "$v" vae egotwin; done
  link vidmld vae wo_mr
  link wo_im t2m egotwin
  # final DiT weights in shards of <= 15 MiB (a device call brings back files of <= 16 MiB); joint's
  # in bf16 (44 MB, the weights `weights` brings back; sample and probes load them into fp32)
  for v in egotwin wo_ad wo_mr vidmld; do stage "$v" t2m "$STEPS_T2M" --max-shard-mb 15 & done; wait
  for v in "${VARIANTS[@]}"; do stage "$v" joint "$STEPS_JOINT" --max-shard-mb 15 --save-dtype bfloat16 & done; wait
  for v in "${VARIANTS[@]}"; do sample "$v" t2vm & done
  sample egotwin tv2m & sample egotwin tm2v & sample vidmld tv2m & wait
  for v in "${VARIANTS[@]}"; do probe "$v" & done; wait
  [ -n "$smi" ] && kill "$smi"
  [ "$(ls -d "$SUBS"/*/submission.json 2>/dev/null | wc -l)" -ge 8 ] && echo "reproduce_small: every step done" || true
}
collect() {  # logs, probes, timings -> meta.tar.gz; this chunk's new submissions -> parts of 15 MiB
  local meta=$RUNS/meta
  rm -rf "$meta"; mkdir -p "$meta"
  cp "$RUNS"/timings.jsonl "$RUNS"/probes/*.json "$RUNS"/device.txt "$RUNS"/gpu_util.csv "$meta"/ 2>/dev/null || true
  for v in "${VARIANTS[@]}"; do
    for s in video-vae vae t2m joint; do
      [ -f "$RUNS/$v/$s/log.jsonl" ] && [ ! -L "$RUNS/$v/$s" ] && cp "$RUNS/$v/$s/log.jsonl" "$meta/log-$v-$s.jsonl"
    done
  done
  tar -C "$RUNS" -czf "$OUT/meta.tar.gz" meta
  # COLLECT="name ..." sends those submissions instead (a call of its own when one chunk made more
  # than the 64 MB a call brings back: 8 drafts of 70 clips are ~70 MB)
  local new; new=${COLLECT:-$(find "$SUBS" -mindepth 1 -maxdepth 1 -type d -newer "$RUNS/.chunk-start" -printf '%f\n' | sort)}
  if [ -n "$new" ]; then
    tar -C "$SUBS" -czf - $new | split -b 15m - "$OUT/submissions.tgz.part-"
  fi
}
weights() {  # WEIGHTS_RUNS (default egotwin): a runnable copy of each run's final weights (run.json,
  # encoders, motion VAE, joint DiT in bf16 shards, the cache's motion statistics and null text, no
  # clips) -> $OUT/weights.tgz.part-* of 15 MiB; a call brings back <= 64 MB: EgoTwin's folder is
  # 76 MB (video VAE 24, joint 42), so it takes two calls, WEIGHTS_PART=rest and WEIGHTS_PART=joint
  local runs=${WEIGHTS_RUNS:-egotwin} dst=$RUNS/weights r
  rm -rf "$dst"; mkdir -p "$dst"
  for r in $runs; do
    [ -f "$RUNS/$r/joint/model.safetensors.index.json" ] || [ -f "$RUNS/$r/joint/model.safetensors" ] || {
      echo "weights: $r has no final joint weights yet (run the gpu chunk first)" >&2; return 2; }
    mkdir -p "$dst/$r/vae" "$dst/$r/joint" "$dst/$r/cache"
    cp -L "$RUNS/$r/run.json" "$dst/$r/"
    cp -rL "$RUNS/$r/encoders" "$dst/$r/"
    cp -L "$RUNS/$r"/vae/model*.safetensors* "$RUNS/$r/vae/latent_stats.json" "$dst/$r/vae/"
    cp -L "$RUNS/$r"/joint/model*.safetensors* "$dst/$r/joint/"
    cp -L "$RUNS/$r"/cache/{manifest.json,motion_stats.safetensors,null_text.safetensors} "$dst/$r/cache/"
  done
  du -sh "$dst"/*
  rm -f "$OUT"/weights.tgz.part-*
  local what  # WEIGHTS_PART: all (default) | rest (all but the joint DiT) | joint: one tar stream a call
  case "${WEIGHTS_PART:-all}" in
    all) what=$runs ;;
    rest) what="--exclude=*/joint $runs" ;;
    joint) what=$(for r in $runs; do printf '%s/joint ' "$r"; done) ;;
    *) echo "weights: WEIGHTS_PART is all, rest or joint, not $WEIGHTS_PART" >&2; return 2 ;;
  esac
  tar -C "$dst" -czf - $what | split -b 15m - "$OUT/weights.tgz.part-"
  local parts; parts=$(ls "$OUT"/weights.tgz.part-* | wc -l)
  if [ "$parts" -gt 4 ]; then
    rm -f "$OUT"/weights.tgz.part-*
    echo "weights: ${WEIGHTS_PART:-all} of $runs needs $parts parts of 15 MiB (> 60 MiB, a call brings back 64 MB):" \
      "bring it back in two calls, WEIGHTS_PART=rest then WEIGHTS_PART=joint" >&2
    return 2
  fi
}
case "$CHUNK" in
  gpu) gpu; collect ;;
  collect) collect ;;
  weights) weights ;;
  *) echo "unknown chunk $CHUNK" >&2; exit 2 ;;
esac

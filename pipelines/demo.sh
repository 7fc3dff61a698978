#!/usr/bin/env bash
# `make demo`: the whole job on the embedded default, end to end, on CPU.
#
#   synthetic Nymeria-format world -> build-dataset (Ray) -> tiny EgoTwin (video VAE, cache,
#   motion VAE, T2M, joint) -> T2VM sampling -> baselines -> hand classifier + GRU evaluators
#   -> evaluate -> leaderboard.csv
#
# Every step resumes: rerunning skips what is already written. Knobs (environment):
#   DEMO_DIR        output folder                       (default demo_out)
#   DEMO_SEQUENCES  synthetic sequences                 (default 6)
#   DEMO_SECONDS    seconds per sequence                (default 40)
#   DEMO_RESOLUTION synthetic Aria RGB size, pixels     (default 352; Nymeria's is 1408)
#   DEMO_STEPS      optimiser steps per training stage  (default 100)
#   DEMO_WORKERS    Ray CPUs for curation/evaluation    (default 2)
#   DEMO_ESTIMATOR  camera-pose backend of evaluate     (default builtin: the labelled fast option, so the
#                   demo stays within ~7 min on 2 cores; `auto`/`colmap` is the benchmark's default and
#                   costs ~30 CPU-s per distinct video; leaderboard.md says which one ran)
#   GLOVE           glove.6B.300d.txt for the text/motion evaluators (default: random word vectors,
#                   enough for the synthetic narrations' closed vocabulary; recorded in evaluators.json)
#   INCEPTION_WEIGHTS, I3D_WEIGHTS, CLIP_WEIGHTS: local weight files/folders; when set, I-FID,
#   FVD and CLIP-SIM join the leaderboard (otherwise they are listed as skipped, with the reason).
set -euo pipefail

BIN=${BIN:-.venv/bin}
DEMO=${DEMO_DIR:-demo_out}
SEQUENCES=${DEMO_SEQUENCES:-6}
SECONDS_PER_SEQUENCE=${DEMO_SECONDS:-40}
RESOLUTION=${DEMO_RESOLUTION:-352}
STEPS=${DEMO_STEPS:-100}
WORKERS=${DEMO_WORKERS:-2}
ESTIMATOR=${DEMO_ESTIMATOR:-builtin}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
started=$(date +%s)
mkdir -p "$DEMO"

step "1/7 synthetic Nymeria-format data ($SEQUENCES sequences x ${SECONDS_PER_SEQUENCE} s) -> $DEMO/nymeria"
if [ ! -f "$DEMO/nymeria/.complete" ]; then
  "$BIN/egotwin-bench" make-synthetic --out "$DEMO/nymeria" --sequences "$SEQUENCES" \
    --seconds "$SECONDS_PER_SEQUENCE" --resolution "$RESOLUTION" --seed 0 --workers "$WORKERS"
  touch "$DEMO/nymeria/.complete"
fi

step "2/7 build-dataset (Ray, $WORKERS workers) -> $DEMO/dataset"
"$BIN/egotwin-bench" build-dataset --nymeria-root "$DEMO/nymeria" --out "$DEMO/dataset" \
  --workers "$WORKERS"

step "3/7 tiny EgoTwin: video VAE, cache, motion VAE, T2M, joint ($STEPS steps each) -> $DEMO/run"
"$BIN/egotwin-model" train --stage video-vae --config tiny --dataset "$DEMO/dataset" --out "$DEMO/run" --max-steps "$STEPS"
"$BIN/egotwin-model" precompute --dataset "$DEMO/dataset" --out "$DEMO/run"
for stage in vae t2m joint; do
  "$BIN/egotwin-model" train --stage "$stage" --out "$DEMO/run" --max-steps "$STEPS"
done

step "4/7 sample T2VM on the test split -> $DEMO/submissions/egotwin-tiny"
"$BIN/egotwin-model" sample --task t2vm --checkpoint "$DEMO/run" --reference "$DEMO/dataset" \
  --out "$DEMO/submissions/egotwin-tiny"

step "5/7 reference submissions: ground truth and motion-shuffled"
"$BIN/egotwin-bench" make-submission --from-reference "$DEMO/dataset" --out "$DEMO/submissions/ground_truth"
"$BIN/egotwin-bench" make-submission --from-reference "$DEMO/dataset" --shuffle-motion \
  --out "$DEMO/submissions/shuffled_motion"

step "6/7 evaluator networks: hand classifier (tiny ViT), GRU motion/text evaluators"
if [ -n "${GLOVE:-}" ]; then word_vectors=(--glove "$GLOVE"); else word_vectors=(--random-word-vectors); fi
[ -f "$DEMO/hand_classifier/config.json" ] || \
  "$BIN/egotwin-bench" train-hand-classifier --dataset "$DEMO/dataset" --out "$DEMO/hand_classifier" \
    --arch tiny --random-init --epochs 10 --batch-size 32 --lr 1e-3
[ -f "$DEMO/evaluators/evaluators.json" ] || \
  "$BIN/egotwin-bench" train-evaluators --dataset "$DEMO/dataset" --out "$DEMO/evaluators" \
    "${word_vectors[@]}" --steps 400 --validate-every 100 --batch-size 16 --lr 1e-4 \
    || [ $? -eq 1 ]  # 1: collapsed or not above chance (printed); evaluate then lists M-FID/R-Prec as not computed

step "7/7 evaluate -> $DEMO/results"
weights=()
[ -n "${INCEPTION_WEIGHTS:-}" ] && weights+=(--inception-weights "$INCEPTION_WEIGHTS")
[ -n "${I3D_WEIGHTS:-}" ] && weights+=(--i3d-weights "$I3D_WEIGHTS")
[ -n "${CLIP_WEIGHTS:-}" ] && weights+=(--clip-weights "$CLIP_WEIGHTS")
"$BIN/egotwin-bench" evaluate "$DEMO/submissions" --reference "$DEMO/dataset" --out "$DEMO/results" \
  --estimator "$ESTIMATOR" --hand-classifier "$DEMO/hand_classifier" --evaluator-dir "$DEMO/evaluators" \
  --workers "$WORKERS" "${weights[@]}"

"$BIN/python" pipelines/demo_figure.py --dataset "$DEMO/dataset" --submissions "$DEMO/submissions" \
  --results "$DEMO/results" --out "$DEMO/results/demo.png"

echo
echo "Done in $(( $(date +%s) - started )) s. Results:"
echo "  leaderboard   $DEMO/results/leaderboard.csv (+ leaderboard.md, per_clip.parquet, plots/)"
echo "  picture       $DEMO/results/demo.png (reference vs generated clips + leaderboard)"
echo "  dataset       $DEMO/dataset (card: $DEMO/dataset/dataset_card.md)"
echo "  model run     $DEMO/run"
echo "  submissions   $DEMO/submissions/"

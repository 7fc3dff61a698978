#!/usr/bin/env bash
# The paper-size pipeline on one H200 with random-initialised CogVideoX-5B / T5-XXL weights
# (issue #16): synthetic data -> random weights in the THUDM/CogVideoX-5b layout -> precompute at
# 480 px (paper config) -> train vae / t2m / joint a few steps (joint killed and resumed) ->
# sample one clip per task at 50 DDIM steps -> evaluate.
#
#   OUT=benchmarks/results bash pipelines/paper_pipeline_gpu.sh [STEP ...]
#
# STEPs (default: all, in this order): data weights precompute vae t2m joint joint_resume
# sample_t2vm sample_tm2v sample_tv2m collect evaluate. A bare GPU host has torch but not ray,
# polars or PyAV: there, run `data` and `evaluate` on the CPU host (where the project is
# installed) and carry the dataset and the wheels across (`reproduce_small.sh wheels`: .whl/ with
# PyAV, diffusers, roma; .whl-train8bit/ with torchao for the default --optimizer adamw8bit):
#   CPU:  WORK=.paper SEQUENCES=3 SECONDS_PER_SEQUENCE=45 ENGINE=local bash pipelines/paper_pipeline_gpu.sh data
#   GPU:  pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl .whl-train8bit/*.whl
#         PYTHONPATH=/tmp/site DATA=.paper/dataset JOINT_DIR=/dev/shm/egotwin_joint \
#           bash pipelines/paper_pipeline_gpu.sh weights precompute vae t2m joint      (one call, ~8 min)
#         ... joint_resume sample_tm2v sample_tv2m sample_t2vm collect    (OUT=$OUT of the device call)
#   CPU:  tar -C .paper -xf OUT/paper_submissions.tar; WORK=.paper bash pipelines/paper_pipeline_gpu.sh evaluate
# Each step is one process, measured on its own, and
# fits in a 10-minute device call, so a lead can run them a few at a time on the same warm machine
# (state lives in $WORK; a step already completed is skipped, rm $WORK/.done/STEP reruns it).
# Every step appends one JSON line to $OUT/paper_pipeline.jsonl:
#   {"step", "rc", "killed", "wall_s", "gpu_mem_used_peak_gib" (nvidia-smi, max over the step,
#    sampled every 200 ms: CUDA context + PyTorch's reserved memory), "gpu_mem_total_gib",
#    "work_disk_gib" (size of $WORK after the step), "disk_free_gib", "cmd", "utc"}
# and its output to $OUT/paper_pipeline_logs/STEP.log. The joint step is interrupted (SIGINT)
# 3 s after its first checkpoint exists; joint_resume must log "joint: steps K..", K > 1.
#
# Disk (paper size, decimal GB; measured on the H200 2026-12-01: the weights are 19.65 GiB and a
# fresh `nvidia-h200` has 41-64 GiB free on / and a 128 GiB tmpfs on /dev/shm): weights 21.1; motion
# VAE 1.7 + checkpoint ~5; t2m: checkpoints hold the trainable motion branch only (frozen
# parameters are rebuilt from the CogVideoX folder on resume) and its final DiT is written in bf16
# (--save-dtype: 11.8); joint: final bf16 11.8 + checkpoints of fp32 weights and both AdamW moments
# of 5.9 B trainable parameters: ~71 GB with fp32 moments, ~36 GB with `--optimizer adamw8bit`
# (torchao, 8-bit moments; the default here). A checkpoint is written whole before the older one is
# deleted (--keep-checkpoints 1), so joint peaks at two checkpoints + its final weights: ~84 GB
# with 8-bit moments: more than the disk, so JOINT_DIR=/dev/shm/egotwin_joint puts RUN/joint on
# the RAM tmpfs (a symlink). PRUNE=1 deletes a finished stage's checkpoints.
#
# Knobs (environment): WORK (default /tmp/egotwin_paper; ~25 GB of weights), OUT, PYTHON,
# CLIPS (clips cached per split, default 8), JOINT_STEPS (default 4), KILL_AFTER (seconds before
# the first joint run is killed at the latest, default 590), SAMPLE_STEPS (default 50), WORKERS
# (default 8), PRUNE (default 1), ENGINE (build-dataset engine, default ray), SAVE_DTYPE (default
# bfloat16), JOINT_DIR (default: RUN/joint itself).
# For a CPU rehearsal of the same steps at the tiny size (tests/test_random_pretrained.py runs it):
# SCALE=tiny DEVICE=cpu JOINT_FLAGS= SEQUENCES=2 SECONDS_PER_SEQUENCE=16 RESOLUTION=128 ENGINE=local.
set -uo pipefail

PY=${PYTHON:-python3}
SCALE=${SCALE:-paper}
DEVICE=${DEVICE:-cuda}
JOINT_FLAGS=${JOINT_FLAGS-"--ac-every 3 --optimizer adamw8bit"}
SEQUENCES=${SEQUENCES:-4}
SECONDS_PER_SEQUENCE=${SECONDS_PER_SEQUENCE:-60}
RESOLUTION=${RESOLUTION:-704}
ENGINE=${ENGINE:-ray}
PRUNE=${PRUNE:-1}
SAVE_DTYPE=${SAVE_DTYPE:-bfloat16}  # the t2m / joint final weights (the rehearsal: float32 is fine too)
WORK=${WORK:-/tmp/egotwin_paper}
OUT=${OUT:-benchmarks/results}
CLIPS=${CLIPS:-8}
JOINT_STEPS=${JOINT_STEPS:-4}
KILL_AFTER=${KILL_AFTER:-590}
SAMPLE_STEPS=${SAMPLE_STEPS:-50}
WORKERS=${WORKERS:-8}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DATA=${DATA:-$WORK/dataset}
WEIGHTS=$WORK/weights
RUN=$WORK/run
SUBS=${SUBS:-$WORK/submissions}
LOGS=$OUT/paper_pipeline_logs
mkdir -p "$WORK/.done" "$OUT" "$LOGS"

# measure STEP LIMIT_S CMD...: run CMD (SIGINT at LIMIT_S, SIGKILL 60 s later), poll nvidia-smi,
# append the JSON line. Exit status: CMD's (0 when it was killed on purpose, see joint).
measure() {
  "$PY" - "$@" <<'PYEOF'
import datetime, glob, json, os, shutil, signal, subprocess, sys, threading, time
step, limit, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
out, logs, work = os.environ["OUT"], os.environ["LOGS"], os.environ["WORK"]
kill_on = os.environ.get("KILL_ON")  # a glob: SIGINT a few seconds after it first matches
peak, total = [0], [0]
try:
    smi = subprocess.Popen(["nvidia-smi", "--query-gpu=memory.used,memory.total", "--format=csv,noheader,nounits",
                            "-lms", "200"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
except FileNotFoundError:  # no GPU driver (a CPU rehearsal): memory fields are null
    smi = None
def poll():
    for line in smi.stdout if smi else ():
        try:
            used, tot = (int(x) for x in line.split(","))
        except ValueError:
            continue
        peak[0], total[0] = max(peak[0], used), tot
threading.Thread(target=poll, daemon=True).start()
t0, killed = time.perf_counter(), False
with open(os.path.join(logs, f"{step}.log"), "w") as log:
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline, rc = t0 + limit, None
    while rc is None and time.perf_counter() < deadline:
        try:
            rc = proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            if kill_on and glob.glob(kill_on):
                deadline = min(deadline, time.perf_counter() + 3.0)  # let the next step start, then interrupt
                kill_on = None
    if rc is None:
        killed = True
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
wall = time.perf_counter() - t0
time.sleep(0.3)
if smi:
    smi.terminate()
gib = (lambda mib: round(mib / 1024, 2) if smi else None)
rec = {"step": step, "rc": rc, "killed": killed, "wall_s": round(wall, 1),
       "gpu_mem_used_peak_gib": gib(peak[0]), "gpu_mem_total_gib": gib(total[0]),
       "work_disk_gib": round(sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(work) for f in fs
                                  if not os.path.islink(os.path.join(d, f))) / 2**30, 2),
       "disk_free_gib": round(shutil.disk_usage(work).free / 2**30, 1),
       "cmd": " ".join(cmd), "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
print(json.dumps(rec), flush=True)
with open(os.path.join(out, "paper_pipeline.jsonl"), "a") as f:
    f.write(json.dumps(rec) + "\n")
tail = open(os.path.join(logs, f"{step}.log"), errors="replace").read()[-1500:]
print(tail, file=sys.stderr)
sys.exit(0 if killed else rc)
PYEOF
}
export OUT LOGS WORK

MODEL=("$PY" -m egotwin_model.cli)
BENCH=("$PY" -m egotwin_bench.cli)

run_step() {
  local step=$1
  if [ -f "$WORK/.done/$step" ] && [ "$step" != collect ]; then echo "== $step: done before (rm $WORK/.done/$step to rerun)"; return 0; fi
  echo "== $step"
  local rc=0
  # shellcheck disable=SC2086  # JOINT_FLAGS is a list of flags
  case $step in
    data)
      measure data 580 "${BENCH[@]}" make-synthetic --out "$WORK/nymeria" --sequences "$SEQUENCES" \
        --seconds "$SECONDS_PER_SEQUENCE" --resolution "$RESOLUTION" --seed 0 --workers "$WORKERS" && \
      measure data_curate 580 "${BENCH[@]}" build-dataset --nymeria-root "$WORK/nymeria" --out "$DATA" \
        --workers "$WORKERS" --engine "$ENGINE" || rc=$? ;;
    weights)  # random CogVideoX-5b folder, initialised on the GPU; tokenizer trained on the dataset's narrations
      measure weights 590 "$PY" pipelines/random_pretrained.py --out "$WEIGHTS" --scale "$SCALE" --device "$DEVICE" \
        --narrations "$DATA" --no-progress || rc=$? ;;
    precompute)  # T5-XXL + CogVideoX VAE at 480 px (paper), CLIPS clips of each split
      measure precompute 590 "${MODEL[@]}" precompute --config "$SCALE" --weights "$WEIGHTS" --dataset "$DATA" \
        --out "$RUN" --device "$DEVICE" --limit "$CLIPS" --batch-size 2 || rc=$? ;;
    vae)
      measure vae 590 "${MODEL[@]}" train --stage vae --run "$RUN" --device "$DEVICE" --steps 20 --batch-size 8 \
        --log-every 5 || rc=$? ;;
    t2m)  # starts from $WEIGHTS/transformer (load_cogvideox); checkpoints: the motion branch only
      measure t2m 590 "${MODEL[@]}" train --stage t2m --run "$RUN" --device "$DEVICE" --steps 5 --batch-size 4 \
        --log-every 1 --keep-checkpoints 1 --save-dtype "$SAVE_DTYPE" || rc=$? ;;
    joint)  # interrupted (SIGINT) 3 s after its first checkpoint (step 2) is complete, at the latest after KILL_AFTER s
      if [ -n "${JOINT_DIR:-}" ] && [ ! -e "$RUN/joint" ]; then mkdir -p "$JOINT_DIR" && ln -s "$JOINT_DIR" "$RUN/joint"; fi
      KILL_ON="$RUN/joint/checkpoints/step-*/train_state.json" measure joint "$KILL_AFTER" "${MODEL[@]}" train --stage joint --run "$RUN" --device "$DEVICE" \
        --steps "$JOINT_STEPS" --batch-size 1 $JOINT_FLAGS --checkpoint-every 2 --log-every 1 --keep-checkpoints 1 \
        --save-dtype "$SAVE_DTYPE" || rc=$? ;;
    joint_resume)  # resumes from the last checkpoint of `joint` (its log: "joint: steps K..JOINT_STEPS")
      measure joint_resume 590 "${MODEL[@]}" train --stage joint --run "$RUN" --device "$DEVICE" \
        --steps "$JOINT_STEPS" --batch-size 1 $JOINT_FLAGS --checkpoint-every 2 --log-every 1 --keep-checkpoints 1 \
        --save-dtype "$SAVE_DTYPE" || rc=$? ;;
    sample_t2vm|sample_tm2v|sample_tv2m)
      local task=${step#sample_}
      measure "$step" 590 "${MODEL[@]}" sample --task "$task" --run "$RUN" --dataset "$DATA" \
        --out "$SUBS/egotwin-random-$task" --steps "$SAMPLE_STEPS" --limit 1 --batch-size 1 --device "$DEVICE" || rc=$? ;;
    collect)  # the samples as one file of $OUT (a device call brings back files at most 2 folders down)
      tar -C "$(dirname "$SUBS")" -cf "$OUT/paper_submissions.tar" "$(basename "$SUBS")" || rc=$? ;;
    evaluate)
      measure evaluate 590 "${BENCH[@]}" evaluate "$SUBS" --reference "$DATA" --out "$WORK/eval" --allow-partial \
        --workers 0 || rc=$? ;;
    *) echo "unknown step $step"; return 2 ;;
  esac
  if [ "$rc" -eq 0 ] && [ "$PRUNE" = 1 ]; then  # later steps read only STAGE/model.safetensors
    case $step in vae|t2m|joint_resume) local stage=${step%_resume}; rm -rf "${RUN:?}/$stage/checkpoints" ;; esac
  fi
  if [ "$rc" -eq 0 ]; then touch "$WORK/.done/$step"; else echo "== $step failed (rc $rc): see $LOGS/"; fi
  return "$rc"
}

STEPS=("$@")
[ ${#STEPS[@]} -eq 0 ] && STEPS=(data weights precompute vae t2m joint joint_resume sample_t2vm sample_tm2v sample_tv2m collect evaluate)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/paper_pipeline_device.txt" 2>/dev/null
status=0
for s in "${STEPS[@]}"; do
  run_step "$s" || { status=$?; break; }
done
exit "$status"

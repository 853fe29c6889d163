#!/usr/bin/env bash
# One GPU session in one script: (1) the GPU-flagged notebook checks, (2) a bf16 training run of CONFIG for
# MINUTES, resuming from the run folder carried in the working tree (RUN, default .gpu/ckpt, gitignored),
# (3) the final checkpoint packed into $OUT as <= 15 MiB parts (at most 8 files come back), with steps/s and
# peak GPU memory printed. torch comes preinstalled on the GPU machine; our other dependencies are installed
# from wheels carried in .gpu/wheels when that folder exists.
#
#   MINUTES=6 CONFIG=small bash bench/gpu_session.sh        # first session: fresh run of the bundled config
#   MINUTES=8 bash bench/gpu_session.sh                     # later sessions: resume .gpu/ckpt (its saved config)
# Bring the run back afterwards:  mkdir -p .gpu/ckpt && cat <files_at>/ckpt.tar.part* | tar -x -C .gpu/ckpt
#
# Carry .gpu/speech (from bench/stage_gpu_data.py), .gpu/ckpt (to resume; a small-config checkpoint is ~43 MB,
# so stage less speech when carrying one: 64 MiB travel in all) and .gpu/wheels.
# Env: MINUTES (training budget, default 6), CONFIG (bundled name or JSON, default small), RUN (run folder),
#      NBFLAGS (nbdev-test flags, default "gpu"; empty skips step 1), NBTIMEOUT (s, default 180),
#      TRAIN_ARGS (extra rotvq-train flags, e.g. "--batch_size 32"), DEVICE (default cuda; cpu for a dry run),
#      OUT (set by the device tool).
set -uo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-6}; CONFIG=${CONFIG:-small}; RUN=${RUN:-.gpu/ckpt}; OUT=${OUT:-/tmp/gpu_out}
NBFLAGS=${NBFLAGS-gpu}; NBTIMEOUT=${NBTIMEOUT:-180}; TRAIN_ARGS=${TRAIN_ARGS:-}
PY=${PYTHON:-python3}; [ -x .venv/bin/python ] && PY=.venv/bin/python
mkdir -p "$OUT" "$RUN"
log() { echo "[gpu_session $(date +%H:%M:%S)] $*"; }

log "0/3 environment"
# the shared corpus is not on the GPU machine: bench/stage_gpu_data.py stages a subset into .gpu/speech
if [ -z "${ROTVQ_SPEECH:-}" ] && [ -f .gpu/speech/manifest.csv ]; then export ROTVQ_SPEECH=$PWD/.gpu/speech; fi
echo "speech data: ${ROTVQ_SPEECH:-<default: ../shared/speech>}"
if [ -d .gpu/whl ]; then  # wheels from bench/stage_gpu_wheels.sh; the image already has torch and friends
  mkdir -p /tmp/site
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl 2>&1 | grep -v "already exists" | tail -3
  if ! $PY -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site .gpu/whl/pesq-*.tar.gz > /tmp/pesq.log 2>&1; then
    # pesq (sdist only) did not build there on 2026-11-27: train without PESQ validation rather than not at all
    log "pesq did not build: validation off"; mkdir -p /tmp/site/pesq
    printf 'class PesqError(RuntimeError): pass\nclass NoUtterancesError(PesqError): pass\nclass BufferTooShortError(PesqError): pass\ndef pesq(*a, **k): raise PesqError("pesq is not installed here")\n' > /tmp/site/pesq/__init__.py
    TRAIN_ARGS="$TRAIN_ARGS --val_clips 0"
  fi
  export PYTHONPATH=$PWD:/tmp/site
fi
$PY -c "import torch, rotvq_audio; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(), '|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

if [ -n "$NBFLAGS" ]; then
  log "1/3 notebook checks: nbdev-test --flags \"$NBFLAGS\" (timeout ${NBTIMEOUT}s)"
  NBTEST=nbdev-test; [ -x .venv/bin/nbdev-test ] && NBTEST=.venv/bin/nbdev-test
  timeout "$NBTIMEOUT" $NBTEST --flags "$NBFLAGS" --n-workers 4 --timing > "$OUT/nbdev_gpu.txt" 2>&1
  echo "nbdev-test exit code $?" >> "$OUT/nbdev_gpu.txt"; tail -15 "$OUT/nbdev_gpu.txt"
fi

log "2/3 training for $MINUTES min with bf16"
if [ -f "$RUN/ckpt/latest" ]; then SRC="$RUN"; RESUME=--resume; log "resuming $RUN at $(cat "$RUN/ckpt/latest")"
else SRC="$CONFIG"; RESUME=; log "fresh run of config $CONFIG"; fi
$PY -m rotvq_audio.train "$SRC" --out "$RUN" $RESUME --max_minutes "$MINUTES" --device "${DEVICE:-cuda}" $TRAIN_ARGS > "$OUT/train.txt" 2>&1
rc=$?; log "rotvq-train exit code $rc"
grep -E "^rotvq-train:|^resumed|^step [0-9]+:|^stopped|^  val" "$OUT/train.txt" | tail -25
grep -E "^stopped" "$OUT/train.txt" | sed 's/^/SUMMARY: /'
tail -5 "$OUT/train.txt"

log "3/3 packing the newest checkpoint into \$OUT"
latest=$(cat "$RUN/ckpt/latest" 2>/dev/null) || { log "no checkpoint to bring back"; exit $rc; }
# model/ duplicates the checkpoint's generator: rebuild it with `cp -r ckpt/$latest/generator model`
tar -cf "$OUT/ckpt.tar" -C "$RUN" ckpt/latest "ckpt/$latest" train_config.json log.jsonl
size=$(stat -c %s "$OUT/ckpt.tar")
if [ "$size" -gt $((56 * 1024 * 1024)) ]; then  # 64 MiB come back in all: keep the weights, drop optimiser state
  log "full checkpoint is $((size / 1048576)) MiB: bringing back only the generator (no optimiser state, cannot resume)"
  tar -cf "$OUT/ckpt.tar" -C "$RUN" "ckpt/$latest/generator" train_config.json log.jsonl
fi
(cd "$OUT" && split -b 15M -d ckpt.tar ckpt.tar.part && rm ckpt.tar)
ls -la "$OUT"; log "done"
exit $rc

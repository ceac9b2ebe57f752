#!/usr/bin/env bash
# Issue 13's remaining lever on a lent GPU: train the TinyFaces base model on (many) more captioned
# renders, so that it draws named looks (hair, skin, glasses) in every style. docs/results.md (session 19)
# found the preview clause bounded by how well the base model follows those words: on the CPU the shipped
# model had 7,704 stage-2 steps at batch 64, the session-17 continuation 3,327 more (66 minutes).
#
# One call: stage 2 of `python -m lowdim_tinyfaces.train_model`, warm-started from the shipped model
# (`--init-from`, its VAE kept), with attribute captions, on the GPU for MINUTES of budget (the learning
# rate anneals over it), then the diffusers export and its check. Renders are made on the CPU cores.
#
# Prepare once: mkdir -p .wheels && pip download diffusers==0.42.1 --no-deps -d .wheels
#               pip download 'setuptools>=77' --no-deps -d .wheels   # pyproject.toml needs it; the image's may be older
#               echo /.wheels/ >> .git/info/exclude
# There:        device run: command "bash benchmarks/base_gpu.sh", carry [".wheels"], timeout_s 540
# Results in $OUT: model.tar (the exported folder, 14 MiB), train.log, final_pipeline.png, gpu.txt.
# Back here:    tar xf model.tar -C runs/base-gpu && python benchmarks/tinyfaces_named_looks.py runs/base-gpu/model
#               then LOWDIM_TINYFACES_RETRAINED=runs/base-gpu/model registers it as `tinyfaces-retrained`.
# A CPU smoke at tiny scale: OUT=/tmp/bg MINUTES=3.6 BATCH=8 DEVICE=cpu THREADS=2 bash benchmarks/base_gpu.sh
set -uo pipefail
OUT=${OUT:-out/base-gpu}
WORK=${WORK:-/tmp/lowdim-base}
MINUTES=${MINUTES:-7}            # train_model's budget: 3.5 minutes of it are held back for the export
BATCH=${BATCH:-256}              # images per step (the CPU runs used 64)
LR=${LR:-3e-4}                   # the CPU continuation used 2e-4 at batch 64
DEVICE=${DEVICE:-cuda}
THREADS=${THREADS:-16}           # CPU threads for the renders
INIT=${INIT:-plugins/lowdim-tinyfaces/lowdim_tinyfaces/model}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

. benchmarks/gpu_install.sh
install() {  # the packages the GPU image lacks, from the carried wheels; lowdim and TinyFaces from here
  gpu_install "lowdim lowdim-tinyfaces" ". plugins/lowdim-tinyfaces" "lowdim_cli lowdim_tinyfaces diffusers"
}

mkdir -p "$OUT" "$WORK"
started=$(date +%s)
install
{ date -u +"%Y-%m-%d %H:%M UTC"; nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 || echo "no GPU"
  $PY -c "import torch; print('torch', torch.__version__)"; gpu_packages; } > "$OUT/gpu.txt" 2>&1
# --resume: a second call on the same warm machine continues the first (its budget then counts on).
$PY -m lowdim_tinyfaces.train_model --out "$WORK/run" --resume --captions attributes --init-from "$INIT" \
  --unet-lr "$LR" --unet-batch "$BATCH" --budget-minutes "$MINUTES" --device "$DEVICE" --threads "$THREADS" \
  --model-dir "$WORK/model" 2>&1 | grep -v -e "it/s]" -e "Loading" | tee "$OUT/log.txt"
cp "$WORK/run/train.log" "$OUT/train.log" 2>/dev/null
cp "$WORK/run/samples/final_pipeline.png" "$OUT/" 2>/dev/null
[ -f "$WORK/model/model_index.json" ] && tar cf "$OUT/model.tar" -C "$WORK" model
echo "total $(( $(date +%s) - started )) s" | tee -a "$OUT/log.txt"

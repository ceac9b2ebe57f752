#!/usr/bin/env bash
# Reproduce docs/results.md: phase 0 (precompute), phase 1 (hypernetwork), then `lowdim bench quality`
# on held-out identities. Every step resumes if rerun. Scale with the variables below, e.g. a smoke run:
#   TRAIN_IDS=16 PRE_STEPS=20 HYPER_STEPS=20 HELDOUT=2 METHODS=ours,no-hyper,base benchmarks/tinyfaces_tables.sh
set -euo pipefail
RUN=${RUN:-runs/tinyfaces}
TRAIN_IDS=${TRAIN_IDS:-544}         # identities for precompute (paper: 15K CelebA-HQ faces); VAL_IDS of them held back
PRE_STEPS=${PRE_STEPS:-400}         # LiDB steps per identity in phase 0
BATCH_SUBJECTS=${BATCH_SUBJECTS:-68} # identities trained together (per-sample adapters)
HYPER_STEPS=${HYPER_STEPS:-20000}   # hypernetwork optimizer steps, at most
HYPER_MINUTES=${HYPER_MINUTES:-16}  # ... and at most this long
HYPER_BATCH=${HYPER_BATCH:-16}
HELDOUT=${HELDOUT:-50}              # held-out test identities for the benchmark
VAL_IDS=${VAL_IDS:-32}              # training identities held back to watch the hypernetwork generalise
METHODS=${METHODS:-}                # default: every row
WORKERS=${WORKERS:-1}
DEVICE=${DEVICE:-auto}
ENCODER='{"model_type": "vit", "image_size": 32, "patch_size": 4, "hidden_size": 128, "num_hidden_layers": 4,
          "num_attention_heads": 4, "intermediate_size": 256}'

mkdir -p "$RUN"
lowdim tinyfaces-identities -o "$RUN/train-ids" --count "$TRAIN_IDS" --split train
lowdim tinyfaces-identities -o "$RUN/heldout" --count "$HELDOUT" --split test
time lowdim precompute -m tinyfaces -i "$RUN/train-ids" -o "$RUN/weights" --steps "$PRE_STEPS" --lr 5e-3 \
  --batch-subjects "$BATCH_SUBJECTS" --device "$DEVICE" --dtype fp32
if [ ! -f "$RUN/hyper/hypernet.safetensors" ]; then
  time lowdim train-hypernet -w "$RUN/weights" -o "$RUN/hyper" --encoder-config "$ENCODER" --set width=256 \
    --steps "$HYPER_STEPS" --max-minutes "$HYPER_MINUTES" --batch-size "$HYPER_BATCH" --lr 5e-4 --alpha 1 --beta 1 \
    --diffusion-iterates last --val-every 200 --checkpoint-every 500 \
    --val-identities "$VAL_IDS" --dtype fp32
fi
time lowdim bench quality -i "$RUN/heldout" --hypernet "$RUN/hyper/hypernet.safetensors" -o "$RUN/bench" \
  --workers "$WORKERS" --device "$DEVICE" ${METHODS:+--methods "$METHODS"}

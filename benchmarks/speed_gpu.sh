#!/usr/bin/env bash
# Issue 18 point 2: `lowdim bench speed` at SD1.5 scale (512 px, fp16, random weights) on one GPU of
# the H100/H200 class, in one call of at most 9 minutes (TOTAL_SECONDS, 540 s, inside the tool's timeout_s
# of 560); results land in $OUT (the device tool's output folder): speed.json, table.md, log.txt, gpu.txt,
# measurements.tgz, profile.txt and first_run.txt, 7 files.
#
# Prepare once, on the machine you call from (the GPU machine reaches no registry; its image has
# torch, transformers, peft, accelerate, typer, rich and scikit-image, but not diffusers, and a setuptools
# of unknown version, while pyproject.toml needs 77 or later):
#   mkdir -p .wheels && pip download diffusers==0.42.1 --no-deps -d .wheels
#   pip download 'setuptools>=77' --no-deps -d .wheels
#   echo /.wheels/ >> .git/info/exclude      # so the wheels travel by `carry`, never into a commit
# Then run it from the repository root there, carrying .wheels:
#   device run: command "bash benchmarks/speed_gpu.sh", carry [".wheels"], timeout_s 560
# Without what it needs (.wheels not carried, a wheel missing) it stops at once with one line saying what.
# A CPU smoke of the script itself: OUT=/tmp/speed-out ARGS="--quick --device cpu" \
#   ARGS_PROFILE="--device cpu --dtype fp32" bash benchmarks/speed_gpu.sh
# RECORD_VERSIONS=0 leaves out gpu.txt's import of torch, diffusers, transformers and peft for their versions
# (about 6 s of CPU; pip's list in gpu.txt still names them): for a CPU smoke that ran it once already.
set -uo pipefail
OUT=${OUT:-out/speed-gpu}
WORK=${WORK:-/tmp/lowdim-speed}       # measurements and the 2 GB random model: not under $OUT (8 files come back)
ARGS=${ARGS:---device cuda --dtype fp16}
ARGS_PROFILE=${ARGS_PROFILE:---device cuda --dtype fp16}
BUDGET=${BUDGET:-400}                 # seconds for measuring; the rest of the 9 minutes: setup, table, profile
TOTAL=${TOTAL_SECONDS:-540}           # the whole call; the steps after measuring take what is left of it
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$WORK"
started=$(date +%s)
seconds_left() { echo $(( TOTAL - ($(date +%s) - started) )); }

# The packages this image lacks, from the carried wheels; lowdim itself from this checkout (installed, not
# just importable from here: its plugin entry points must be registered).
. benchmarks/gpu_install.sh
gpu_install lowdim . "lowdim_cli diffusers"
{
  date -u +"%Y-%m-%d %H:%M UTC"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || echo "no nvidia-smi"
  [ "${RECORD_VERSIONS:-1}" = 0 ] ||
    $PY -c "import torch, diffusers, transformers, peft; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
  gpu_packages
} > "$OUT/gpu.txt" 2>&1

# Measuring stops at BUDGET, or earlier where the install took long: 70 s before TOTAL, room for the 30 s
# of --kill-after and the table. Every finished task is already stored, so the table below still shows it
# (a rerun of this script measures only what is missing).
budget=$(( $(seconds_left) - 70 )); budget=$(( budget < BUDGET ? budget : BUDGET ))
if [ "$budget" -gt 0 ]; then  # (timeout 0 would mean no limit at all)
  # shellcheck disable=SC2086
  timeout --signal=INT --kill-after=30 "$budget" $PY -m lowdim_cli.main bench speed $ARGS --out "$WORK" 2>&1 |
    tee "$OUT/log.txt"
  echo "measuring ended with status ${PIPESTATUS[0]} after $(( $(date +%s) - started )) s" | tee -a "$OUT/log.txt"
else
  echo "measuring skipped: $(seconds_left) s of the call's $TOTAL left" | tee -a "$OUT/log.txt"
fi
# shellcheck disable=SC2086
$PY -m lowdim_cli.main bench speed $ARGS --out "$WORK" --no-run 2>&1 | tee -a "$OUT/log.txt"
cp "$WORK/speed.json" "$WORK/table.md" "$OUT/" 2>/dev/null
tar czf "$OUT/measurements.tgz" -C "$WORK" settings.json measurements
# Where a finetune step's time goes (kernels or the host launching them): the next fix needs this. At most
# PROFILE_SECONDS, and never past the call's TOTAL: a profile cut by the device tool loses the "total" line.
profile=$(seconds_left); profile=$(( profile < ${PROFILE_SECONDS:-90} ? profile : ${PROFILE_SECONDS:-90} ))
if [ ! -f "$WORK/model/model_index.json" ]; then
  echo "profile skipped: no model was saved in $WORK/model" | tee -a "$OUT/log.txt"
elif [ "$profile" -le 20 ]; then
  echo "profile skipped: $(seconds_left) s of the call's $TOTAL left" | tee -a "$OUT/log.txt"
else
  # shellcheck disable=SC2086
  timeout "$profile" $PY benchmarks/profile_step.py "$WORK/model" $ARGS_PROFILE --steps 3 > "$OUT/profile.txt" 2>&1
fi
# The first training run's one-time set-up (10.6 s on 2026-11-30), one process per setting: as it is, and with
# cuDNN's cheaper plan heuristics (a guess at what it is). Only with time left in the call's TOTAL.
for setting in "" "TORCH_CUDNN_USE_HEURISTIC_MODE_B=1"; do
  left=$(seconds_left)
  [ -f "$WORK/model/model_index.json" ] && [ "$left" -gt 45 ] || break
  # shellcheck disable=SC2086
  env $setting timeout $(( left < 90 ? left : 90 )) $PY benchmarks/first_run.py "$WORK/model" $ARGS_PROFILE \
    >> "$OUT/first_run.txt" 2>&1
done
echo "total $(( $(date +%s) - started )) s" | tee -a "$OUT/log.txt"

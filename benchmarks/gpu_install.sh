# Sourced by benchmarks/*_gpu.sh: install what the GPU image lacks from the carried .wheels, then lowdim
# (and its plugins) editable from this checkout, or stop at once with one line that says what is missing.
# These scripts run blind in a short GPU session: a failed install must not be followed by minutes of
# tracebacks and an exit status of 0.
#
# pyproject.toml declares its license as an SPDX string with license-files, which setuptools reads from 77
# on; `pip install --no-build-isolation` builds with the setuptools the image has and does not check that,
# so an older one is replaced first from a wheel in .wheels (`pip download 'setuptools>=77' --no-deps -d .wheels`).
# Needs: PY (the Python), OUT (the stop line is also appended to OUT/log.txt).

gpu_stop() {  # one line on stderr and in OUT/log.txt, then exit 1
  echo "$0: stopped: $*" | tee -a "$OUT/log.txt" >&2
  exit 1
}

gpu_version() {  # the installed version of a distribution, or "none"
  $PY -c "import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: print('none')" "$1"
}

gpu_wheel() {  # install requirement $1 from .wheels, or stop naming $2 (what this machine lacks)
  [ -d .wheels ] || gpu_stop ".wheels was not carried, and this machine lacks $2: carry .wheels (the header's 'Prepare once')"
  $PY -m pip install -q --no-index --no-deps --find-links .wheels "$1" ||
    gpu_stop "pip found no '$1' in .wheels (its error is above), and this machine lacks $2: see the header's 'Prepare once'"
}

# $1: the distributions that must be installed ("lowdim lowdim-tinyfaces"); $2: the folders to install editable;
# $3: the modules that must import afterwards.
gpu_install() {
  [ "$(gpu_version diffusers)" = none ] && gpu_wheel diffusers diffusers
  local name missing=""
  for name in $1; do [ "$(gpu_version "$name")" = none ] && missing=1; done
  if [ -n "$missing" ]; then
    local setuptools; setuptools=$(gpu_version setuptools)
    if [ "$setuptools" = none ] || [ "${setuptools%%.*}" -lt 77 ]; then
      gpu_wheel 'setuptools>=77' "setuptools>=77 (it has $setuptools; pyproject.toml's SPDX license needs 77)"
    fi
    local editable=(); for name in $2; do editable+=(-e "$name"); done
    $PY -m pip install -q --no-index --no-deps --no-build-isolation "${editable[@]}" ||
      gpu_stop "pip install -e $2 failed with setuptools $(gpu_version setuptools) (its error is above)"
  fi
  local module why
  for module in $3; do
    why=$($PY -c "import $module" 2>&1) || gpu_stop "$module cannot be imported after installing (${why##*$'\n'})"
  done
}

gpu_packages() {  # for gpu.txt: what the measurements ran with
  echo "setuptools $(gpu_version setuptools)"
  $PY -m pip list --format=freeze 2>&1
}

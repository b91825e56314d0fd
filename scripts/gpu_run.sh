#!/usr/bin/env bash
# The prepared device run: everything the tutorial needs from a GPU, in one command, in stages.
# Each stage writes its own file under $OUT as soon as it ends (the suite rewrites its file after
# every section), so a run that is cut short keeps what it measured.
#
#   OUT=/some/dir scripts/gpu_run.sh          # on the GPU machine, from a copy of this repository
#   scripts/gpu_run.sh --dry-run --out DIR    # on any CPU: stages 1 and 2 at tiny sizes (CI runs it;
#                                               stage 1 then runs a few of the tests: the unit suite
#                                               runs test_cuda.py's CPU cases anyway)
#
# Stage 1, about a minute: `pytest -m cuda tests/test_cuda.py`: every CUDA code path (each attention
#   backend fwd+bwd in bf16 and fp32, each SDPA kernel forced in turn, flex compiled, KV-cache
#   decoding, the memory kit's peak, the profiler's kernel times, MFU on a known matmul, a compiled
#   training step, DDP over NCCL on one rank) against CPU / float64 references
#   -> $OUT/cuda_tests.json (a results file of kind "cuda_tests": one row per test, what it found).
# Stage 2, --budget seconds (default 420): the guide suite at the gpu profile (the seed's setting:
#   GPT-2 small, B=4, T=512, bf16), sections in priority order; a section not reached in time is
#   recorded as not run -> $OUT/<gpu>.json (e.g. h200.json: copy it to results/, then
#   `python -m tutorial_lib report`).
# Stage 3, only with --nbval and a wheelhouse/ (scripts/make_wheelhouse.sh): the notebooks under
#   nbval at the smoke profile, with the notebook stack installed from the wheelhouse into a
#   temporary folder (the GPU machine has no package index) -> $OUT/nbval.log.
# Everything printed also goes to $OUT/gpu_run.log.
#
# The GPU machine has torch + CUDA, triton, numpy, matplotlib, tiktoken and tqdm, and may lack
# pytest: then stage 1 installs it from wheelhouse/ if that was carried along, and otherwise is
# recorded as not run. Needs no internet.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
PY=${PYTHON:-python3}
OUT=${OUT:-$ROOT/results/device}
BUDGET=420
DRY=0
NBVAL=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --nbval) NBVAL=1 ;;
    --out) OUT=$2; shift ;;
    --budget) BUDGET=$2; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$BUDGET" in ''|*[!0-9.]*) echo "error: --budget=$BUDGET must be a number of seconds" >&2; exit 2 ;; esac
mkdir -p "$OUT" || { echo "error: --out=$OUT cannot be created" >&2; exit 2; }
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/gpu_run.log
: > "$LOG"
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
log() { echo "[gpu_run $(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }
T0=$(date +%s)

if [ "$DRY" = 1 ]; then
  PROFILE=smoke
  DEVICE=cpu
  NAME=dryrun
  export TUTORIAL_DEVICE=cpu
else
  PROFILE=gpu
  DEVICE=cuda
  NAME=$("$PY" -c "import re, torch; n = torch.cuda.get_device_name(0); print(re.sub(r'[^a-z0-9]+', '_', n.lower().replace('nvidia', '')).strip('_') or 'gpu')" 2>>"$LOG") \
    || { log "no CUDA device: run with --dry-run on a CPU"; exit 2; }
fi
log "device run: $NAME, profile $PROFILE, budget ${BUDGET}s, out $OUT"
"$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')" 2>&1 | tee -a "$LOG"
[ "${PIPESTATUS[0]}" = 0 ] || { log "error: $PY cannot import torch (set PYTHON=...)"; exit 2; }
FAILED=0

# ---- stage 1: the CUDA tests ------------------------------------------------------------------
PYTEST=("$PY" -m pytest)
if ! "$PY" -c "import pytest" 2>/dev/null; then
  if [ -d "$ROOT/wheelhouse" ]; then
    SITE=$(mktemp -d)
    "$PY" -m pip install -q --no-index --find-links "$ROOT/wheelhouse" --target "$SITE" pytest >>"$LOG" 2>&1 \
      && export PYTHONPATH=$PYTHONPATH:$SITE
  fi
fi
if "$PY" -c "import pytest" 2>/dev/null; then
  PICK=()
  if [ "$DRY" = 1 ]; then  # the plumbing, not the tests again: one CPU case that runs, CUDA ones that skip
    PICK=(-k "match_float64 and eager-wNone or which_sdpa_kernels")
  fi
  log "stage 1: pytest -m cuda ${PICK[*]}"
  timeout 240 "${PYTEST[@]}" -m cuda tests/test_cuda.py -q -p no:cacheprovider -o addopts="-ra" "${PICK[@]}" \
    --cuda-summary "$OUT/cuda_tests.json" 2>&1 | tail -n 60 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  log "stage 1 done (exit $rc): $OUT/cuda_tests.json"
  [ "$rc" = 0 ] || FAILED=1
else
  log "stage 1 not run: pytest is not installed here and no wheelhouse/ was carried (scripts/make_wheelhouse.sh)"
fi

# ---- stage 2: the guide suite, time-boxed ---------------------------------------------------------
ONLY=()
if [ "$DRY" = 1 ]; then
  ONLY=(--only memory before_after quality)  # the first is quick; the budget keeps the rest from running
fi
log "stage 2: bench --suite guide --profile $PROFILE --budget-s $BUDGET"
"$PY" -m tutorial_lib bench --suite guide --profile "$PROFILE" --device "$DEVICE" --budget-s "$BUDGET" \
  "${ONLY[@]}" --no-progress --out "$OUT/$NAME.json" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
log "stage 2 done (exit $rc): $OUT/$NAME.json"
[ "$rc" = 0 ] || FAILED=1

# ---- stage 3 (optional): the notebooks under nbval ---------------------------------------------
if [ "$NBVAL" = 1 ] && [ "$DRY" = 0 ]; then
  if [ -d "$ROOT/wheelhouse" ]; then
    SITE3=$(mktemp -d)
    log "stage 3: nbval (notebook stack from wheelhouse/)"
    if "$PY" -m pip install -q --no-index --find-links "$ROOT/wheelhouse" --target "$SITE3" \
        pytest nbval ipykernel ipywidgets >>"$LOG" 2>&1; then
      PYTHONPATH=$PYTHONPATH:$SITE3 JUPYTER_PATH=$SITE3/share/jupyter TUTORIAL_PROFILE=smoke \
        timeout 400 "$PY" -m pytest --nbval --nbval-current-env notebooks -p no:cacheprovider \
        -o addopts="" --nbval-sanitize-with tests/nbval_sanitize.cfg > "$OUT/nbval.log" 2>&1
      log "stage 3 done (exit $?): $OUT/nbval.log"
    else
      log "stage 3 not run: the wheelhouse did not install (see the log)"
    fi
  else
    log "stage 3 not run: no wheelhouse/ (scripts/make_wheelhouse.sh builds it)"
  fi
fi
log "done in $(( $(date +%s) - T0 )) s; files: $(cd "$OUT" && ls | tr '\n' ' ')"
exit $FAILED

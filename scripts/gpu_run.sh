#!/usr/bin/env bash
# The prepared device run: everything the tutorial needs from a GPU, in one command of one overall
# deadline, in stages. Each stage writes its own file under $OUT as it goes, so a run that is cut
# short keeps what it measured. On the device machine $OUT is set by the machine (the folder whose
# files come back): never override it there. README.md ("The device run") gives the exact call.
#
#   scripts/gpu_run.sh                        # on the GPU machine: stages 1 and 2 within --deadline
#   scripts/gpu_run.sh --nbval                # its own call: stage 3 alone (needs wheelhouse/)
#   scripts/gpu_run.sh --dry-run --out DIR    # on any CPU: the same at tiny sizes (the tests run it;
#                                               stage 1 then runs a few tests only: the unit suite
#                                               runs test_cuda.py's CPU cases anyway)
#
# --deadline SECONDS (default 480): stages 1 and 2 together end by then. Stage 1 gets at most
#   --stage1-s (default 240) and at most half of what is left; stage 2 the rest. Each stage is
#   stopped with SIGINT at its limit (`timeout -s INT`, then SIGKILL 10 s later if it hangs), which
#   lets it write what it found; a stage that was stopped before it wrote anything gets a stand-in
#   file saying so. Expect the whole run to end within the deadline + 15 s.
# Stage 1: `pytest -m cuda tests/test_cuda.py` (pytest-timeout: --test-timeout, default 120 s, per
#   test, where installed): every CUDA code path (each attention backend fwd+bwd in bf16 and fp32,
#   each SDPA kernel forced in turn, flex compiled, KV-cache decoding, the memory kit's peak, the
#   profiler's kernel times, MFU on a known matmul, a compiled training step, DDP over NCCL on one
#   rank) against CPU / float64 references -> $OUT/cuda_tests.json (kind "cuda_tests": one row per
#   test, what it found).
# Stage 2: the guide suite at the gpu profile (the seed's setting: GPT-2 small, B=4, T=512, bf16) in
#   priority order (guide/plan.py: breakdown, memory, before/after, LM head, ..., then the rest); a
#   section whose predicted time (recorded in --history, default results/, else the profile's
#   estimates) does not fit what is left is skipped in advance, and recorded so -> $OUT/<gpu>.json
#   (e.g. h200.json: copy it to results/, then `python -m tutorial_lib report`). --sections "A B"
#   picks the sections (default: all; with --dry-run: breakdown memory before_after lm_head quality).
# Stage 3, --nbval only, as its own call: the notebooks under nbval at the smoke profile, the notebook
#   stack installed from a carried wheelhouse/ (scripts/make_wheelhouse.sh) into a temporary folder
#   (the GPU machine has no package index), stopped at --deadline -> $OUT/nbval.log.
# Everything printed also goes to $OUT/gpu_run.log. Exit 0 when every stage that ran passed (stage 2
# stopped at the deadline counts as passed: it keeps what it finished); 1 otherwise; 2 on bad options.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
PY=${PYTHON:-python3}
OUT=${OUT:-$ROOT/results/device}
DEADLINE=480
STAGE1_S=240
TEST_TIMEOUT=120
HISTORY=$ROOT/results
SECTIONS=""
DRY=0
NBVAL=0
need_arg() { [ $# -ge 2 ] || { echo "error: $1 needs a value (see --help)" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --nbval) NBVAL=1 ;;
    --out) need_arg "$@"; OUT=$2; shift ;;
    --deadline) need_arg "$@"; DEADLINE=$2; shift ;;
    --stage1-s) need_arg "$@"; STAGE1_S=$2; shift ;;
    --test-timeout) need_arg "$@"; TEST_TIMEOUT=$2; shift ;;
    --history) need_arg "$@"; HISTORY=$2; shift ;;
    --sections) need_arg "$@"; SECTIONS=$2; shift ;;
    -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for opt in "deadline=$DEADLINE" "stage1-s=$STAGE1_S" "test-timeout=$TEST_TIMEOUT"; do
  case "${opt#*=}" in
    ''|*[!0-9]*|0) echo "error: --$opt must be a whole number of seconds > 0" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT" || { echo "error: --out=$OUT cannot be created" >&2; exit 2; }
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/gpu_run.log
: > "$LOG"
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
log() { echo "[gpu_run $(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }
T0=$(date +%s)
END=$((T0 + DEADLINE))
left() { echo $((END - $(date +%s))); }

# one Python start for the device's name and the stack's versions (each start initialises CUDA)
if [ "$DRY" = 1 ]; then
  PROFILE=smoke DEVICE=cpu
  export TUTORIAL_DEVICE=cpu
else
  PROFILE=gpu DEVICE=cuda
fi
INFO=$("$PY" -c "
import re, sys, torch
cuda = torch.cuda.is_available()
name = re.sub(r'[^a-z0-9]+', '_', torch.cuda.get_device_name(0).lower().replace('nvidia', '')).strip('_') if cuda else ''
print(name or 'gpu' if cuda else 'none')
print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda,
      'device', torch.cuda.get_device_name(0) if cuda else 'cpu')
" 2>>"$LOG") || { log "error: $PY cannot import torch (set PYTHON=...)"; exit 2; }
echo "${INFO#*$'\n'}" | tee -a "$LOG"
if [ "$DRY" = 1 ]; then
  NAME=dryrun
else
  NAME=${INFO%%$'\n'*}
  [ "$NAME" != none ] || { log "no CUDA device: run with --dry-run on a CPU"; exit 2; }
fi
log "device run: $NAME, profile $PROFILE, deadline ${DEADLINE}s, out $OUT"
FAILED=0

# A stage stopped before it wrote its file still leaves one: a results document saying why.
stand_in() {  # stand_in FILE KIND WHY [SECTION...]
  "$PY" - "$@" <<'EOF'
import datetime, json, os, sys
path, kind, why, sections = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
doc = {"schema_version": 1, "meta": {"device_name": os.environ.get("STAND_IN_DEVICE"),
       "profile": os.environ.get("STAND_IN_PROFILE"), "stand_in": True, "stopped": why,
       "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
       "rows": [], "sections": {s: {"not_run": True, "error": f"not run: {why}"} for s in sections}}
if kind != "suite":
    doc["kind"] = kind
with open(path + ".tmp", "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
os.replace(path + ".tmp", path)
EOF
}
export STAND_IN_DEVICE=$NAME STAND_IN_PROFILE=$PROFILE

# run_stage LIMIT COMMAND...: the command under `timeout -s INT` (exit 124 when stopped; 137 when it
# ignored the SIGINT for 10 s). The Python stages re-arm SIGINT themselves, in case the machine's
# runner started this script with SIGINT ignored (as a shell does for a background job).
run_stage() {
  local limit=$1; shift
  [ "$limit" -ge 1 ] || limit=1  # `timeout 0` would mean no limit at all
  timeout -s INT -k 10 "$limit" "$@"
}

if [ "$NBVAL" = 0 ]; then
  # ---- stage 1: the CUDA tests ------------------------------------------------------------------
  S1=$(left); S1=$((S1 / 2)); [ "$S1" -le "$STAGE1_S" ] || S1=$STAGE1_S
  if ! "$PY" -c "import pytest" 2>/dev/null && [ -d "$ROOT/wheelhouse" ]; then
    SITE=$(mktemp -d)
    "$PY" -m pip install -q --no-index --find-links "$ROOT/wheelhouse" --target "$SITE" pytest pytest-timeout \
      >>"$LOG" 2>&1 && export PYTHONPATH=$PYTHONPATH:$SITE
  fi
  if ! "$PY" -c "import pytest" 2>/dev/null; then
    log "stage 1 not run: pytest is not installed here and no wheelhouse/ was carried (scripts/make_wheelhouse.sh)"
    stand_in "$OUT/cuda_tests.json" cuda_tests "pytest is not installed on this machine"
    FAILED=1
  elif [ "$S1" -lt 1 ]; then
    log "stage 1 not run: no time left before the deadline"
    stand_in "$OUT/cuda_tests.json" cuda_tests "no time was left before the deadline"
    FAILED=1
  else
    PER_TEST=()
    "$PY" -c "import pytest_timeout" 2>/dev/null && PER_TEST=(--timeout "$TEST_TIMEOUT")
    PICK=()
    if [ "$DRY" = 1 ]; then  # the plumbing, not the tests again: one CPU case that runs, CUDA ones that
      # skip (the unit suite runs test_cuda.py's CPU cases anyway)
      PICK=(-k "match_float64 and eager-wNone or which_sdpa_kernels")
    fi
    log "stage 1: pytest -m cuda ${PICK[*]}, stopped after ${S1}s${PER_TEST:+, ${TEST_TIMEOUT}s per test}"
    rm -f "$OUT/cuda_tests.json"
    S1LOG=$(mktemp)
    run_stage "$S1" "$PY" -m pytest -m cuda tests/test_cuda.py -q -p no:cacheprovider -o addopts="-ra" \
      "${PER_TEST[@]}" "${PICK[@]}" --cuda-summary "$OUT/cuda_tests.json" > "$S1LOG" 2>&1
    rc=$?
    tail -n 60 "$S1LOG" | tee -a "$LOG"
    rm -f "$S1LOG"
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
      log "stage 1 stopped at its limit (${S1}s, exit $rc): the tests not reached are missing from the summary"
    fi
    if [ ! -s "$OUT/cuda_tests.json" ]; then
      stand_in "$OUT/cuda_tests.json" cuda_tests "stage 1 was stopped (exit $rc) before pytest wrote its summary"
    fi
    log "stage 1 done (exit $rc): $OUT/cuda_tests.json"
    [ "$rc" = 0 ] || FAILED=1
  fi

  # ---- stage 2: the guide suite, in priority order, until the deadline ------------------------------
  S2=$(left)
  if [ -n "$SECTIONS" ]; then
    read -r -a ONLY <<< "$SECTIONS"
  elif [ "$DRY" = 1 ]; then
    ONLY=(breakdown memory before_after lm_head quality)
  else
    ONLY=()
  fi
  [ ${#ONLY[@]} -gt 0 ] && ONLY=(--only "${ONLY[@]}")
  if [ "$S2" -lt 1 ]; then
    log "stage 2 not run: no time left before the deadline"
    stand_in "$OUT/$NAME.json" suite "no time was left before the deadline" "${ONLY[@]:1}"
  else
    # the suite's own budget ends a little before the SIGINT: time to start Python and write the file
    RESERVE=$((S2 / 5)); [ "$RESERVE" -le 10 ] || RESERVE=10
    BUDGET=$((S2 - RESERVE)); [ "$BUDGET" -ge 1 ] || BUDGET=1
    log "stage 2: bench --suite guide --profile $PROFILE --priority --budget-s $BUDGET, stopped after ${S2}s"
    rm -f "$OUT/$NAME.json"
    run_stage "$S2" "$PY" -m tutorial_lib bench --suite guide --profile "$PROFILE" --device "$DEVICE" \
      --priority --budget-s "$BUDGET" --history "$HISTORY" "${ONLY[@]}" --out "$OUT/$NAME.json" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    if [ ! -s "$OUT/$NAME.json" ]; then
      stand_in "$OUT/$NAME.json" suite "stage 2 was stopped (exit $rc) before the suite wrote its file" "${ONLY[@]:1}"
    fi
    case "$rc" in
      0) log "stage 2 done: $OUT/$NAME.json" ;;
      124|130) log "stage 2 stopped at the deadline (exit $rc): every section it finished is in $OUT/$NAME.json" ;;
      *) log "stage 2 failed (exit $rc): $OUT/$NAME.json"; FAILED=1 ;;
    esac
  fi
else
  # ---- stage 3 (its own call): the notebooks under nbval ------------------------------------------
  if [ ! -d "$ROOT/wheelhouse" ]; then
    log "stage 3 not run: no wheelhouse/ (scripts/make_wheelhouse.sh builds it; carry it along)"
    echo "stage 3 not run: no wheelhouse/ was carried" > "$OUT/nbval.log"
    FAILED=1
  else
    SITE3=$(mktemp -d)
    log "stage 3: nbval (notebook stack from wheelhouse/), stopped after $(left)s"
    if "$PY" -m pip install -q --no-index --find-links "$ROOT/wheelhouse" --target "$SITE3" \
        pytest nbval ipykernel ipywidgets >>"$LOG" 2>&1; then
      PYTHONPATH=$PYTHONPATH:$SITE3 JUPYTER_PATH=$SITE3/share/jupyter TUTORIAL_PROFILE=smoke \
        run_stage "$(left)" "$PY" -m pytest --nbval --nbval-current-env notebooks -p no:cacheprovider \
        -o addopts="" --nbval-sanitize-with tests/nbval_sanitize.cfg > "$OUT/nbval.log" 2>&1
      rc=$?
      tail -n 15 "$OUT/nbval.log" | tee -a "$LOG"
      log "stage 3 done (exit $rc): $OUT/nbval.log"
      [ "$rc" = 0 ] || FAILED=1
    else
      log "stage 3 not run: the wheelhouse did not install (see the log)"
      echo "stage 3 not run: the wheelhouse did not install (see gpu_run.log)" > "$OUT/nbval.log"
      FAILED=1
    fi
  fi
fi
log "done in $(( $(date +%s) - T0 )) s (deadline ${DEADLINE}s); files: $(cd "$OUT" && ls | tr '\n' ' ')"
exit $FAILED

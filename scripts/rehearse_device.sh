#!/usr/bin/env bash
# Rehearse the device run on a CPU, under the device image's own Python stack, before spending any
# device time on it (issue 27: a lent GPU gives 15 minutes, machine start included; bugs must be
# found here). Not part of `make test`: the torch 2.11 wheel with its CUDA libraries is ~4.8 GB.
#
#   scripts/rehearse_device.sh                # build (once) or reuse the venv, then the dry run and
#                                             # the unit tests under it
#   scripts/rehearse_device.sh --dry-run-only # only `scripts/gpu_run.sh --dry-run`
#   scripts/rehearse_device.sh --tests-only [PYTEST ARGS...]   # only the unit tests (e.g. a file)
#
# The venv: $TUTORIAL_DEVICE_VENV (default ~/.cache/tutorial-device-venv, outside the repository),
# made with Python 3.12 ($REHEARSE_PYTHON, else python3.12 on the PATH or under ~/.pyenv) from
# scripts/device_requirements.txt (torch 2.11.0, triton 3.6.0, numpy 2.5, tiktoken, matplotlib,
# tqdm, pytest, pytest-xdist, pytest-timeout; no notebook stack). It is rebuilt when that file
# changes. Results go to $REHEARSE_OUT (default /tmp/tutorial-rehearsal): dryrun/ (the dry run's
# files), unit.log and unit.xml (the unit tests), summary.txt (the counts).
# Exit 0 when the dry run exits 0 and the unit tests pass or skip; 1 otherwise; 2 on a setup error.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
VENV=${TUTORIAL_DEVICE_VENV:-$HOME/.cache/tutorial-device-venv}
OUTDIR=${REHEARSE_OUT:-/tmp/tutorial-rehearsal}
REQS=$ROOT/scripts/device_requirements.txt
WORKERS=${TEST_WORKERS:-2}
DO_DRY=1
DO_TESTS=1
case "${1:-}" in
  --dry-run-only) DO_TESTS=0; shift ;;
  --tests-only) DO_DRY=0; shift ;;
  -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
  --*) if [ "$1" != "--" ]; then echo "error: unknown option $1 (see --help)" >&2; exit 2; fi ;;
esac
[ "${1:-}" = "--" ] && shift
if [ "$DO_DRY" = 1 ] && [ $# -gt 0 ]; then
  echo "error: pytest arguments ($*) go with --tests-only" >&2; exit 2
fi
say() { echo "[rehearse $(date -u +%H:%M:%S)] $*"; }

# ---- the venv ------------------------------------------------------------------------------------
find_python312() {  # the first candidate that really is a 3.12 (a pyenv shim may exist and fail)
  local c
  for c in ${REHEARSE_PYTHON:-} "$(command -v python3.12 2>/dev/null)" \
      $(ls -d "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /root/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | sort -Vr); do
    if [ -n "$c" ] && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
      echo "$c"; return
    fi
  done
}
WANT=$(sha256sum "$REQS" | cut -c1-16)
STAMP=$VENV/.device-stack-$WANT
if [ ! -e "$STAMP" ]; then
  BASE=$(find_python312)
  if [ -z "$BASE" ]; then
    echo "error: no Python 3.12 found (the device image's): set REHEARSE_PYTHON=/path/to/python3.12 (tried '${REHEARSE_PYTHON:-}', python3.12, ~/.pyenv/versions/3.12*)" >&2
    exit 2
  fi
  say "building $VENV with $BASE from $REQS (the torch wheel is ~4.8 GB: minutes)"
  rm -rf "$VENV"
  "$BASE" -m venv "$VENV" || { echo "error: '$BASE -m venv $VENV' failed" >&2; exit 2; }
  "$VENV/bin/python" -m pip install -q --upgrade pip || exit 2
  "$VENV/bin/python" -m pip install -r "$REQS" || { echo "error: installing $REQS into $VENV failed" >&2; exit 2; }
  touch "$STAMP"
fi
PY=$VENV/bin/python
mkdir -p "$OUTDIR" || { echo "error: REHEARSE_OUT=$OUTDIR cannot be created" >&2; exit 2; }
"$PY" -c "import sys, torch, triton, numpy; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda build', torch.version.cuda, '| triton', triton.__version__, '| numpy', numpy.__version__)" \
  || { echo "error: $PY cannot import the device stack; delete $VENV and run again" >&2; exit 2; }
for mod in ipywidgets nbval jupyterlab; do
  if "$PY" -c "import $mod" 2>/dev/null; then
    echo "error: $VENV has $mod, which the device image lacks: delete $VENV and run again" >&2; exit 2
  fi
done

RC=0
: > "$OUTDIR/summary.txt"
# ---- the dry run ----------------------------------------------------------------------------------
if [ "$DO_DRY" = 1 ]; then
  say "scripts/gpu_run.sh --dry-run under $PY"
  rm -rf "$OUTDIR/dryrun"
  PYTHON=$PY bash scripts/gpu_run.sh --dry-run --out "$OUTDIR/dryrun"
  drc=$?
  echo "dry run: exit $drc ($OUTDIR/dryrun)" | tee -a "$OUTDIR/summary.txt"
  [ "$drc" = 0 ] || RC=1
fi

# ---- the unit tests -------------------------------------------------------------------------------
if [ "$DO_TESTS" = 1 ]; then
  ARGS=("$@")
  [ ${#ARGS[@]} -gt 0 ] || ARGS=(tests)
  PAR=()
  [ "$WORKERS" -gt 1 ] && PAR=(-n "$WORKERS" --dist loadfile)
  say "unit tests under $PY: pytest ${ARGS[*]} ${PAR[*]}"
  TUTORIAL_PROFILE=smoke OMP_NUM_THREADS=1 THP_MEM_ALLOC_ENABLE=${THP_MEM_ALLOC_ENABLE:-1} \
    "$PY" -m pytest "${ARGS[@]}" "${PAR[@]}" -p no:cacheprovider -o addopts="-ra --strict-markers" \
    --junitxml "$OUTDIR/unit.xml" 2>&1 | tee "$OUTDIR/unit.log"
  trc=${PIPESTATUS[0]}
  counts=$("$PY" - "$OUTDIR/unit.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
s = ET.parse(sys.argv[1]).getroot()
s = s if s.tag == "testsuite" else s.find("testsuite")
t, f, e, k = (int(s.get(a, 0)) for a in ("tests", "failures", "errors", "skipped"))
print(f"{f} failed, {e} errors, {t - f - e - k} passed, {k} skipped")
EOF
)
  echo "unit tests: exit $trc: $counts ($OUTDIR/unit.log)" | tee -a "$OUTDIR/summary.txt"
  [ "$trc" = 0 ] || RC=1
fi
say "done: $(tr '\n' ';' < "$OUTDIR/summary.txt") exit $RC"
exit $RC

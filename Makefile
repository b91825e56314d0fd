# make lab   -> install (once) and open JupyterLab on notebooks/
# make test  -> install (once) and run every test: unit tests, then the notebooks under nbval
# make notebooks -> re-execute every notebook in place (refreshes the stored outputs)
# make sync  -> after editing a notebook's source notebooks/NN_name.py (or its .ipynb in Lab):
#               carry the cells over to the other file of the pair (jupytext --sync)
# make clean / distclean -> remove caches / also the .venv
#
# Everything goes into ./.venv, made with python3 if it is missing.

PYTHON3 ?= python3
VENV := .venv
PY := $(VENV)/bin/python
JUPYTER := $(VENV)/bin/jupyter
STAMP := $(VENV)/.tutorial_lib-installed
# The torch that `pip install torch` would otherwise resolve to a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
# Profiles: nbval re-runs the notebooks at toy sizes (smoke) and compares every cell not tagged
# nbval-ignore-output; those cells print only profile-independent things (shapes, exact checks,
# analytic numbers), so the stored outputs can come from the bigger `cpu` profile that readers
# see (`make notebooks`; README's map gives each notebook's time at both profiles, read from the
# stored outputs; NOTEBOOK_PROFILE=smoke for a quick refresh).
TEST_PROFILE := smoke
NOTEBOOK_PROFILE ?= cpu
NOTEBOOK_TIMEOUT ?= 3600
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings
# JupyterLab as `make lab` runs it (scripts/lab/): its settings overrides for this venv (no news or
# update-check toast, which would reach for the internet and cover cells; a notebook's .py source
# opens as text, not as a second copy of the notebook without its stored outputs), and the
# server's config (the file browser lists each lesson once: the .py sources are hidden there).
LAB_OVERRIDES := scripts/lab/overrides.json
LAB_CONFIG := scripts/lab/jupyter_lab_config.json
# JupyterLab refuses to start as root without --allow-root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
NOTEBOOKS := $(wildcard notebooks/*.ipynb)
# Huge pages for PyTorch's large CPU blocks (fewer first-touch page faults; measured by the guide's
# own_paths section). PyTorch reads this once, at its first CPU allocation: exported here so every
# process make starts has it from the start. `make test THP_MEM_ALLOC_ENABLE=0` turns it off.
export THP_MEM_ALLOC_ENABLE ?= 1

.PHONY: venv install lab test notebooks sync clean distclean browser-deps

venv install: $(STAMP) $(LAB_SETTINGS)/overrides.json

$(PY):
	@$(PYTHON3) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "error: '$(PYTHON3) -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2; exit 1; }

# Re-run when the package's metadata changes; a torch already in the venv is kept.
$(STAMP): pyproject.toml | $(PY)
	@if $(PY) -c "import torch" 2>/dev/null; then \
	  echo "keeping torch $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	else \
	  echo "installing $(TORCH_PIN) (CPU build where one is available)"; \
	  $(PY) -m pip install "$(TORCH_PIN)"; \
	fi
	$(PY) -m pip install -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

$(LAB_SETTINGS)/overrides.json: $(LAB_OVERRIDES) | $(STAMP)
	@mkdir -p $(LAB_SETTINGS)
	cp $(LAB_OVERRIDES) $@

# JUPYTER_PATH puts this venv's kernel first, ahead of any "python3" kernel in ~/.local.
lab: install
	JUPYTER_PATH=$(CURDIR)/$(VENV)/share/jupyter $(JUPYTER) lab --notebook-dir=notebooks \
	  --config=$(CURDIR)/$(LAB_CONFIG) $(ALLOW_ROOT)

# The browser test (tests/test_browser.py) drives Debian's Chromium through Playwright: install it
# when it is missing and we can (root with apt-get); otherwise that test skips.
browser-deps:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the browser test"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
	    || echo "warning: could not install chromium; the browser test will skip" >&2; \
	fi

# Both suites run even when the first fails; any failure fails the target. pytest's exit code 5
# ("no tests collected") is not a failure. With pytest-xdist (the dev extra) each suite runs in
# TEST_WORKERS processes of one thread each (a test file, or a notebook's cells, stay together in
# one process: --dist loadfile): on a small machine, tiny tensors on one thread are faster than on
# two, and two workers keep both cores busy through Python-bound stretches. TEST_WORKERS=1: serial.
TEST_WORKERS ?= 2
test: install browser-deps
	@rc=0; par=""; \
	if [ "$(TEST_WORKERS)" -gt 1 ] && $(PY) -c "import xdist" 2>/dev/null; then \
	  par="-n $(TEST_WORKERS) --dist loadfile"; fi; \
	TUTORIAL_PROFILE=$(TEST_PROFILE) OMP_NUM_THREADS=1 $(PY) -m pytest tests $$par; r=$$?; \
	if [ $$r -ne 0 ] && [ $$r -ne 5 ]; then rc=$$r; fi; \
	if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	  TUTORIAL_PROFILE=$(TEST_PROFILE) OMP_NUM_THREADS=1 $(PY) -m pytest --nbval --nbval-current-env notebooks \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider $$par; r=$$?; \
	  if [ $$r -ne 0 ] && [ $$r -ne 5 ]; then rc=$$r; fi; \
	else echo "no notebooks/*.ipynb: nbval skipped"; fi; \
	exit $$rc

notebooks: install
	@if [ -z "$(NOTEBOOKS)" ]; then echo "no notebooks/*.ipynb to run"; exit 0; fi; \
	JUPYTER_PATH=$(CURDIR)/$(VENV)/share/jupyter TUTORIAL_PROFILE=$(NOTEBOOK_PROFILE) \
	$(JUPYTER) nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.kernel_name=python3 --ExecutePreprocessor.timeout=$(NOTEBOOK_TIMEOUT) \
	  $(NOTEBOOKS)

# Each notebook is a jupytext percent script (the source) paired with its .ipynb (cells + stored
# outputs); tests/test_notebook_sources.py fails while the two differ. Outputs are not recomputed
# here: run `make notebooks` for that.
sync: install
	$(PY) scripts/sync_notebooks.py

# clean keeps .venv (others may be using it); distclean removes it too.
clean:
	rm -rf build *.egg-info .pytest_cache
	find tutorial_lib tests notebooks -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
	find notebooks -name .ipynb_checkpoints -type d -prune -exec rm -rf {} + 2>/dev/null || true

distclean: clean
	rm -rf $(VENV)

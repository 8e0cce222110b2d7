# `make` alone prints the targets and what each costs (help); nothing trains unless its target
# is named. `make setup` creates the virtual environment (.venv), with this package installed
# in it (editable), so `.venv/bin/python -m cifar_resnet` works from any folder. See README.md.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The stamp follows requirements.txt and pyproject.toml (the editable install).
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)
# The test suite's extra packages (requirements-dev.txt and the file it includes): another
# prefix, so that `setup`'s rm of its own old stamps leaves this one.
DEV_STAMP := $(VENV)/.dev-installed-$(shell cat requirements-dev.txt requirements-backends.txt | cksum | cut -d' ' -f1)

.DEFAULT_GOAL := help
.PHONY: help no-print-db
# `make -p TARGET` prints make's database and would run TARGET too: the targets that train
# depend on no-print-db, which refuses under -p (make's one-letter flags are MAKEFLAGS' first
# word unless it starts with --).
PRINT_DB := $(findstring p,$(filter-out --%,$(firstword $(MAKEFLAGS))))
no-print-db:
	@$(if $(PRINT_DB),echo "make: -p given: $(MAKECMDGOALS) not run (make -pn $(MAKECMDGOALS) prints the database and its commands)" >&2; exit 2,:)

# Times: 2 CPU cores (training: this project's Intel Xeon with AMX, bf16, README "Experiments";
# tests: AMD EPYC Zen 3, docs/testing.md); GPU-hours are FLOP-scaled estimates. A sweep's
# ARGS=--dry-run lists its runs and trains nothing.
help:
	@echo 'make TARGET [VAR=VALUE ...]   (make alone: this list; make -n TARGET: its commands, run nothing)'
	@echo ''
	@echo 'Setup and checks'
	@echo '  setup              .venv with requirements.txt + this package (editable)   ~1 min'
	@echo '  setup-dev          + JAX, scipy (requirements-dev.txt): make test runs it   124 MB'
	@echo '  setup-torch        + PyTorch CPU (requirements-torch.txt): torch tests      192 MB'
	@echo '  smoke              tiny net, synthetic data: checks the install             < 1 min'
	@echo '  test               every test but test-weights (TEST_WORKERS=2)             ~10 min'
	@echo '  test-fast          all but the slow tests (the everyday tier)               ~1 min'
	@echo '  test-weights       the shipped weights on all 10,000 test images            ~3 min'
	@echo '  test-notf          Keras on JAX, no TensorFlow (.venv-notf)                 ~3 min'
	@echo '  notebooks          re-execute notebooks/ (CIFAR_RESNET_RUNS=DIR: copies to OUT) a few min'
	@echo '  clean-venv         remove .venv and .venv-notf                              seconds'
	@echo ''
	@echo 'Training one net (python -m cifar_resnet train)'
	@echo '  train              DEPTH=20 VERSION=1 [PLAIN=1] [SHORTCUT=A|B|C] [PRESET=...]'
	@echo '                     [ITERATIONS=N | EPOCHS=N] [PRECISION=auto|float32|mixed_bfloat16|mixed_float16]'
	@echo '                     [DATA_DIR=DIR] [DATASET=...] [WORKDIR=DIR] [SEED=k] [ARGS=...]'
	@echo '                     default 64k iterations: ResNet-20 ~5-8 h on 2 CPU cores,'
	@echo '                     ResNet-56 ~3x that; ITERATIONS=100: ~1 min'
	@echo ''
	@echo 'Paper experiments (sweeps; ARGS=--dry-run lists the runs)   [SEEDS=K JOBS=N DATA_DIR=DIR]'
	@echo '  mini-repro         4 nets, 704 iterations, float32                          ~35 min CPU'
	@echo '  fast-recipe        ResNet-20, 32 epochs, not the paper recipe               ~40-50 min CPU'
	@echo '  fast-recipe-torch  the same in PyTorch (needs torch)                        not timed'
	@echo '  cpu-repro          Figure 6 at 20/56 layers, 7,820 iterations, bf16         ~3.7 h CPU'
	@echo '  full-repro         Figure 6 at 20/56/110, ResNet-56 v2, 64k iter.           ~42 h CPU bf16'
	@echo '  full-repro-bg      the same in the background, from a pinned copy           ~42 h CPU bf16'
	@echo '  full-repro-110-bg  its last three (110 layers, v2), pinned, background      ~30 h CPU bf16'
	@echo '  full-repro-report  redraws docs/full-repro: the 4 and the pinned 3          ~2 min CPU'
	@echo '  keras-example      the Keras example: seven nets, its recipe                ~55 GPU-hours'
	@echo '  v2                 He 2016: ResNet-110/164 v1 vs v2, ResNet-1001            ~90 GPU-hours'
	@echo '  figure6            plain and residual 20..110, ResNet-1202                  ~145 GPU-hours'
	@echo '  table6             ResNet-20..1202 v1, option A                             ~160 GPU-hours'
	@echo ''
	@echo 'Other'
	@echo '  bench              training throughput vs PyTorch [QUICK=1]                 minutes'
	@echo '  gpu-bundle         wheels + data for the GPU machine (.gpu-bundle)          minutes'
	@echo '  gpu-rehearsal      the GPU call cut short, then resumed, on this CPU        ~13 min'

# make train DEPTH=56 VERSION=2 [PLAIN=1] [SHORTCUT=A|B|C] [PRESET=paper|keras-example]
#            [ITERATIONS=N | EPOCHS=N] [PRECISION=auto|float32|mixed_bfloat16|mixed_float16]
#            [DATA_DIR=DIR] [DATASET=cifar10|synthetic] [SEED=k] [WORKDIR=DIR] [ARGS=...]
DEPTH ?= 20
VERSION ?= 1
TRAIN_FLAGS = --depth $(DEPTH) --version $(VERSION) $(if $(PLAIN),--plain) \
	$(if $(SHORTCUT),--shortcut $(SHORTCUT)) $(if $(PRESET),--preset $(PRESET)) \
	$(if $(ITERATIONS),--iterations $(ITERATIONS)) $(if $(PRECISION),--precision $(PRECISION)) \
	$(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) \
	$(if $(DATASET),--dataset $(DATASET)) $(if $(SEED),--seed $(SEED)) \
	$(if $(WORKDIR),--workdir $(WORKDIR)) $(ARGS)

# Paper experiments (experiments/*.py): make figure6 [SEEDS=K] [JOBS=N] [SHARD=i/N]
#   [DATA_DIR=DIR] [RUNS_DIR=runs] [ARGS="--dry-run" | "--nets a,b" | "--set KEY=VALUE"].
# `make figure6 ARGS=--dry-run` lists the runs and their state and trains nothing. No recipe
# line has make's `+` prefix: `make -n`, `-q` and `-p` run nothing (issue #26).
SWEEP_FLAGS = $(if $(SEEDS),--seeds $(SEEDS)) $(if $(JOBS),--jobs $(JOBS)) \
	$(if $(SHARD),--shard $(SHARD)) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) \
	$(if $(RUNS_DIR),--runs-dir $(RUNS_DIR))
# A report after a sweep only when it trained (not after ARGS=--dry-run).
DRY := $(findstring --dry-run,$(ARGS))
define sweep
	$(PY) -m cifar_resnet sweep $(1) $(SWEEP_FLAGS) $(ARGS)
endef

table6 figure6 v2: no-print-db setup
	$(call sweep,$@)

keras-example: no-print-db setup
	$(call sweep,keras_example)

# The CPU-scale reproduction (experiments/mini.py) on the project's copy of CIFAR-10.
mini-repro: DATA_DIR ?= ../shared/data
mini-repro: no-print-db setup
	$(call sweep,mini)
	test -n "$(DRY)" || $(PY) -m cifar_resnet report $(or $(RUNS_DIR),runs)/mini --out docs/mini-repro

# Figure 6 at 20 and 56 layers on 2 CPU cores (experiments/cpu_repro.py): 4 nets, 7,820
# iterations each, all 50k images, bf16; docs/cpu-repro is its report.
cpu-repro: DATA_DIR ?= ../shared/data/cifar-10-python.tar.gz
cpu-repro: no-print-db setup
	$(call sweep,cpu_repro)
	test -n "$(DRY)" || $(PY) -m cifar_resnet report $(or $(RUNS_DIR),runs)/cpu_repro --out docs/cpu-repro

# The paper's full recipe (64k iterations) at 20, 56 and 110 layers, plain and residual, and
# ResNet-56 v2 (experiments/full_repro.py, issues #22 and #37): the first four took 12.6 hours of
# a 2-core AMD Zen 5 in bf16, the last three about 30 more (estimated from the project's bench)
# (docs/full-repro; an AVX2-only CPU trains in float32, several times slower).
# `make full-repro` trains in the foreground and writes docs/full-repro;
# `make full-repro-bg` starts or resumes it in the background from a pinned copy of the code
# (experiments/run_pinned.sh; `bash experiments/run_pinned.sh status full_repro` says where it is).
full-repro: DATA_DIR ?= ../shared/data/cifar-10-python.tar.gz
full-repro: no-print-db setup
	$(call sweep,full_repro)
	test -n "$(DRY)" || $(PY) -m cifar_resnet report $(or $(RUNS_DIR),runs)/full_repro --out docs/full-repro --evaluate

full-repro-bg: no-print-db
	DATA_DIR=$(abspath $(or $(DATA_DIR),../shared/data/cifar-10-python.tar.gz)) \
		bash experiments/run_pinned.sh start full_repro

# Redraws docs/full-repro from all seven nets: the first four as committed there, and the last
# three where the pinned sweep full_repro_110 has them now (finished or not; `make
# full-repro-110-bg` starts or resumes it). Their small files, and final.keras once finished, are
# staged as full_repro's (the same configs); finished runs are evaluated (errors, exact 1,000,
# flip TTA, per-image results for the paired comparisons). A pinned run's copy is made anew from
# the run alone: a run restarted after its directory was lost must not keep the lost run's files.
PINNED_110 ?= /work/full-repro-110
FULL_REPRO_STAGE ?= runs/full-repro-stage
FULL_REPRO_OUT ?= docs/full-repro
full-repro-report: no-print-db setup
	rm -rf $(FULL_REPRO_STAGE) && mkdir -p $(FULL_REPRO_STAGE)/full_repro
	[ ! -d $(FULL_REPRO_OUT)/runs/full_repro ] || \
		cp -r $(FULL_REPRO_OUT)/runs/full_repro/. $(FULL_REPRO_STAGE)/full_repro/
	for run in $(PINNED_110)/runs/full_repro_110/*/seed0; do \
		[ -f "$$run/config.json" ] || continue; \
		net=$$(basename "$$(dirname "$$run")"); to=$(FULL_REPRO_STAGE)/full_repro/$$net/seed0; \
		rm -rf "$$to" && mkdir -p "$$to"; \
		for f in config.json data.json history.csv metrics.json final.keras; do \
			[ ! -f "$$run/$$f" ] || cp "$$run/$$f" "$$to/"; done; \
		cp $(PINNED_110)/sweep.log "$$to/"; \
	done
	# A pin older than main's config format (3775ee8 was) wrote config.json in its own; the
	# copies are brought to today's (a current one is left as it is), the runs left as they are.
	$(PY) -m benchmarks.migrate_config_json $(FULL_REPRO_STAGE)/full_repro
	$(PY) -m cifar_resnet report $(FULL_REPRO_STAGE)/full_repro --out $(FULL_REPRO_OUT) --evaluate
	# Each run's sweep log goes with its copy (a report copies only the run's own files).
	for log in $(FULL_REPRO_STAGE)/full_repro/*/seed0/sweep.log; do \
		to=$(FULL_REPRO_OUT)/runs/full_repro/$$(basename "$$(dirname "$$(dirname "$$log")")")/seed0; \
		[ ! -d "$$to" ] || cp "$$log" "$$to/"; \
	done

# In the first four's precision, so that the seven nets are one campaign, even where their
# directories were lost and `auto` would pick float32 on this CPU (PRECISION= leaves it to auto).
full-repro-110-bg: PRECISION ?= mixed_bfloat16
full-repro-110-bg: no-print-db
	DATA_DIR=$(abspath $(or $(DATA_DIR),../shared/data/cifar-10-python.tar.gz)) \
		PRECISION=$(PRECISION) bash experiments/run_pinned.sh start full_repro_110

# Time to accuracy on 2 CPU cores (experiments/fast.py): ResNet-20 towards the paper's 8.75%.
fast-recipe: DATA_DIR ?= ../shared/data/cifar-10-python.tar.gz
fast-recipe: no-print-db setup
	$(call sweep,fast)
	test -n "$(DRY)" || $(PY) -m cifar_resnet report $(or $(RUNS_DIR),runs)/fast --out docs/fast
	test -n "$(DRY)" || $(PY) -m cifar_resnet evaluate $(or $(RUNS_DIR),runs)/fast/resnet20/seed0 --checkpoint final \
		--head 1000 --out docs/fast
	test -n "$(DRY)" || $(PY) -m cifar_resnet evaluate $(or $(RUNS_DIR),runs)/fast/resnet20/seed0 --checkpoint final \
		--tta flip --head 1000 --out docs/fast
	test -n "$(DRY)" || cp $(or $(RUNS_DIR),runs)/fast/resnet20/seed0/history.csv docs/fast/

# The same recipe in the independent PyTorch trainer (benchmarks/torch_train.py; needs torch,
# the bench extra): is the ceiling the recipe and the data, or this project's code?
fast-recipe-torch: DATA_DIR ?= ../shared/data/cifar-10-python.tar.gz
fast-recipe-torch: no-print-db setup
	$(PY) -m benchmarks.torch_train --data $(DATA_DIR) --out $(or $(RUNS_DIR),runs)/torch-fast
	test -n "$(DRY)" || mkdir -p docs/fast/torch
	test -n "$(DRY)" || cp $(or $(RUNS_DIR),runs)/torch-fast/history.csv $(or $(RUNS_DIR),runs)/torch-fast/results.json \
		docs/fast/torch/

.PHONY: setup setup-dev setup-torch train smoke test test-fast test-weights clean-venv table6 figure6 v2 keras-example mini-repro cpu-repro fast-recipe \
	fast-recipe-torch full-repro full-repro-bg full-repro-report full-repro-110-bg

# Re-executes notebooks/*.ipynb in place, outputs kept (they render on GitHub). Each reads RUNS,
# its one parameter (default: the committed report in docs/); CIFAR_RESNET_RUNS=DIR overrides it
# (relative to where make runs), and then the executed copies go to OUT (default DIR/notebooks)
# unless IN_PLACE=1 asks to update the committed ones. DATA_DIR=DIR is Figure 7's test data
# instead of the data each run's data.json names (as evaluate's --data-dir).
notebooks: no-print-db setup
	$(PY) notebooks/execute.py $(if $(OUT),--out $(OUT)) $(if $(IN_PLACE),--in-place) \
		$(if $(DATA_DIR),--data-dir $(DATA_DIR))

.PHONY: notebooks

setup: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

# What the whole test suite imports beyond the package's needs (JAX, scipy), once; `make test`
# and `make test-fast` run it, so a fresh clone skips only the torch tests and what needs absent
# hardware or data (docs/testing.md).
setup-dev: $(DEV_STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.txt requirements-backends.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@rm -f $(VENV)/.dev-installed-* && touch $@

# PyTorch's CPU build (requirements-torch.txt), for the tests of the PyTorch reference; not in
# setup-dev: 192 MB of wheel, and PyPI's default Linux wheel pulls in CUDA's gigabytes.
setup-torch: setup
	$(PY) -m pip install --quiet -r requirements-torch.txt

train: no-print-db setup
	$(PY) -m cifar_resnet train $(TRAIN_FLAGS)

# A tiny net on synthetic data: checks the whole path in well under a minute.
smoke: no-print-db setup
	$(PY) -m cifar_resnet train --dataset synthetic --depth 8 --epochs 2 \
		--set synthetic_train=512 --set synthetic_test=256 --workdir runs/smoke $(ARGS)

# make test: every test but test-weights' (below). make test-fast: the everyday tier,
# all but the tests marked slow (each over about 6 s: training runs, very deep nets,
# SIGKILL/SIGTERM, multi-worker, other backends, notebooks, the install). Both run TEST_WORKERS pytest processes (pytest-xdist): one test keeps about one core
# busy on average (tracing, Python between TensorFlow ops), so two processes on 2 cores finish
# ~1.4x sooner (Intel Xeon, docs/testing.md). A file's tests stay in one process
# (--dist loadfile), sharing its fixtures; --dist worksteal was not faster (docs/testing.md).
# TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
PYTEST = $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile
test: setup-dev
	$(PYTEST) -m "not all_test_images" $(ARGS)

test-fast: setup-dev
	$(PYTEST) -m "not slow and not all_test_images" $(ARGS)

# The shipped weights' errors on all 10,000 test images, with and without flip TTA, against
# their pretrained.CIFAR10 entries: run when a net is shipped (docs/full-repro), not by make
# test. make test checks every shipped file on the exact 1,000, which any change to the net,
# the loader or the file moves.
test-weights: setup-dev
	$(PYTEST) -m all_test_images tests/test_pretrained.py $(ARGS)

clean-venv:
	rm -rf $(VENV) .venv-notf

# Keras 3 on JAX with no TensorFlow installed (requirements-notf.txt), in its own venv: the
# tests marked `notf` (the backend-neutral input path, train/resume/evaluate/report, the GPU
# run's smoke test).
NOTF_FILES = tests/test_device_input.py tests/test_notf.py tests/test_gpu_run.py
.PHONY: test-notf
test-notf: .venv-notf/.installed
	KERAS_BACKEND=jax .venv-notf/bin/python -m pytest -q -m notf $(NOTF_FILES) $(ARGS)

.venv-notf/.installed: requirements-notf.txt
	@test -x .venv-notf/bin/python || $(PYTHON) -m venv .venv-notf
	.venv-notf/bin/python -m pip install --quiet -r requirements-notf.txt
	@touch $@

# The GPU machine's carry-on (benchmarks/gpu/bundle.py): keras wheels for CPython 3.12 and
# CIFAR-10 in a compact form, in the ignored folder .gpu-bundle (at most 55 MiB).
.PHONY: gpu-bundle
gpu-bundle: setup
	$(PY) -m benchmarks.gpu.bundle --out .gpu-bundle $(if $(DATA_DIR),--data $(DATA_DIR))

# The GPU call rehearsed on this CPU with the GPU machine's versions (Python 3.12 from pyenv,
# jax/jaxlib 0.11.2 CPU, numpy 2.5.2, keras from the bundle, no TensorFlow, in /tmp): call 1 cut
# by SIGTERM at CUT s, call 2 resumes from its OUTDIR (benchmarks/gpu/rehearsal.sh; ~13 min).
# make gpu-rehearsal [CUT=300] [TOTAL2=420] [LOG_EVERY=30]
.PHONY: gpu-rehearsal
gpu-rehearsal: $(if $(wildcard .gpu-bundle/manifest.json),,gpu-bundle)
	$(if $(CUT),CUT=$(CUT)) $(if $(TOTAL2),TOTAL2=$(TOTAL2)) \
		$(if $(LOG_EVERY),LOG_EVERY=$(LOG_EVERY)) benchmarks/gpu/rehearsal.sh

# Side-by-side training throughput vs the PyTorch reference (needs the bench extra: torch).
# make bench [QUICK=1] [NETS=resnet20_v1,...] [IMPLS=keras,torch,keras:noaug,...] [DATA_DIR=...]
.PHONY: bench
bench: setup
	$(PY) -m benchmarks.bench $(if $(QUICK),--quick) $(if $(NETS),--nets $(NETS)) \
		$(if $(IMPLS),--impls $(IMPLS)) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(ARGS)

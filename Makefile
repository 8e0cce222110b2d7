# Two commands do everything on a fresh machine: `make train` and `make test` create the
# virtual environment (.venv) on first use. See README.md.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)

# make train DEPTH=56 VERSION=2 [PLAIN=1] [SHORTCUT=A|B|C] [PRESET=paper|keras-example]
#            [EPOCHS=N] [DATA_DIR=DIR] [DATASET=cifar10|synthetic] [SEED=k] [WORKDIR=DIR] [ARGS=...]
DEPTH ?= 20
VERSION ?= 1
TRAIN_FLAGS = --depth $(DEPTH) --version $(VERSION) $(if $(PLAIN),--plain) \
	$(if $(SHORTCUT),--shortcut $(SHORTCUT)) $(if $(PRESET),--preset $(PRESET)) \
	$(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) \
	$(if $(DATASET),--dataset $(DATASET)) $(if $(SEED),--seed $(SEED)) \
	$(if $(WORKDIR),--workdir $(WORKDIR)) $(ARGS)

# Paper experiments (experiments/*.py): make figure6 [SEEDS=K] [JOBS=N] [SHARD=i/N]
#   [DATA_DIR=DIR] [RUNS_DIR=runs] [ARGS="--dry-run" | "--nets a,b" | "--set KEY=VALUE"].
# `make -n figure6` lists the runs and their state: the `+` line runs even under -n (and make
# applies a define's `+` to all its lines, so the training line is emptied under -n).
SWEEP_FLAGS = $(if $(SEEDS),--seeds $(SEEDS)) $(if $(JOBS),--jobs $(JOBS)) \
	$(if $(SHARD),--shard $(SHARD)) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) \
	$(if $(RUNS_DIR),--runs-dir $(RUNS_DIR))
DRY_RUN := $(findstring n,$(firstword -$(MAKEFLAGS)))
define sweep
	+@$(if $(DRY_RUN),if test -x $(PY); then $(PY) -m cifar_resnet sweep $(1) --dry-run \
		$(SWEEP_FLAGS); else echo "make setup first to list the runs"; fi)
	$(if $(DRY_RUN),,$(PY) -m cifar_resnet sweep $(1) $(SWEEP_FLAGS) $(ARGS))
endef

table6 figure6 v2: setup
	$(call sweep,$@)

keras-example: setup
	$(call sweep,keras_example)

# The CPU-scale reproduction (experiments/mini.py) on the project's copy of CIFAR-10.
mini-repro: DATA_DIR ?= ../shared/data
mini-repro: setup
	$(call sweep,mini)
	$(PY) -m cifar_resnet report $(or $(RUNS_DIR),runs)/mini --out docs/mini-repro

# Figure 6 at 20 and 56 layers on 2 CPU cores (experiments/cpu_repro.py): 4 nets, 7,820
# iterations each, all 50k images, bf16; docs/cpu-repro is its report.
cpu-repro: DATA_DIR ?= ../shared/data/cifar-10-python.tar.gz
cpu-repro: setup
	$(call sweep,cpu_repro)
	$(PY) -m cifar_resnet report $(or $(RUNS_DIR),runs)/cpu_repro --out docs/cpu-repro
	$(PY) -c "from cifar_resnet import analysis; \
		analysis.write_final_errors('docs/cpu-repro', 'docs/cpu-repro/results.csv')"

# The paper's full recipe (64k iterations) at 20 and 56 layers, plain and residual
# (experiments/full_repro.py, issue #22): about 28 hours of a 2-core CPU with native bf16, twice
# that in float32. `make full-repro` trains in the foreground and writes docs/full-repro;
# `make full-repro-bg` starts or resumes it in the background from a pinned copy of the code
# (experiments/run_pinned.sh; `bash experiments/run_pinned.sh status full_repro` says where it is).
full-repro: DATA_DIR ?= ../shared/data/cifar-10-python.tar.gz
full-repro: setup
	$(call sweep,full_repro)
	$(PY) -m cifar_resnet report $(or $(RUNS_DIR),runs)/full_repro --out docs/full-repro

full-repro-bg:
	DATA_DIR=$(abspath $(or $(DATA_DIR),../shared/data/cifar-10-python.tar.gz)) \
		bash experiments/run_pinned.sh start full_repro

# Time to accuracy on 2 CPU cores (experiments/fast.py): ResNet-20 towards the paper's 8.75%.
fast-recipe: DATA_DIR ?= ../shared/data/cifar-10-python.tar.gz
fast-recipe: setup
	$(call sweep,fast)
	$(PY) -m cifar_resnet report $(or $(RUNS_DIR),runs)/fast --out docs/fast
	$(PY) -m cifar_resnet evaluate $(or $(RUNS_DIR),runs)/fast/resnet20/seed0 --checkpoint final \
		--head 1000 --out docs/fast
	$(PY) -m cifar_resnet evaluate $(or $(RUNS_DIR),runs)/fast/resnet20/seed0 --checkpoint final \
		--tta flip --head 1000 --out docs/fast
	cp $(or $(RUNS_DIR),runs)/fast/resnet20/seed0/history.csv docs/fast/

# The same recipe in the independent PyTorch trainer (benchmarks/torch_train.py; needs torch,
# the bench extra): is the ceiling the recipe and the data, or this project's code?
fast-recipe-torch: DATA_DIR ?= ../shared/data/cifar-10-python.tar.gz
fast-recipe-torch: setup
	$(PY) -m benchmarks.torch_train --data $(DATA_DIR) --out $(or $(RUNS_DIR),runs)/torch-fast
	mkdir -p docs/fast/torch
	cp $(or $(RUNS_DIR),runs)/torch-fast/history.csv $(or $(RUNS_DIR),runs)/torch-fast/results.json \
		docs/fast/torch/

.PHONY: setup train smoke test test-fast clean-venv table6 figure6 v2 keras-example mini-repro cpu-repro fast-recipe \
	fast-recipe-torch full-repro full-repro-bg

# Re-executes notebooks/*.ipynb in place, outputs kept (they render on GitHub). Each reads RUNS,
# its one parameter (default: the committed report in docs/); CIFAR_RESNET_RUNS=DIR overrides it.
notebooks: setup
	$(PY) notebooks/execute.py

.PHONY: notebooks

setup: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $@

train: setup
	$(PY) -m cifar_resnet train $(TRAIN_FLAGS)

# A tiny net on synthetic data: checks the whole path in well under a minute.
smoke: setup
	$(PY) -m cifar_resnet train --dataset synthetic --depth 8 --epochs 2 \
		--set synthetic_train=512 --set synthetic_test=256 --workdir runs/smoke $(ARGS)

# make test: every test (about 10 minutes on 2 CPU cores). make test-fast: all but the ones
# marked slow (very deep nets, SIGKILL/SIGTERM, multi-worker, other backends, notebooks, the
# install). Both run TEST_WORKERS pytest processes (pytest-xdist): one test keeps about one core
# busy on average (tracing, Python between TensorFlow ops), so two processes on 2 cores finish
# ~1.4x sooner (Intel Xeon, docs/testing.md). A file's tests stay in one process
# (--dist loadfile), sharing its fixtures.
# TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
PYTEST = $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile
test: setup
	$(PYTEST) $(ARGS)

test-fast: setup
	$(PYTEST) -m "not slow" $(ARGS)

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
